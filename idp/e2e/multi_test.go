package e2e

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"net"
	"net/http"
	"net/http/httputil"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/oauth2"

	"github.com/kamera-id/idp/idp/app"
	"github.com/kamera-id/idp/idp/config"
	"github.com/kamera-id/idp/idp/testenv"
)

// balancer is a load balancer in front of several instances that share one
// issuer: the test says which instance the next requests go to.
type balancer struct {
	URL    string
	target atomic.Pointer[string]
}

func newBalancer(t *testing.T) (*balancer, net.Listener) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	lb := &balancer{URL: "http://" + ln.Addr().String()}
	proxy := &httputil.ReverseProxy{Rewrite: func(pr *httputil.ProxyRequest) {
		pr.Out.URL.Scheme = "http"
		pr.Out.URL.Host = *lb.target.Load()
		pr.Out.Host = pr.In.Host // the issuer's host, as a real balancer keeps it
	}}
	srv := &http.Server{Handler: proxy, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	return lb, ln
}

// to sends the following requests to p.
func (lb *balancer) to(p *provider) { lb.target.Store(&p.Addr) }

// startCluster starts n instances with one configuration (one issuer, one
// master key, one PostgreSQL schema) behind a balancer.
func startCluster(t *testing.T, db testenv.Database, n int) (*balancer, []*provider) {
	t.Helper()
	lb, lbln := newBalancer(t)
	_ = lbln
	cfg := testConfig(db, func(c *config.Config) { c.Issuer = lb.URL })
	c := newClock()
	var ps []*provider
	for range n {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		ps = append(ps, startInstance(t, cfg, c, ln))
	}
	lb.to(ps[0])
	return lb, ps
}

func jwksKids(t *testing.T, url string) []string {
	t.Helper()
	var set struct {
		Keys []struct {
			Kid string `json:"kid"`
		} `json:"keys"`
	}
	body := get(t, url)
	if err := json.Unmarshal([]byte(body), &set); err != nil {
		t.Fatalf("JWKS at %s: %v\n%s", url, err, body)
	}
	var kids []string
	for _, k := range set.Keys {
		kids = append(kids, k.Kid)
	}
	return kids
}

// TestInstancesShareOnePostgreSQL runs two instances on one PostgreSQL
// database behind a balancer: what one instance does, the other sees:
// sessions (SSO), codes, signing keys and their rotation, TOTP and backup
// code replay guards, and second-step failure limits.
func TestInstancesShareOnePostgreSQL(t *testing.T) {
	db := testenv.Postgres(t)
	lb, ps := startCluster(t, db, 2)
	A, B := ps[0], ps[1]
	A.createUser(email, password)
	r := A.newRP("viewer", true)
	ctx := context.Background()

	// A login on A; its code is redeemed at B.
	b := A.newBrowser()
	lb.to(A)
	a := r.authorize()
	code := login(t, b, r, a)
	lb.to(B)
	tk := r.mustExchange(a, code)
	if got := amr(tk.Claims); !slices.Equal(got, []string{"pwd"}) {
		t.Fatalf("amr %v", got)
	}
	// The same code again, now at A: refused, as one instance would.
	lb.to(A)
	if _, err := r.exchange(a, code); err == nil {
		t.Fatal("a code redeemed at B was accepted again at A")
	}

	// SSO: the session made on A lets the browser in on B without a login.
	lb.to(B)
	a2 := r.authorize()
	pg := b.get(a2.URL)
	if pg.Redirect == nil {
		t.Fatalf("B did not recognise the session made on A: %d %s", pg.Status, pg.URL)
	}
	tk2 := r.mustExchange(a2, pg.code(t, a2))
	if tk2.Claims["sid"] != tk.Claims["sid"] || tk2.Claims["sub"] != tk.Claims["sub"] {
		t.Fatalf("SSO on B gave another session: %v vs %v", tk2.Claims["sid"], tk.Claims["sid"])
	}

	// Key rotation through A. The new key is current at once on both
	// instances, long before their key caches would expire (no clock
	// moves): each signs with it from its next token and serves it in its
	// JWKS, so a token from either instance always verifies with the JWKS
	// of whichever instance the balancer sends the relying party to.
	kid1, err := B.app.Keys.Current(ctx)
	if err != nil {
		t.Fatal(err)
	}
	kid2, err := A.app.Keys.Rotate(ctx)
	if err != nil || kid2 == kid1 {
		t.Fatalf("rotate: %s, %v", kid2, err)
	}
	for _, p := range []*provider{B, A} {
		if kids := jwksKids(t, "http://"+p.Addr+"/.well-known/jwks.json"); !slices.Contains(kids, kid2) || !slices.Contains(kids, kid1) {
			t.Fatalf("%s's JWKS right after A rotated: %v, want %s and %s", p.Addr, kids, kid1, kid2)
		}
	}
	for _, signer := range []*provider{A, B} {
		lb.to(signer)
		a3 := r.authorize()
		tk3 := r.mustExchange(a3, b.get(a3.URL).code(t, a3))
		if kid := headerKid(t, tk3); kid != kid2 {
			t.Errorf("ID token from %s signed with %s, want %s", signer.Addr, kid, kid2)
		}
		for _, other := range []*provider{A, B} {
			kids := jwksKids(t, "http://"+other.Addr+"/.well-known/jwks.json")
			if !slices.Contains(kids, headerKid(t, tk3)) {
				t.Errorf("token signed by %s names a key %s's JWKS lacks: %v", signer.Addr, other.Addr, kids)
			}
			lb.to(other)
			if _, err := r.verifier.Verify(ctx, tk3.Extra("id_token").(string)); err != nil {
				t.Errorf("token signed by %s does not verify through %s: %v", signer.Addr, other.Addr, err)
			}
		}
	}

	// Second-step failures count at both instances: five wrong codes, sent
	// alternately to A and B (three and two), lock the account everywhere.
	lb.to(A)
	b2 := A.newBrowser()
	accountLogin(t, A, b2, "")
	secret, backup := enroll(t, A, b2)

	// Replay guards hold across instances: a TOTP code accepted at A is
	// refused at B within its time step, and so is a backup code used at A.
	lb.to(A)
	ba := A.newBrowser()
	aa, pga := rpLogin(t, ba, r)
	shown := totpCode(t, A, secret)
	r.mustExchange(aa, ba.submit(pga, "code", map[string]string{"code": shown}).code(t, aa))
	lb.to(B)
	bb := A.newBrowser()
	_, pgb := rpLogin(t, bb, r)
	if res := bb.submit(pgb, "code", map[string]string{"code": shown}); res.Redirect != nil || res.alert() == "" {
		t.Fatalf("a TOTP code used at A was accepted again at B: %d", res.Status)
	}
	lb.to(A)
	bc := A.newBrowser()
	ac, pgc := rpLogin(t, bc, r)
	bcp := bc.get(A.URL + linkTo(t, pgc, "/login/backup"))
	r.mustExchange(ac, bc.submit(bcp, "backup_code", map[string]string{"backup_code": backup[0]}).code(t, ac))
	lb.to(B)
	bd := A.newBrowser()
	_, pgd := rpLogin(t, bd, r)
	bdp := bd.get(A.URL + linkTo(t, pgd, "/login/backup"))
	if res := bd.submit(bdp, "backup_code", map[string]string{"backup_code": backup[0]}); res.Redirect != nil || res.alert() == "" {
		t.Fatalf("a backup code used at A was accepted again at B: %d", res.Status)
	}
	// A right code in a later step resets the failures those refusals counted.
	A.clock.Advance(30 * time.Second)
	ae, pge := rpLogin(t, bd, r)
	r.mustExchange(ae, bd.submit(pge, "code", map[string]string{"code": totpCode(t, A, secret)}).code(t, ae))

	b3 := A.newBrowser()
	_, pg3 := rpLogin(t, b3, r)
	for i := range 5 {
		lb.to(ps[i%2])
		res := b3.submit(pg3, "code", map[string]string{"code": wrongCode(totpCode(t, A, secret))})
		if i < 4 && res.Status != http.StatusOK {
			t.Fatalf("failure %d answered %d", i+1, res.Status)
		}
		if i == 4 && res.Status != http.StatusTooManyRequests {
			t.Fatalf("5th failure (3 at A, 2 at B) answered %d, want 429", res.Status)
		}
	}
	for _, p := range ps {
		lb.to(p)
		if res := b3.submit(pg3, "code", map[string]string{"code": totpCode(t, A, secret)}); res.Status != http.StatusTooManyRequests {
			t.Fatalf("right code at %s during the lockout: %d, want 429", p.Addr, res.Status)
		}
	}
}

// headerKid is the kid in the ID token's JOSE header.
func headerKid(t *testing.T, tk *tokens) string {
	t.Helper()
	raw, _ := tk.Extra("id_token").(string)
	seg, _, _ := strings.Cut(raw, ".")
	b, err := base64.RawURLEncoding.DecodeString(seg)
	if err != nil {
		t.Fatal(err)
	}
	var h struct {
		Kid string `json:"kid"`
	}
	if err := json.Unmarshal(b, &h); err != nil {
		t.Fatal(err)
	}
	return h.Kid
}

// TestClientSecretRotation: a secret rotated through one instance's process
// (as idp client rotate-secret does from its own) works at once on another
// instance that has the client cached (a secret that does not match makes
// the token endpoint read its client again); the old secret is refused at
// once in the process that rotated it, and by the other instance once it
// has read the client again. With a grace, both secrets are taken. A client
// deleted through one instance's process is refused there at once (that its
// tokens are deleted is storetest's DeleteClient).
func TestClientSecretRotation(t *testing.T) {
	testenv.Each(t, func(t *testing.T, db testenv.Database) {
		lb, ps := startCluster(t, db, 2)
		A, B := ps[0], ps[1]
		A.createUser(email, password)
		r := A.newRP("viewer", true)
		ctx := context.Background()
		refresh := func(tk *oauth2.Token) (*oauth2.Token, error) {
			return r.cfg.TokenSource(ctx, &oauth2.Token{RefreshToken: tk.RefreshToken}).Token()
		}

		// Both instances cache the client: a code exchanged at A, a refresh at B.
		lb.to(A)
		a := r.authorize()
		tk := r.mustExchange(a, login(t, A.newBrowser(), r, a)).Token
		lb.to(B)
		tk, err := refresh(tk)
		if err != nil {
			t.Fatalf("refresh at B: %v", err)
		}

		old := r.cfg.ClientSecret
		secret, _, err := A.app.RotateClientSecret(ctx, "viewer", 0)
		if err != nil || secret == old {
			t.Fatalf("rotate: %q, %v", secret, err)
		}
		r.cfg.ClientSecret = secret
		if tk, err = refresh(tk); err != nil {
			t.Fatalf("the new secret at B, which had the old record cached: %v", err)
		}
		r.cfg.ClientSecret = old
		for _, p := range []*provider{A, B} {
			lb.to(p)
			if _, err := refresh(tk); err == nil {
				t.Fatalf("the old secret still works at %s", p.Addr)
			}
		}

		// Rotated again keeping the old secret for an hour: once B's cache
		// has expired (5 s; here, forgotten), both are taken on both
		// instances; once more without keeping: the one before is not.
		next, until, err := A.app.RotateClientSecret(ctx, "viewer", time.Hour)
		if err != nil || until.Before(time.Now().Add(59*time.Minute)) {
			t.Fatalf("rotate keeping the old secret: until %v, %v", until, err)
		}
		B.app.Provider.Storage.ForgetClient("viewer")
		for _, p := range []*provider{A, B} {
			lb.to(p)
			for _, s := range []string{secret, next} {
				r.cfg.ClientSecret = s
				if tk, err = refresh(tk); err != nil {
					t.Fatalf("secret %d of 2 at %s during the old one's grace: %v", slices.Index([]string{secret, next}, s)+1, p.Addr, err)
				}
			}
		}
		last, _, err := A.app.RotateClientSecret(ctx, "viewer", 0)
		if err != nil {
			t.Fatal(err)
		}
		lb.to(A)
		r.cfg.ClientSecret = next
		if _, err := refresh(tk); err == nil {
			t.Fatal("the secret before the last rotation, made without grace, still works")
		}
		r.cfg.ClientSecret = last
		if tk, err = refresh(tk); err != nil {
			t.Fatalf("the last secret: %v", err)
		}
		secret = last

		if err := A.app.DeleteClient(ctx, "viewer"); err != nil {
			t.Fatal(err)
		}
		r.cfg.ClientSecret = secret
		lb.to(A)
		if _, err := refresh(tk); err == nil {
			t.Fatal("a deleted client's refresh token still works")
		}
		if err := A.app.DeleteClient(ctx, "viewer"); err == nil {
			t.Error("a deleted client was deleted again")
		}
	})
}

// TestClientUpdate: a client's redirect URIs changed (idp client update)
// hold at once on the server that made the change: the old one is refused
// with an error page (never a redirect), the new one logs in; turning a
// first-party client into a third-party one brings the consent page.
func TestClientUpdate(t *testing.T) {
	testenv.Each(t, func(t *testing.T, db testenv.Database) {
		p := startProvider(t, db)
		p.createUser(email, password)
		r := p.newRP("viewer", true)
		a := r.authorize()
		r.mustExchange(a, login(t, p.newBrowser(), r, a)) // the client is cached

		const moved = "http://localhost/callback2"
		no := false
		if _, err := p.app.UpdateClient(context.Background(), "viewer", app.ClientChange{RedirectURIs: []string{moved}, FirstParty: &no}); err != nil {
			t.Fatal(err)
		}
		b := p.newBrowser()
		if pg := b.get(r.authorize().URL); pg.Redirect != nil || pg.Status != http.StatusBadRequest {
			t.Fatalf("the old redirect URI after the update: %d, redirect %v", pg.Status, pg.Redirect)
		}
		r.cfg.RedirectURL = moved
		a = r.authorize()
		pg := b.submit(b.get(a.URL), "password", map[string]string{"email": email, "password": password})
		if pg.formWith("consent") == nil {
			t.Fatalf("a client no longer first-party asks no consent: %d %s", pg.Status, pg.URL)
		}
		pg = b.submit(pg, "consent", map[string]string{"consent": "allow"})
		r.mustExchange(a, pg.code(t, a))
	})
}
