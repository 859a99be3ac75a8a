// Package e2e drives the whole provider through real HTTP: a browser with a
// cookie jar that reads the hosted pages and posts their forms, and
// relying parties built on go-oidc, against both stores.
package e2e

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/net/html"
	"golang.org/x/oauth2"

	"github.com/kamera-id/idp/idp/app"
	"github.com/kamera-id/idp/idp/config"
	"github.com/kamera-id/idp/idp/store"
	"github.com/kamera-id/idp/idp/testenv"
)

type htmlNode = html.Node

// clock is the provider's time, which tests move (TOTP steps, expiry).
// It starts an hour in the past: fosite checks some times (auth_time not in
// the future, code expiry) against the real clock, so the provider's clock
// may run behind it but never ahead.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *clock { return &clock{t: time.Now().Add(-time.Hour).Truncate(time.Second)} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// provider is a running identity provider.
type provider struct {
	t     *testing.T
	app   *app.App
	URL   string // the issuer
	Addr  string // this instance's own listener (host:port)
	clock *clock
}

// startProvider starts the provider on a loopback port with db.
func startProvider(t *testing.T, db testenv.Database, tweak ...func(*config.Config)) *provider {
	t.Helper()
	return startProviderWith(t, testConfig(db, tweak...), newClock())
}

// testConfig is a provider's configuration for tests with db: a new master
// key, the cheapest hashes, then tweak.
func testConfig(db testenv.Database, tweak ...func(*config.Config)) config.Config {
	key := make([]byte, 32)
	_, _ = rand.Read(key)
	cfg := config.Defaults()
	cfg.DatabaseURL = db.URL
	cfg.SecretKey = base64.StdEncoding.EncodeToString(key)
	cfg.ArgonMemoryKiB, cfg.ArgonIterations = 8192, 1 // fast hashes for tests
	for _, f := range tweak {
		f(&cfg)
	}
	return cfg
}

// startProviderWith starts a provider with a full configuration (two
// instances share one database and key this way).
func startProviderWith(t *testing.T, cfg config.Config, c *clock) *provider {
	t.Helper()
	return startProviderLogging(t, cfg, c, nil)
}

// startProviderLogging starts a provider with a full configuration and log
// (see startInstanceLogging).
func startProviderLogging(t *testing.T, cfg config.Config, c *clock, log *slog.Logger) *provider {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cfg.Issuer = "http://" + ln.Addr().String()
	return startInstanceLogging(t, cfg, c, ln, log)
}

// startInstance serves a provider with cfg (whose issuer it keeps: several
// instances behind one load balancer share it) on ln. Its URL is the
// issuer; Addr is where this instance itself listens.
func startInstance(t *testing.T, cfg config.Config, c *clock, ln net.Listener) *provider {
	t.Helper()
	return startInstanceLogging(t, cfg, c, ln, nil)
}

// startInstanceLogging is startInstance with the provider's logger (nil:
// discarded, or the test's log at warn level with -v).
func startInstanceLogging(t *testing.T, cfg config.Config, c *clock, ln net.Listener, log *slog.Logger) *provider {
	t.Helper()
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	if log == nil {
		log = slog.New(slog.NewTextHandler(io.Discard, nil))
		if testing.Verbose() {
			log = slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn}))
		}
	}
	a, err := app.Open(context.Background(), cfg, app.Options{Now: c.Now, Migrate: true, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: a.Handler(), ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() {
		_ = srv.Close()
		_ = a.Close()
	})
	return &provider{t: t, app: a, URL: cfg.Issuer, Addr: ln.Addr().String(), clock: c}
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

func (p *provider) createUser(email, password string) *store.User {
	p.t.Helper()
	u, err := p.app.CreateUser(context.Background(), app.NewUser{Email: email, Name: "テスト 太郎", Password: password})
	if err != nil {
		p.t.Fatal(err)
	}
	return u
}

// rp is a relying party: go-oidc and x/oauth2, as a real client would be.
type rp struct {
	t        *testing.T
	cfg      oauth2.Config
	verifier *oidc.IDTokenVerifier
	provider *oidc.Provider
}

const callback = "http://localhost/callback"

// newRP registers a confidential client and discovers the provider as
// go-oidc does.
func (p *provider) newRP(id string, firstParty bool, scopes ...string) *rp {
	p.t.Helper()
	return p.registerRP(app.NewClient{ID: id, FirstParty: firstParty}, scopes...)
}

// newPublicRP registers a first-party public client (no secret, PKCE only).
func (p *provider) newPublicRP(id string, scopes ...string) *rp {
	p.t.Helper()
	return p.registerRP(app.NewClient{ID: id, FirstParty: true, Public: true}, scopes...)
}

func (p *provider) registerRP(nc app.NewClient, scopes ...string) *rp {
	p.t.Helper()
	nc.Name = "RP " + nc.ID
	nc.RedirectURIs = []string{callback}
	nc.PostLogoutRedirectURIs = []string{"http://localhost/logged-out"}
	c, secret, err := p.app.CreateClient(context.Background(), nc)
	if err != nil {
		p.t.Fatal(err)
	}
	op, err := oidc.NewProvider(context.Background(), p.URL)
	if err != nil {
		p.t.Fatal(err)
	}
	if len(scopes) == 0 {
		scopes = []string{oidc.ScopeOpenID, "profile", "email", oidc.ScopeOfflineAccess}
	}
	return &rp{
		t:        p.t,
		provider: op,
		verifier: op.Verifier(&oidc.Config{ClientID: c.ID, Now: p.clock.Now}),
		cfg: oauth2.Config{
			ClientID: c.ID, ClientSecret: secret, Endpoint: op.Endpoint(),
			RedirectURL: callback, Scopes: scopes,
		},
	}
}

// authRequest is one authorization request with its PKCE verifier.
type authRequest struct {
	URL, State, Nonce, Verifier string
}

func (r *rp) authorize(extra ...oauth2.AuthCodeOption) authRequest {
	a := authRequest{State: randString(), Nonce: randString(), Verifier: oauth2.GenerateVerifier()}
	opts := append([]oauth2.AuthCodeOption{oauth2.S256ChallengeOption(a.Verifier), oidc.Nonce(a.Nonce)}, extra...)
	a.URL = r.cfg.AuthCodeURL(a.State, opts...)
	return a
}

// tokens is what a code exchange gave.
type tokens struct {
	*oauth2.Token
	IDToken *oidc.IDToken
	Claims  map[string]any
}

func (r *rp) exchange(a authRequest, code string) (*tokens, error) {
	tok, err := r.cfg.Exchange(context.Background(), code, oauth2.VerifierOption(a.Verifier))
	if err != nil {
		return nil, err
	}
	raw, _ := tok.Extra("id_token").(string)
	idt, err := r.verifier.Verify(context.Background(), raw)
	if err != nil {
		return nil, err
	}
	if idt.Nonce != a.Nonce {
		r.t.Fatalf("nonce %q, want %q", idt.Nonce, a.Nonce)
	}
	claims := map[string]any{}
	if err := idt.Claims(&claims); err != nil {
		return nil, err
	}
	return &tokens{Token: tok, IDToken: idt, Claims: claims}, nil
}

func (r *rp) mustExchange(a authRequest, code string) *tokens {
	r.t.Helper()
	tk, err := r.exchange(a, code)
	if err != nil {
		r.t.Fatalf("exchange: %v", err)
	}
	return tk
}

func randString() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

// browser is a user agent: a cookie jar, redirects followed on the
// provider's own origin, stopping at a relying party's redirect URI.
type browser struct {
	t      *testing.T
	client *http.Client
	host   string
	lang   string
}

func (p *provider) newBrowser() *browser {
	jar, _ := cookiejar.New(nil)
	u, _ := url.Parse(p.URL)
	return &browser{
		t: p.t, host: u.Host, lang: "ja",
		client: &http.Client{
			Jar: jar, Timeout: 30 * time.Second,
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		},
	}
}

// page is a response as the browser saw it.
type page struct {
	URL      *url.URL
	Status   int
	Header   http.Header
	Body     string
	Doc      *html.Node
	Redirect *url.URL // set when the browser stopped at an outside redirect
}

func (b *browser) get(raw string) *page {
	b.t.Helper()
	req, err := http.NewRequest(http.MethodGet, raw, nil)
	if err != nil {
		b.t.Fatal(err)
	}
	return b.do(req)
}

func (b *browser) do(req *http.Request) *page {
	b.t.Helper()
	for range 20 {
		req.Header.Set("Accept-Language", b.lang)
		if req.Method == http.MethodPost && req.Header.Get("Origin") == "" {
			req.Header.Set("Origin", "http://"+b.host)
			req.Header.Set("Sec-Fetch-Site", "same-origin")
		}
		resp, err := b.client.Do(req)
		if err != nil {
			b.t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode >= 300 && resp.StatusCode < 400 {
			loc, err := req.URL.Parse(resp.Header.Get("Location"))
			if err != nil {
				b.t.Fatal(err)
			}
			if loc.Host != b.host {
				return &page{URL: req.URL, Status: resp.StatusCode, Header: resp.Header, Redirect: loc}
			}
			req, _ = http.NewRequest(http.MethodGet, loc.String(), nil)
			continue
		}
		doc, _ := html.Parse(strings.NewReader(string(body)))
		return &page{URL: req.URL, Status: resp.StatusCode, Header: resp.Header, Body: string(body), Doc: doc}
	}
	b.t.Fatal("too many redirects")
	return nil
}

// postFromRP posts a form to target as a relying party's page would: from
// another site.
func (b *browser) postFromRP(target string, form url.Values) *page {
	b.t.Helper()
	req, _ := http.NewRequest(http.MethodPost, target, strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Origin", "https://rp.example")
	req.Header.Set("Sec-Fetch-Site", "cross-site")
	return b.do(req)
}

// submit posts the page's form that contains the named field, with the
// form's hidden inputs as they came and the given values.
func (b *browser) submit(p *page, field string, values map[string]string) *page {
	b.t.Helper()
	form := p.formWith(field)
	if form == nil {
		b.t.Fatalf("no form with field %q on %s (status %d):\n%s", field, p.URL, p.Status, p.Body)
	}
	vals := url.Values{}
	for _, in := range findAll(form, func(n *html.Node) bool { return n.Data == "input" }) {
		if attr(in, "type") == "hidden" {
			vals.Set(attr(in, "name"), attr(in, "value"))
		}
	}
	for k, v := range values {
		vals.Set(k, v)
	}
	action, err := p.URL.Parse(attr(form, "action"))
	if err != nil {
		b.t.Fatal(err)
	}
	req, _ := http.NewRequest(http.MethodPost, action.String(), strings.NewReader(vals.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	return b.do(req)
}

// formWith returns the form holding an input (or button) named field.
func (p *page) formWith(field string) *html.Node {
	for _, f := range findAll(p.Doc, func(n *htmlNode) bool { return n.Data == "form" }) {
		if len(findAll(f, func(n *html.Node) bool {
			return (n.Data == "input" || n.Data == "button" || n.Data == "textarea" || n.Data == "select") && attr(n, "name") == field
		})) > 0 {
			return f
		}
	}
	return nil
}

// byID returns the text of the element with this id ("" when absent).
func (p *page) byID(id string) string {
	for _, n := range findAll(p.Doc, func(n *html.Node) bool { return attr(n, "id") == id }) {
		return strings.TrimSpace(text(n))
	}
	return ""
}

// byClass returns the elements carrying class c.
func (p *page) byClass(c string) []*html.Node {
	return findAll(p.Doc, func(n *html.Node) bool { return slices.Contains(strings.Fields(attr(n, "class")), c) })
}

// alert returns the text of the role="alert" element ("" when none).
func (p *page) alert() string {
	for _, n := range findAll(p.Doc, func(n *html.Node) bool { return attr(n, "role") == "alert" }) {
		return strings.TrimSpace(text(n))
	}
	return ""
}

// code is the authorization code of a redirect back to the relying party.
func (p *page) code(t *testing.T, a authRequest) string {
	t.Helper()
	if p.Redirect == nil {
		t.Fatalf("expected a redirect to the relying party, got %s (status %d):\n%s", p.URL, p.Status, p.Body)
	}
	q := p.Redirect.Query()
	if e := q.Get("error"); e != "" {
		t.Fatalf("authorization error %s: %s", e, q.Get("error_description"))
	}
	if q.Get("state") != a.State {
		t.Fatalf("state %q, want %q", q.Get("state"), a.State)
	}
	return q.Get("code")
}

func findAll(n *html.Node, match func(*html.Node) bool) []*html.Node {
	var out []*html.Node
	var walk func(*html.Node)
	walk = func(n *html.Node) {
		if n == nil {
			return
		}
		if n.Type == html.ElementNode && match(n) {
			out = append(out, n)
		}
		for c := n.FirstChild; c != nil; c = c.NextSibling {
			walk(c)
		}
	}
	walk(n)
	return out
}

func attr(n *html.Node, name string) string {
	for _, a := range n.Attr {
		if a.Key == name {
			return a.Val
		}
	}
	return ""
}

func text(n *html.Node) string {
	var sb strings.Builder
	var walk func(*html.Node)
	walk = func(n *html.Node) {
		if n.Type == html.TextNode {
			sb.WriteString(n.Data)
		}
		for c := n.FirstChild; c != nil; c = c.NextSibling {
			walk(c)
		}
	}
	walk(n)
	return sb.String()
}
