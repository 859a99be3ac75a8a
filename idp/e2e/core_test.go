package e2e

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/net/html"
	"golang.org/x/oauth2"

	"github.com/kamera-id/idp/idp/app"
	"github.com/kamera-id/idp/idp/config"
	"github.com/kamera-id/idp/idp/testenv"
)

const (
	email    = "user@example.com"
	password = "correct horse battery"
)

// login runs a whole password login from the relying party's request and
// returns the authorization code.
func login(t *testing.T, b *browser, r *rp, a authRequest) string {
	t.Helper()
	p := b.get(a.URL)
	if p.Status != http.StatusOK || p.formWith("password") == nil {
		t.Fatalf("want the login page, got %d %s:\n%s", p.Status, p.URL, p.Body)
	}
	p = b.submit(p, "password", map[string]string{"email": email, "password": password})
	return p.code(t, a)
}

func amr(c map[string]any) []string {
	var out []string
	v, _ := c["amr"].([]any)
	for _, x := range v {
		s, _ := x.(string)
		out = append(out, s)
	}
	return out
}

func TestCodeFlow(t *testing.T) {
	testenv.Each(t, func(t *testing.T, db testenv.Database) {
		p := startProvider(t, db)
		u := p.createUser(email, password)
		r := p.newRP("viewer", true)
		b := p.newBrowser()

		// The login page is Japanese first, as in the manual.
		a := r.authorize()
		lp := b.get(a.URL)
		for _, want := range []string{"メールアドレス", "パスワード", "ログインしたままにする", "ログイン", "パスワードを忘れた方はこちら"} {
			if !strings.Contains(lp.Body, want) {
				t.Errorf("login page lacks %q", want)
			}
		}
		code := b.submit(lp, "password", map[string]string{"email": email, "password": password}).code(t, a)
		tk := r.mustExchange(a, code)
		c := tk.Claims
		if c["sub"] != u.ID || c["sub"] == email {
			t.Errorf("sub = %v, want the opaque user id %s", c["sub"], u.ID)
		}
		if got := amr(c); !slices.Equal(got, []string{"pwd"}) {
			t.Errorf("amr = %v, want [pwd]", got)
		}
		if c["email"] != email || c["name"] != "テスト 太郎" || c["sid"] == nil || c["auth_time"] == nil {
			t.Errorf("claims %v: want email, name, sid and auth_time", c)
		}
		if tk.RefreshToken == "" {
			t.Error("no refresh token with offline_access")
		}

		// Userinfo by GET, by POST with the header, by POST in the body.
		for _, mode := range []string{"GET", "POST header", "POST body"} {
			info := userinfo(t, r, tk.AccessToken, mode)
			if info["sub"] != u.ID || info["email"] != email {
				t.Errorf("userinfo (%s) = %v", mode, info)
			}
		}
		// Not in the URL (RFC 6750 2.3: logged by proxies, sent on as Referer).
		for _, method := range []string{http.MethodGet, http.MethodPost} {
			req, _ := http.NewRequest(method, r.provider.UserInfoEndpoint()+"?access_token="+url.QueryEscape(tk.AccessToken), nil)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusBadRequest || !strings.Contains(resp.Header.Get("WWW-Authenticate"), "invalid_request") {
				t.Errorf("userinfo (%s) with the token in the URL: %d %q, want 400 invalid_request", method, resp.StatusCode, resp.Header.Get("WWW-Authenticate"))
			}
		}
		// Nor in the header and the body at once (RFC 6750 3.1: one method).
		req, _ := http.NewRequest(http.MethodPost, r.provider.UserInfoEndpoint(), strings.NewReader("access_token="+url.QueryEscape(tk.AccessToken)))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.Header.Set("Authorization", "Bearer "+tk.AccessToken)
		if resp, err := http.DefaultClient.Do(req); err != nil {
			t.Fatal(err)
		} else if resp.Body.Close(); resp.StatusCode != http.StatusBadRequest || !strings.Contains(resp.Header.Get("WWW-Authenticate"), "invalid_request") {
			t.Errorf("userinfo with the token in the header and the body: %d %q, want 400 invalid_request", resp.StatusCode, resp.Header.Get("WWW-Authenticate"))
		}
		// No token at all: a bare challenge, no error code (RFC 6750 3.1).
		resp, err := http.Get(r.provider.UserInfoEndpoint())
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusUnauthorized || resp.Header.Get("WWW-Authenticate") != "Bearer" {
			t.Errorf("userinfo without a token: %d %q, want 401 and a bare Bearer challenge", resp.StatusCode, resp.Header.Get("WWW-Authenticate"))
		}
	})
}

func userinfo(t *testing.T, r *rp, token, mode string) map[string]any {
	t.Helper()
	endpoint := r.provider.UserInfoEndpoint()
	var req *http.Request
	switch mode {
	case "GET":
		req, _ = http.NewRequest(http.MethodGet, endpoint, nil)
		req.Header.Set("Authorization", "Bearer "+token)
	case "POST header":
		req, _ = http.NewRequest(http.MethodPost, endpoint, nil)
		req.Header.Set("Authorization", "Bearer "+token)
	case "POST body":
		req, _ = http.NewRequest(http.MethodPost, endpoint, strings.NewReader("access_token="+url.QueryEscape(token)))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		body, _ := io.ReadAll(resp.Body)
		t.Fatalf("userinfo (%s): %d %s", mode, resp.StatusCode, body)
	}
	out := map[string]any{}
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		t.Fatal(err)
	}
	return out
}

// wantTokens checks what tk's access token gets at userinfo (200, or 401)
// and whether its refresh token still refreshes: live says which; what
// names tk in the errors.
func wantTokens(t *testing.T, r *rp, tk *tokens, live bool, what string) {
	t.Helper()
	want := http.StatusUnauthorized
	if live {
		want = http.StatusOK
	}
	if st := userinfoStatus(t, r, tk.AccessToken); st != want {
		t.Errorf("%s: userinfo with its access token %d, want %d", what, st, want)
	}
	if _, err := refresh(r, tk.RefreshToken); (err == nil) != live {
		t.Errorf("%s: its refresh token refreshes: %v (err %v), want %v", what, err == nil, err, live)
	}
}

func userinfoStatus(t *testing.T, r *rp, token string) int {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, r.provider.UserInfoEndpoint(), nil)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

func TestPKCERequired(t *testing.T) {
	testenv.Each(t, func(t *testing.T, db testenv.Database) {
		p := startProvider(t, db)
		p.createUser(email, password)
		r := p.newRP("viewer", true)

		// Without a challenge, or with plain, the request is refused at the redirect URI.
		for name, opts := range map[string][]oauth2.AuthCodeOption{
			"missing": nil,
			"plain":   {oauth2.SetAuthURLParam("code_challenge", strings.Repeat("a", 43)), oauth2.SetAuthURLParam("code_challenge_method", "plain")},
			// An S256 challenge is 43 base64url characters (RFC 7636 4.2).
			"short":  {oauth2.SetAuthURLParam("code_challenge", strings.Repeat("a", 42)), oauth2.SetAuthURLParam("code_challenge_method", "S256")},
			"padded": {oauth2.SetAuthURLParam("code_challenge", strings.Repeat("a", 43)+"="), oauth2.SetAuthURLParam("code_challenge_method", "S256")},
			"long":   {oauth2.SetAuthURLParam("code_challenge", strings.Repeat("a", 8000)), oauth2.SetAuthURLParam("code_challenge_method", "S256")},
			"base64": {oauth2.SetAuthURLParam("code_challenge", strings.Repeat("a", 42)+"+"), oauth2.SetAuthURLParam("code_challenge_method", "S256")},
		} {
			b := p.newBrowser()
			pg := b.get(r.cfg.AuthCodeURL(randString(), opts...))
			if pg.Redirect == nil || pg.Redirect.Query().Get("error") != "invalid_request" {
				t.Errorf("%s challenge: want error=invalid_request at the redirect URI, got %d %v", name, pg.Status, pg.Redirect)
			}
		}

		// A wrong verifier fails the exchange.
		b := p.newBrowser()
		a := r.authorize()
		code := login(t, b, r, a)
		a.Verifier = oauth2.GenerateVerifier()
		if _, err := r.exchange(a, code); err == nil || !strings.Contains(err.Error(), "invalid_grant") {
			t.Errorf("wrong verifier: err = %v, want invalid_grant", err)
		}
	})
}

func TestUnregisteredRedirectURI(t *testing.T) {
	testenv.Each(t, func(t *testing.T, db testenv.Database) {
		p := startProvider(t, db)
		r := p.newRP("viewer", true)
		r.cfg.RedirectURL = "https://attacker.example/cb"
		b := p.newBrowser()
		pg := b.get(r.authorize().URL)
		if pg.Redirect != nil || pg.Status != http.StatusBadRequest {
			t.Fatalf("want an error page (400) and no redirect, got %d redirect=%v", pg.Status, pg.Redirect)
		}
		if pg.Header.Get("Location") != "" {
			t.Fatal("Location header on the error page")
		}
	})
}

func TestCodeReuseRevokes(t *testing.T) {
	testenv.Each(t, func(t *testing.T, db testenv.Database) {
		p := startProvider(t, db)
		p.createUser(email, password)
		r := p.newRP("viewer", true)
		a := r.authorize()
		code := login(t, p.newBrowser(), r, a)
		tk := r.mustExchange(a, code)
		if userinfoStatus(t, r, tk.AccessToken) != http.StatusOK {
			t.Fatal("fresh access token refused")
		}
		if _, err := r.exchange(a, code); err == nil || !strings.Contains(err.Error(), "invalid_grant") {
			t.Fatalf("reused code: err = %v, want invalid_grant", err)
		}
		wantTokens(t, r, tk, false, "the tokens a reused code issued")
	})
}

func TestConcurrentCodeExchange(t *testing.T) {
	testenv.Each(t, func(t *testing.T, db testenv.Database) {
		p := startProvider(t, db)
		p.createUser(email, password)
		r := p.newRP("viewer", true)
		a := r.authorize()
		code := login(t, p.newBrowser(), r, a)
		var wg sync.WaitGroup
		var mu sync.Mutex
		wins, fails := 0, 0
		start := make(chan struct{})
		for range 20 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				_, err := r.exchange(a, code)
				mu.Lock()
				defer mu.Unlock()
				if err == nil {
					wins++
				} else {
					fails++
				}
			}()
		}
		close(start)
		wg.Wait()
		if wins != 1 || fails != 19 {
			t.Fatalf("%d exchanges succeeded and %d failed, want exactly 1 and 19", wins, fails)
		}
	})
}

func TestRefreshRotation(t *testing.T) {
	testenv.Each(t, func(t *testing.T, db testenv.Database) {
		p := startProvider(t, db)
		p.createUser(email, password)
		r := p.newRP("viewer", true)
		other := p.newRP("other", true)
		a := r.authorize()
		tk := r.mustExchange(a, login(t, p.newBrowser(), r, a))
		ctx := context.Background()

		// Bound to its client: another client cannot use it.
		if _, err := other.cfg.TokenSource(ctx, &oauth2.Token{RefreshToken: tk.RefreshToken}).Token(); err == nil {
			t.Fatal("another client refreshed with this client's refresh token")
		}
		next, err := r.cfg.TokenSource(ctx, &oauth2.Token{RefreshToken: tk.RefreshToken}).Token()
		if err != nil {
			t.Fatalf("refresh: %v", err)
		}
		if next.RefreshToken == "" || next.RefreshToken == tk.RefreshToken {
			t.Fatal("refresh token was not rotated")
		}
		if raw, _ := next.Extra("id_token").(string); raw != "" {
			idt, err := r.verifier.Verify(ctx, raw)
			if err != nil {
				t.Fatalf("refreshed id token: %v", err)
			}
			var c map[string]any
			_ = idt.Claims(&c)
			if c["auth_time"] != tk.Claims["auth_time"] || !slices.Equal(amr(c), amr(tk.Claims)) {
				t.Errorf("refreshed id token changed auth_time/amr: %v vs %v", c, tk.Claims)
			}
		}
		// The rotated-out token no longer works (and its reuse revokes the grant).
		if _, err := r.cfg.TokenSource(ctx, &oauth2.Token{RefreshToken: tk.RefreshToken}).Token(); err == nil {
			t.Fatal("rotated-out refresh token still works")
		}
		if _, err := r.cfg.TokenSource(ctx, &oauth2.Token{RefreshToken: next.RefreshToken}).Token(); err == nil {
			t.Error("after reuse of a rotated-out token, the newer one should be revoked too")
		}
	})
}

// TestConcurrentRefresh: of concurrent refreshes with one refresh token,
// exactly one gets new tokens.
func TestConcurrentRefresh(t *testing.T) {
	testenv.Each(t, func(t *testing.T, db testenv.Database) {
		p := startProvider(t, db)
		p.createUser(email, password)
		r := p.newRP("viewer", true)
		a := r.authorize()
		tk := r.mustExchange(a, login(t, p.newBrowser(), r, a))
		var wg sync.WaitGroup
		var mu sync.Mutex
		var got []*oauth2.Token
		start := make(chan struct{})
		for range 10 {
			wg.Go(func() {
				<-start
				next, err := refresh(r, tk.RefreshToken)
				if err == nil {
					mu.Lock()
					got = append(got, next)
					mu.Unlock()
				}
			})
		}
		close(start)
		wg.Wait()
		// (A loser that reads the token after the winner spent it takes it
		// for a reused one and revokes the grant, the winner's new tokens
		// included: refresh token reuse is treated as theft.)
		if len(got) != 1 {
			t.Fatalf("%d of 10 concurrent refreshes succeeded, want exactly 1", len(got))
		}
	})
}

func TestSSOAcrossClients(t *testing.T) {
	testenv.Each(t, func(t *testing.T, db testenv.Database) {
		p := startProvider(t, db)
		p.createUser(email, password)
		viewer, other := p.newRP("viewer", true), p.newRP("recorder", true)
		b := p.newBrowser()
		a1 := viewer.authorize()
		t1 := viewer.mustExchange(a1, login(t, b, viewer, a1))

		p.clock.Advance(5 * time.Second)
		a2 := other.authorize()
		pg := b.get(a2.URL) // no login page: the session is reused
		t2 := other.mustExchange(a2, pg.code(t, a2))
		for _, k := range []string{"sub", "auth_time", "sid"} {
			if t1.Claims[k] != t2.Claims[k] {
				t.Errorf("%s: %v vs %v", k, t1.Claims[k], t2.Claims[k])
			}
		}
		if !slices.Equal(amr(t1.Claims), amr(t2.Claims)) {
			t.Errorf("amr: %v vs %v", amr(t1.Claims), amr(t2.Claims))
		}
	})
}

func TestPromptAndMaxAge(t *testing.T) {
	testenv.Each(t, func(t *testing.T, db testenv.Database) {
		p := startProvider(t, db)
		p.createUser(email, password)
		r := p.newRP("viewer", true)
		b := p.newBrowser()

		// prompt=none without a session answers login_required to the redirect URI.
		pg := b.get(r.authorize(oauth2.SetAuthURLParam("prompt", "none")).URL)
		if pg.Redirect == nil || pg.Redirect.Query().Get("error") != "login_required" {
			t.Fatalf("prompt=none without a session: got %d %v", pg.Status, pg.Redirect)
		}

		a := r.authorize()
		first := r.mustExchange(a, login(t, b, r, a))

		// With a session, prompt=none succeeds silently.
		a = r.authorize(oauth2.SetAuthURLParam("prompt", "none"))
		r.mustExchange(a, b.get(a.URL).code(t, a))

		// max_age older than the login forces a new one; auth_time moves.
		p.clock.Advance(2 * time.Minute)
		a = r.authorize(oauth2.SetAuthURLParam("max_age", "60"))
		pg = b.get(a.URL)
		if pg.formWith("password") == nil {
			t.Fatalf("max_age=60 after 2 minutes: want the login page, got %d %v", pg.Status, pg.Redirect)
		}
		pg = b.submit(pg, "password", map[string]string{"email": email, "password": password})
		second := r.mustExchange(a, pg.code(t, a))
		if second.Claims["auth_time"] == first.Claims["auth_time"] {
			t.Error("auth_time did not change after a forced login")
		}

		// max_age too large for a duration is no limit at all (it wrapped
		// to a negative age: a login forced, then login_required after it);
		// an empty one is as if omitted (RFC 6749 3.1).
		for _, maxAge := range []string{"9223372037", "18446744073709551615", ""} {
			a = r.authorize(oauth2.SetAuthURLParam("max_age", maxAge))
			if pg = b.get(a.URL); pg.Redirect == nil || pg.Redirect.Query().Get("code") == "" {
				t.Fatalf("max_age=%q with a session: want a code at once, got %d %v", maxAge, pg.Status, pg.Redirect)
			}
			r.mustExchange(a, pg.code(t, a))
		}

		// prompt=login forces a login even with a fresh session. The same
		// user's earlier tokens keep working: the user is still signed in.
		a = r.authorize()
		before := r.mustExchange(a, b.get(a.URL).code(t, a))
		a = r.authorize(oauth2.SetAuthURLParam("prompt", "login"))
		if pg = b.get(a.URL); pg.formWith("password") == nil {
			t.Fatalf("prompt=login: want the login page, got %d %v", pg.Status, pg.Redirect)
		}
		r.mustExchange(a, b.submit(pg, "password", map[string]string{"email": email, "password": password}).code(t, a))
		if st := userinfoStatus(t, r, before.AccessToken); st != http.StatusOK {
			t.Errorf("an access token of the session a new login of the same user replaced: userinfo %d, want 200", st)
		}
	})
}

// TestPromptSelectAccount: prompt=select_account (OIDC Core 3.1.2.1). A
// browser without a session gets the login page, where it chooses by
// logging in; one with a session is asked whether to go on with its
// account (no new login) or to log in with another, which then replaces
// the session. A choice made for an account the browser is no longer
// signed in as is asked again.
func TestPromptSelectAccount(t *testing.T) {
	testenv.Each(t, func(t *testing.T, db testenv.Database) {
		p := startProvider(t, db)
		first := p.createUser(email, password)
		second := p.createUser("other@example.com", password)
		r := p.newRP("viewer", true)
		b := p.newBrowser()
		selectAccount := oauth2.SetAuthURLParam("prompt", "select_account")

		var disc struct {
			Prompts []string `json:"prompt_values_supported"`
		}
		if err := r.provider.Claims(&disc); err != nil || !slices.Contains(disc.Prompts, "select_account") {
			t.Fatalf("discovery's prompt values %v (%v), want select_account among them", disc.Prompts, err)
		}

		// No session: the login page.
		a := r.authorize(selectAccount)
		first1 := r.mustExchange(a, login(t, b, r, a))
		if first1.Claims["sub"] != first.ID {
			t.Fatalf("sub %v, want %s", first1.Claims["sub"], first.ID)
		}

		// A session: the choice, naming the account; going on with it is
		// no new login. The page, answered, cannot be answered again.
		p.clock.Advance(5 * time.Second)
		a = r.authorize(selectAccount)
		pg := b.get(a.URL)
		if pg.formWith("account") == nil || !strings.Contains(pg.Body, email) || pg.formWith("password") != nil {
			t.Fatalf("want the account choice naming %s, got %d %v:\n%s", email, pg.Status, pg.Redirect, pg.Body)
		}
		answered := pg
		first2 := r.mustExchange(a, b.submit(pg, "account", map[string]string{"account": "current"}).code(t, a))
		if first2.Claims["sub"] != first.ID || first2.Claims["auth_time"] != first1.Claims["auth_time"] {
			t.Errorf("going on with the account: sub %v auth_time %v, want %s and the first login's %v",
				first2.Claims["sub"], first2.Claims["auth_time"], first.ID, first1.Claims["auth_time"])
		}
		if pg = b.submit(answered, "account", map[string]string{"account": "current"}); pg.Status != http.StatusBadRequest || pg.Redirect != nil {
			t.Errorf("the choice answered again: %d %v, want the expired-flow page", pg.Status, pg.Redirect)
		}

		// A choice left open for the first account (stale), then another
		// account: the login page, the new account's code, and its session
		// in place of the first one's.
		staleReq := r.authorize(selectAccount)
		stale := b.get(staleReq.URL)
		a = r.authorize(selectAccount)
		pg = b.submit(b.get(a.URL), "account", map[string]string{"account": "other"})
		if pg.formWith("password") == nil {
			t.Fatalf("another account: want the login page, got %d %v", pg.Status, pg.Redirect)
		}
		pg = b.submit(pg, "password", map[string]string{"email": "other@example.com", "password": password})
		if tk := r.mustExchange(a, pg.code(t, a)); tk.Claims["sub"] != second.ID {
			t.Errorf("after logging in with another account: sub %v, want %s", tk.Claims["sub"], second.ID)
		}
		// The first account's session ended as a logout ends it: its
		// access tokens with it (a shared browser keeps no access of the
		// account switched from).
		if st := userinfoStatus(t, r, first2.AccessToken); st != http.StatusUnauthorized {
			t.Errorf("an access token of the account switched from: userinfo %d, want 401", st)
		}
		a = r.authorize()
		if tk := r.mustExchange(a, b.get(a.URL).code(t, a)); tk.Claims["sub"] != second.ID {
			t.Errorf("SSO after the switch: sub %v, want %s", tk.Claims["sub"], second.ID)
		}

		// The stale choice answered "this account" now that the browser is
		// the second account's: asked again, naming the second account.
		pg = b.submit(stale, "account", map[string]string{"account": "current"})
		if pg.formWith("account") == nil || !strings.Contains(pg.Body, "other@example.com") {
			t.Fatalf("a choice for an account no longer signed in: want the choice again for other@example.com; got %d %v:\n%s",
				pg.Status, pg.Redirect, pg.Body)
		}
		tk := r.mustExchange(staleReq, b.submit(pg, "account", map[string]string{"account": "current"}).code(t, staleReq))
		if tk.Claims["sub"] != second.ID {
			t.Errorf("the stale request, answered again: sub %v, want %s", tk.Claims["sub"], second.ID)
		}

		// Only the listed answers.
		pg = b.submit(b.get(r.authorize(selectAccount).URL), "account", map[string]string{"account": "both"})
		if pg.Status != http.StatusBadRequest || pg.Redirect != nil {
			t.Errorf("an unknown answer: %d %v, want 400", pg.Status, pg.Redirect)
		}
	})
}

func TestLogoutEndsSession(t *testing.T) {
	testenv.Each(t, func(t *testing.T, db testenv.Database) {
		p := startProvider(t, db)
		p.createUser(email, password)
		r := p.newRP("viewer", true)
		b := p.newBrowser()
		a := r.authorize()
		tk := r.mustExchange(a, login(t, b, r, a))
		raw, _ := tk.Extra("id_token").(string)

		// An unregistered post-logout URI is refused.
		pg := b.get(p.URL + "/logout?" + url.Values{"id_token_hint": {raw}, "post_logout_redirect_uri": {"https://evil.example/"}}.Encode())
		if pg.Redirect != nil || pg.Status != http.StatusBadRequest {
			t.Fatalf("unregistered post_logout_redirect_uri: got %d %v", pg.Status, pg.Redirect)
		}
		// A hint that cannot be verified (here: not signed by any key of
		// ours, as one signed with a key retired since) proves nothing: the
		// user is asked, and the unverified client's URI is not followed.
		forged := strings.Join(strings.Split(raw, ".")[:2], ".") + ".c2lnbmF0dXJl"
		pg = b.get(p.URL + "/logout?" + url.Values{"id_token_hint": {forged}, "post_logout_redirect_uri": {"http://localhost/logged-out"}}.Encode())
		if pg.Status != http.StatusOK || pg.formWith("flow") == nil {
			t.Fatalf("unverifiable id_token_hint: want the confirmation page, got %d %v:\n%s", pg.Status, pg.Redirect, pg.Body)
		}
		if pg = b.submit(pg, "flow", nil); pg.Redirect != nil || pg.Status != http.StatusOK || b.hasSession(p) {
			t.Fatalf("confirmed logout after an unverifiable hint: got %d %v, session kept %v", pg.Status, pg.Redirect, b.hasSession(p))
		}
		// By POST from the relying party's page (RP-Initiated Logout 2).
		pg = b.postFromRP(p.URL+"/logout", url.Values{
			"id_token_hint": {raw}, "post_logout_redirect_uri": {"http://localhost/logged-out"}, "state": {"s1"},
		})
		if pg.Redirect == nil || pg.Redirect.Path != "/logged-out" || pg.Redirect.Query().Get("state") != "s1" {
			t.Fatalf("logout: want a redirect to the registered URI with state, got %d %v", pg.Status, pg.Redirect)
		}
		pg = b.get(r.authorize(oauth2.SetAuthURLParam("prompt", "none")).URL)
		if pg.Redirect == nil || pg.Redirect.Query().Get("error") != "login_required" {
			t.Fatalf("after logout, prompt=none: got %d %v", pg.Status, pg.Redirect)
		}

		// A confirmation page (the hint is of an earlier session) answered
		// after the client was deleted does not follow its URI any more.
		a = r.authorize()
		old, _ := r.mustExchange(a, login(t, b, r, a)).Extra("id_token").(string)
		a = r.authorize(oauth2.SetAuthURLParam("prompt", "login"))
		r.mustExchange(a, login(t, b, r, a))
		pg = b.get(p.URL + "/logout?" + url.Values{"id_token_hint": {old}, "post_logout_redirect_uri": {"http://localhost/logged-out"}}.Encode())
		if pg.Status != http.StatusOK || pg.formWith("flow") == nil {
			t.Fatalf("logout with the hint of an earlier session: want the confirmation page, got %d %v", pg.Status, pg.Redirect)
		}
		if err := p.app.DeleteClient(t.Context(), "viewer"); err != nil {
			t.Fatal(err)
		}
		if pg = b.submit(pg, "flow", nil); pg.Redirect != nil || pg.Status != http.StatusOK || b.hasSession(p) {
			t.Fatalf("logout confirmed after the client was deleted: got %d %v, session kept %v", pg.Status, pg.Redirect, b.hasSession(p))
		}
	})
}

// TestLogoutConfirmedLate: the logout confirmation sent after its flow
// expired still logs the browser out (its CSRF token shows it asked to),
// and shows the logged-out page: the relying party's redirect is what is
// lost.
func TestLogoutConfirmedLate(t *testing.T) {
	testenv.Each(t, func(t *testing.T, db testenv.Database) {
		p := startProvider(t, db, func(c *config.Config) { c.FlowLifetime = time.Minute })
		p.createUser(email, password)
		b := p.newBrowser()
		accountLogin(t, p, b, "")
		pg := b.get(p.URL + "/logout")
		if pg.Status != http.StatusOK || pg.formWith("flow") == nil {
			t.Fatalf("logout without a hint: want the confirmation page, got %d %v", pg.Status, pg.Redirect)
		}
		p.clock.Advance(2 * time.Minute)
		if pg = b.submit(pg, "flow", nil); pg.Status != http.StatusOK || pg.Redirect != nil || b.hasSession(p) {
			t.Fatalf("logout confirmed after its flow expired: %d %v, session kept %v", pg.Status, pg.Redirect, b.hasSession(p))
		}
	})
}

// TestIdleSessionGoes: a session not remembered that idled out is no
// longer listed on My Page; its row is kept while an access token issued
// in it can live (a logout then still ends its tokens:
// TestLogoutEndsTokens), and then the cleanup deletes it. A remembered one
// is listed while it lasts.
func TestIdleSessionGoes(t *testing.T) {
	testenv.Each(t, func(t *testing.T, db testenv.Database) {
		p := startProvider(t, db, func(c *config.Config) {
			c.SessionIdleTimeout, c.AuthCodeTTL, c.AccessTokenTTL = 10*time.Minute, 5*time.Minute, time.Hour
		})
		u := p.createUser(email, password)
		idle, remembered, active := p.newBrowser(), p.newBrowser(), p.newBrowser()
		loginAs(t, p, idle, email, password)
		pg := remembered.get(p.URL + "/login")
		pg = remembered.submit(pg, "password", map[string]string{"email": email, "password": password, "remember": "1"})
		if !remembered.hasSession(p) {
			t.Fatalf("remembered login: %s\n%s", pg.URL, pg.Body)
		}
		p.clock.Advance(11 * time.Minute)
		loginAs(t, p, active, email, password)
		stored := func() int {
			list, err := p.app.Store.ListUserSessions(t.Context(), u.ID, p.clock.Now())
			if err != nil {
				t.Fatal(err)
			}
			return len(list)
		}
		if n := len(active.get(p.URL + "/account/sessions").byClass("session")); n != 2 {
			t.Errorf("%d sessions listed on My Page 11 minutes after the idle one's last use, want 2 (remembered, this one)", n)
		}
		if _, err := p.app.Cleanup(t.Context()); err != nil {
			t.Fatal(err)
		}
		if n := stored(); n != 3 {
			t.Errorf("%d sessions stored after the cleanup, want 3: the idle one kept for its access tokens' lifetime", n)
		}
		// The idle one's row goes 10m + 5m + 1h + 1m after its last use
		// (a code issued then can be redeemed 5 minutes later, its token
		// live for an hour after that), the active one's as long after its
		// own, 11 minutes later.
		p.clock.Advance(62 * time.Minute) // 73 minutes after the idle one's last use
		if _, err := p.app.Cleanup(t.Context()); err != nil {
			t.Fatal(err)
		}
		if n := stored(); n != 3 {
			t.Errorf("%d sessions stored after the cleanup 73 minutes after the idle one's last use, want 3: a token issued in it may live", n)
		}
		p.clock.Advance(7 * time.Minute)
		if _, err := p.app.Cleanup(t.Context()); err != nil {
			t.Fatal(err)
		}
		if n := stored(); n != 2 {
			t.Errorf("%d sessions stored after the cleanup 80 minutes after the idle one's last use, want 2 (it deleted)", n)
		}
	})
}

// TestLogoutEndsTokens: a logout, asked for by a relying party or from My
// Page, deactivates the access tokens issued in the browser's session,
// every relying party's, also once the session has idled out; the refresh
// tokens (offline_access) still refresh, and another browser's session
// and tokens stay.
func TestLogoutEndsTokens(t *testing.T) {
	testenv.Each(t, func(t *testing.T, db testenv.Database) {
		p := startProvider(t, db, func(c *config.Config) { c.SessionIdleTimeout = 10 * time.Minute })
		p.createUser(email, password)
		viewer, other := p.newRP("viewer", true), p.newRP("other", true)
		for _, how := range []string{"relying party", "My Page", "relying party, session idle"} {
			b, elsewhere := p.newBrowser(), p.newBrowser()
			a := viewer.authorize()
			mine := viewer.mustExchange(a, login(t, b, viewer, a))
			a = other.authorize()
			sso := other.mustExchange(a, b.get(a.URL).code(t, a)) // by SSO, in the same session
			a = viewer.authorize()
			theirs := viewer.mustExchange(a, login(t, elsewhere, viewer, a))

			switch how {
			case "My Page":
				b.submit(b.get(p.URL+"/logout"), "flow", nil)
			case "relying party, session idle":
				p.clock.Advance(11 * time.Minute)
				fallthrough
			default:
				raw, _ := mine.Extra("id_token").(string)
				b.postFromRP(p.URL+"/logout", url.Values{"id_token_hint": {raw}})
			}
			if b.hasSession(p) {
				t.Fatalf("logout from the %s: the session is kept", how)
			}
			for _, c := range []struct {
				name string
				rp   *rp
				tk   *tokens
				live bool
			}{{"the session's", viewer, mine, false}, {"the SSO app's", other, sso, false}, {"another browser's", viewer, theirs, true}} {
				if st := userinfoStatus(t, c.rp, c.tk.AccessToken); (st == http.StatusOK) != c.live {
					t.Errorf("logout from the %s: userinfo with %s access token: %d", how, c.name, st)
				}
				refreshed, err := refresh(c.rp, c.tk.RefreshToken)
				if err != nil {
					t.Errorf("logout from the %s: %s refresh token (offline_access) no longer refreshes: %v", how, c.name, err)
				} else if st := userinfoStatus(t, c.rp, refreshed.AccessToken); st != http.StatusOK {
					t.Errorf("logout from the %s: userinfo with %s refreshed access token: %d", how, c.name, st)
				}
			}
		}
	})
}

// TestAuthorizeErrorPageInJapanese: an authorization request refused with
// an error page says why in the page's language, with the OAuth code.
func TestAuthorizeErrorPageInJapanese(t *testing.T) {
	p := startProvider(t, testenv.SQLite(t))
	pg := p.newBrowser().get(p.URL + "/oauth2/auth?client_id=nobody&response_type=code&scope=openid")
	if pg.Status != http.StatusBadRequest || !strings.Contains(pg.Body, "このアプリ（クライアント）は登録されていません。 (invalid_client)") {
		t.Errorf("unknown client: %d\n%s", pg.Status, pg.Body)
	}
}

// TestLoopbackRedirectExact: a redirect URI on a loopback address matches
// exactly too (fosite would take any port there).
func TestLoopbackRedirectExact(t *testing.T) {
	testenv.Each(t, func(t *testing.T, db testenv.Database) {
		p := startProvider(t, db)
		p.createUser(email, password)
		c, _, err := p.app.CreateClient(context.Background(), app.NewClient{ID: "native", Name: "Native",
			RedirectURIs: []string{"http://127.0.0.1:9999/cb"}, FirstParty: true})
		if err != nil {
			t.Fatal(err)
		}
		b := p.newBrowser()
		for _, tc := range []struct {
			uri  string
			page bool // the login page, or an error page without a redirect
		}{
			{"http://127.0.0.1:9999/cb", true},
			{"http://127.0.0.1:31337/cb", false},
			{"http://127.0.0.1/cb", false},
		} {
			q := url.Values{"response_type": {"code"}, "client_id": {c.ID}, "redirect_uri": {tc.uri}, "scope": {"openid"},
				"state": {"state-0123456789"}, "code_challenge": {"E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"}, "code_challenge_method": {"S256"}}
			pg := b.get(p.URL + "/oauth2/auth?" + q.Encode())
			if got := pg.formWith("password") != nil; got != tc.page || pg.Redirect != nil {
				t.Errorf("redirect_uri %s: got %d, redirect %v, login page %v", tc.uri, pg.Status, pg.Redirect, got)
			}
		}
	})
}

func TestConsentForThirdParty(t *testing.T) {
	testenv.Each(t, func(t *testing.T, db testenv.Database) {
		p := startProvider(t, db)
		p.createUser(email, password)
		r := p.newRP("partner", false)
		b := p.newBrowser()
		a := r.authorize()
		pg := b.submit(b.get(a.URL), "password", map[string]string{"email": email, "password": password})
		if pg.formWith("consent") == nil {
			t.Fatalf("want the consent page, got %d %v:\n%s", pg.Status, pg.Redirect, pg.Body)
		}
		for _, s := range []string{"profile", "email"} {
			if !strings.Contains(pg.Body, s) {
				t.Errorf("consent page does not list %s", s)
			}
		}
		r.mustExchange(a, b.submit(pg, "consent", map[string]string{"consent": "allow"}).code(t, a))
		// Remembered: the next request goes straight through.
		a = r.authorize()
		r.mustExchange(a, b.get(a.URL).code(t, a))

		// Claims asked for one by one release what their scope would: a
		// client the user allowed "openid" only must ask again for them.
		narrow := p.newRP("partner2", false, "openid")
		a = narrow.authorize()
		pg = b.get(a.URL)
		if pg.formWith("consent") == nil || strings.Contains(pg.Body, "email") {
			t.Fatalf("want the consent page for openid alone, got %d %v:\n%s", pg.Status, pg.Redirect, pg.Body)
		}
		narrow.mustExchange(a, b.submit(pg, "consent", map[string]string{"consent": "allow"}).code(t, a))
		claims := oauth2.SetAuthURLParam("claims", `{"id_token":{"email":null},"userinfo":{"name":null}}`)
		pg = b.get(narrow.authorize(claims, oauth2.SetAuthURLParam("prompt", "none")).URL)
		if pg.Redirect == nil || pg.Redirect.Query().Get("error") != "consent_required" {
			t.Fatalf("prompt=none with claims beyond the consent: got %d %v", pg.Status, pg.Redirect)
		}
		a = narrow.authorize(claims)
		pg = b.get(a.URL)
		if pg.formWith("consent") == nil || !strings.Contains(pg.Body, "email") || !strings.Contains(pg.Body, "profile") {
			t.Fatalf("want the consent page listing email and profile, got %d %v:\n%s", pg.Status, pg.Redirect, pg.Body)
		}
		tk := narrow.mustExchange(a, b.submit(pg, "consent", map[string]string{"consent": "allow"}).code(t, a))
		if tk.Claims["email"] != email || userinfo(t, narrow, tk.AccessToken, "GET")["name"] != "テスト 太郎" {
			t.Errorf("claims after consent: id token %v", tk.Claims)
		}

		// Consents add up: scopes allowed one at a time are all remembered.
		third := p.newRP("partner3", false, "openid")
		for _, scope := range []string{"email", "profile"} {
			a = third.authorize(oauth2.SetAuthURLParam("scope", "openid "+scope))
			if pg = b.get(a.URL); pg.formWith("consent") == nil {
				t.Fatalf("scope %s asked for the first time: want the consent page, got %d %v", scope, pg.Status, pg.Redirect)
			}
			third.mustExchange(a, b.submit(pg, "consent", map[string]string{"consent": "allow"}).code(t, a))
		}
		a = third.authorize(oauth2.SetAuthURLParam("scope", "openid email profile"))
		third.mustExchange(a, b.get(a.URL).code(t, a))
	})
}

func TestRequestObjectsAndClaims(t *testing.T) {
	testenv.Each(t, func(t *testing.T, db testenv.Database) {
		p := startProvider(t, db)
		p.createUser(email, password)
		r := p.newRP("viewer", true, "openid")
		b := p.newBrowser()
		for param, want := range map[string]string{"request": "request_not_supported", "request_uri": "request_uri_not_supported"} {
			pg := b.get(r.authorize(oauth2.SetAuthURLParam(param, "eyJhbGciOiJub25lIn0.e30.")).URL)
			if pg.Redirect == nil || pg.Redirect.Query().Get("error") != want {
				t.Errorf("%s: want %s, got %d %v", param, want, pg.Status, pg.Redirect)
			}
		}
		// Unknown parameters and the display/ui_locales/... hints are accepted; an
		// essential name claim comes without the profile scope.
		a := r.authorize(
			oauth2.SetAuthURLParam("claims", `{"userinfo":{"name":{"essential":true}}}`),
			oauth2.SetAuthURLParam("display", "page"), oauth2.SetAuthURLParam("ui_locales", "en"),
			oauth2.SetAuthURLParam("claims_locales", "ja"), oauth2.SetAuthURLParam("acr_values", "1"),
			oauth2.SetAuthURLParam("login_hint", email), oauth2.SetAuthURLParam("foo", "bar"),
		)
		pg := b.get(a.URL)
		if !strings.Contains(pg.Body, "lang=\"en\"") || !strings.Contains(pg.Body, email) {
			t.Errorf("ui_locales=en and login_hint not honoured on the login page")
		}
		tk := r.mustExchange(a, b.submit(pg, "password", map[string]string{"email": email, "password": password}).code(t, a))
		if info := userinfo(t, r, tk.AccessToken, "GET"); info["name"] != "テスト 太郎" || info["email"] != nil {
			t.Errorf("userinfo with claims={name essential} and scope openid = %v", info)
		}
	})
}

func TestRestartKeepsState(t *testing.T) {
	db := testenv.SQLite(t)
	c := newClock()
	cfg := testConfig(db)
	p := startProviderWith(t, cfg, c)
	p.createUser(email, password)
	r := p.newRP("viewer", true)
	b := p.newBrowser()
	a := r.authorize()
	first := r.mustExchange(a, login(t, b, r, a))
	jwks := get(t, p.URL+"/.well-known/jwks.json")
	_ = p.app.Close()

	// A new process on the same files (on another port: cookies belong to
	// the host, so the browser still presents its session).
	p2 := startProviderWith(t, cfg, c)
	b.host = strings.TrimPrefix(p2.URL, "http://")
	r2 := &rp{t: t, cfg: r.cfg}
	r2.cfg.Endpoint.AuthURL = p2.URL + "/oauth2/auth"
	a2 := r2.authorize(oauth2.SetAuthURLParam("prompt", "none"))
	pg := b.get(a2.URL)
	if pg.Redirect == nil || pg.Redirect.Query().Get("code") == "" {
		t.Fatalf("after restart the SSO session is gone: %d %v", pg.Status, pg.Redirect)
	}
	u, err := p2.app.Store.GetUserByEmail(context.Background(), email)
	if err != nil || u.ID != first.Claims["sub"] {
		t.Fatalf("user after restart: %v %v", u, err)
	}
	if jwks2 := get(t, p2.URL+"/.well-known/jwks.json"); jwks2 != jwks {
		t.Errorf("signing keys changed across a restart:\n%s\n%s", jwks, jwks2)
	}
}

func get(t *testing.T, u string) string {
	t.Helper()
	resp, err := http.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

// TestCleanupDeletesExpired runs the background job's work once after
// everything a login left behind has expired.
func TestCleanupDeletesExpired(t *testing.T) {
	testenv.Each(t, func(t *testing.T, db testenv.Database) {
		p := startProvider(t, db)
		p.createUser(email, password)
		r := p.newRP("viewer", true)
		a := r.authorize()
		tk := r.mustExchange(a, login(t, p.newBrowser(), r, a))
		ctx := context.Background()
		if n, err := p.app.Cleanup(ctx); err != nil || n != 0 {
			t.Fatalf("cleanup before expiry deleted %d rows: %v", n, err)
		}
		p.clock.Advance(40 * 24 * time.Hour)
		n, err := p.app.Cleanup(ctx)
		if err != nil || n == 0 {
			t.Fatalf("cleanup after expiry deleted %d rows: %v", n, err)
		}
		if _, err := r.cfg.TokenSource(ctx, &oauth2.Token{RefreshToken: tk.RefreshToken}).Token(); err == nil {
			t.Fatal("a deleted refresh token still works")
		}
	})
}

// TestRememberMe: ログインしたままにする gives a persistent cookie, a plain
// login a browser-session one; neither outlives IDP_SESSION_MAX_AGE. A
// script's "0", "false" or "off" is an unchecked box.
func TestRememberMe(t *testing.T) {
	testenv.Each(t, func(t *testing.T, db testenv.Database) {
		p := startProvider(t, db, func(c *config.Config) { c.SessionMaxAge = time.Hour })
		p.createUser(email, password)
		for _, value := range []string{"", "0", "false", "off", "on", "1", "true"} {
			remember := value == "on" || value == "1" || value == "true"
			b := p.newBrowser()
			cookies := b.recordCookies()
			pg := b.get(p.URL + "/account")
			values := map[string]string{"email": email, "password": password}
			if value != "" {
				values["remember"] = value
			}
			if pg = b.submit(pg, "password", values); pg.URL.Path != "/account" {
				t.Fatalf("login (remember %v): %d %s", remember, pg.Status, pg.URL)
			}
			var maxAge int
			for _, c := range cookies.all() {
				if c.Name == "idp_session" {
					maxAge = c.MaxAge
				}
			}
			switch {
			case !remember && maxAge != 0:
				t.Errorf("a login without remember-me set a persistent cookie (Max-Age %d)", maxAge)
			case remember && (maxAge <= 0 || maxAge > 3600):
				t.Errorf("remember-me cookie Max-Age %d, want 1..3600 (IDP_SESSION_MAX_AGE 1h)", maxAge)
			}
		}
		b := p.newBrowser()
		pg := b.get(p.URL + "/account")
		b.submit(pg, "password", map[string]string{"email": email, "password": password, "remember": "on"})
		p.clock.Advance(time.Hour + time.Minute)
		if b.hasSession(p) {
			t.Error("a remembered session outlived IDP_SESSION_MAX_AGE")
		}
	})
}

// TestLanguageCarriesOn: a language chosen on the login page (?lang=, or a
// relying party's ui_locales) is the language of the page its "forgot your
// password" link opens, and of that form's answer; only the switch's choice
// is remembered by the browser.
func TestLanguageCarriesOn(t *testing.T) {
	testenv.Each(t, func(t *testing.T, db testenv.Database) {
		p := startProvider(t, db)
		r := p.newRP("viewer", true)
		b := p.newBrowser()
		b.get(p.URL + "/login?lang=en")
		if fp := b.get(p.URL + "/forgot-password"); !strings.Contains(fp.Body, `<html lang="en">`) {
			t.Errorf("/forgot-password after /login?lang=en is not in English")
		}
		b = p.newBrowser()
		pg := b.get(r.authorize(oauth2.SetAuthURLParam("ui_locales", "en")).URL)
		if fp := b.get(p.URL + linkTo(t, pg, "/forgot-password")); !strings.Contains(fp.Body, `<html lang="en">`) {
			t.Errorf("the forgot-password link of an English login page opens a page that is not in English")
		}
		if pg := b.get(p.URL + "/login"); !strings.Contains(pg.Body, `<html lang="ja">`) {
			t.Errorf("a later login without ui_locales is not in the browser's Japanese: the relying party's English stuck")
		}

		// A relying party's Japanese for a browser that asks for English:
		// the forgot-password page and its answer are in Japanese too, and
		// the browser does not keep the relying party's choice as its own.
		b = p.newBrowser()
		b.lang = "en-US,en;q=0.9"
		pg = b.get(r.authorize(oauth2.SetAuthURLParam("ui_locales", "ja")).URL)
		if !strings.Contains(pg.Body, `<html lang="ja">`) {
			t.Fatalf("the login page with ui_locales=ja is not in Japanese")
		}
		fp := b.get(p.URL + linkTo(t, pg, "/forgot-password"))
		if !strings.Contains(fp.Body, `<html lang="ja">`) {
			t.Errorf("the forgot-password link of a Japanese login page opens a page that is not in Japanese")
		}
		if sent := b.submit(fp, "email", map[string]string{"email": "nobody@example.com"}); !strings.Contains(sent.Body, `<html lang="ja">`) {
			t.Errorf("the forgot-password form's answer is not in Japanese")
		}
		if pg := b.get(p.URL + "/login"); !strings.Contains(pg.Body, `<html lang="en">`) {
			t.Errorf("a later login without ui_locales is not in the browser's English: the relying party's choice stuck")
		}

		// The switch on the page answering a wrong password keeps what was
		// typed: the address and the remember box.
		b = p.newBrowser()
		pg = b.get(r.authorize().URL)
		pg = b.submit(pg, "password", map[string]string{"email": "typed@example.com", "password": "wrong-password", "remember": "on"})
		switchTo := func(pg *page, lang string) (typed string, remembered bool) {
			t.Helper()
			links := findAll(pg.Doc, func(n *html.Node) bool { return n.Data == "a" && attr(n, "hreflang") == lang })
			if len(links) != 1 {
				t.Fatalf("the page after a wrong password has %d links to %s", len(links), lang)
			}
			other := b.get(p.URL + attr(links[0], "href"))
			if !strings.Contains(other.Body, `<html lang="`+lang+`">`) {
				t.Fatalf("the switch's page is not in %s", lang)
			}
			for _, in := range findAll(other.Doc, func(n *html.Node) bool { return n.Data == "input" }) {
				switch attr(in, "name") {
				case "email":
					typed = attr(in, "value")
				case "remember":
					remembered = slices.ContainsFunc(in.Attr, func(a html.Attribute) bool { return a.Key == "checked" })
				}
			}
			return typed, remembered
		}
		if typed, remembered := switchTo(pg, "en"); typed != "typed@example.com" || !remembered {
			t.Errorf("the login page in English after a wrong password: address %q, remember %v", typed, remembered)
		}
		// Sent again emptied (in English now), the form is shown empty in
		// Japanese too.
		pg = b.submit(pg, "password", map[string]string{"email": "", "password": "wrong-password"})
		if typed, remembered := switchTo(pg, "ja"); typed != "" || remembered {
			t.Errorf("the login page in Japanese after an emptied form: address %q, remember %v", typed, remembered)
		}
	})
}
