package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/oauth2"

	"github.com/kamera-id/idp/idp/testenv"
)

// postForm posts a form and decodes the JSON answer. Client credentials go
// in the form (client_secret_post), or as HTTP Basic (client_secret_basic,
// the only method fosite's introspection endpoint takes) when the form has
// "basic_id" and "basic_secret".
func postForm(t *testing.T, endpoint string, form url.Values) (int, map[string]any) {
	t.Helper()
	id, secret := form.Get("basic_id"), form.Get("basic_secret")
	form.Del("basic_id")
	form.Del("basic_secret")
	req, _ := http.NewRequest(http.MethodPost, endpoint, strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if id != "" {
		req.SetBasicAuth(url.QueryEscape(id), url.QueryEscape(secret))
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	out := map[string]any{}
	if len(body) > 0 {
		if err := json.Unmarshal(body, &out); err != nil {
			t.Fatalf("%s answered %d with non-JSON %q", endpoint, resp.StatusCode, body)
		}
	}
	return resp.StatusCode, out
}

// TestBasicOPFeatures covers what the OpenID Foundation's Basic OP plan
// checks beyond the main flow: client_secret_post, the address and phone
// scopes, POST to the authorization endpoint, revocation and introspection.
func TestBasicOPFeatures(t *testing.T) {
	testenv.Each(t, func(t *testing.T, db testenv.Database) {
		p := startProvider(t, db)
		p.createUser(email, password)
		r := p.newRP("viewer", true, "openid", "profile", "email", "address", "phone", "offline_access")
		ctx := context.Background()
		var disc map[string]any
		if err := r.provider.Claims(&disc); err != nil {
			t.Fatal(err)
		}
		revoke, _ := disc["revocation_endpoint"].(string)
		introspect, _ := disc["introspection_endpoint"].(string)
		if revoke == "" || introspect == "" || disc["end_session_endpoint"] == nil {
			t.Fatalf("discovery lacks endpoints: %v", disc)
		}
		// Claims are not localised (claims_locales is accepted and ignored):
		// discovery does not say they are.
		if v, ok := disc["claims_locales_supported"]; ok {
			t.Errorf("discovery lists claims_locales_supported %v", v)
		}

		// client_secret_post at the token endpoint.
		post := *r
		post.cfg.Endpoint.AuthStyle = oauth2.AuthStyleInParams
		a := post.authorize()
		tk := post.mustExchange(a, login(t, p.newBrowser(), &post, a))
		// The token type as RFC 6750 registers it and OpenID Connect's
		// examples write it (fosite writes "bearer"; both are one type).
		if tk.TokenType != "Bearer" {
			t.Errorf("token_type %q, want Bearer", tk.TokenType)
		}
		for _, s := range []string{"address", "phone"} {
			if !strings.Contains(tk.Extra("scope").(string), s) {
				t.Errorf("scope %s not granted: %v", s, tk.Extra("scope"))
			}
		}

		// POST to the authorization endpoint, from the relying party's page.
		b := p.newBrowser()
		login(t, b, r, r.authorize()) // an SSO session
		a2 := r.authorize()
		u, _ := url.Parse(a2.URL)
		pg := b.postFromRP(r.provider.Endpoint().AuthURL, u.Query())
		r.mustExchange(a2, pg.code(t, a2))
		// From the provider's own origin it is answered directly.
		a3 := r.authorize()
		u, _ = url.Parse(a3.URL)
		req, _ := http.NewRequest(http.MethodPost, r.provider.Endpoint().AuthURL, strings.NewReader(u.RawQuery))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		resp, err := b.client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if loc, _ := url.Parse(resp.Header.Get("Location")); loc == nil || loc.Query().Get("code") == "" {
			t.Errorf("same-origin POST to the authorization endpoint: %d %q, want the code", resp.StatusCode, resp.Header.Get("Location"))
		}

		creds := url.Values{"client_id": {r.cfg.ClientID}, "client_secret": {r.cfg.ClientSecret}}
		with := func(kv ...string) url.Values {
			v := url.Values{}
			for k, x := range creds {
				v[k] = x
			}
			for i := 0; i+1 < len(kv); i += 2 {
				v.Set(kv[i], kv[i+1])
			}
			return v
		}
		basic := func(token string) url.Values {
			return url.Values{"token": {token}, "basic_id": {r.cfg.ClientID}, "basic_secret": {r.cfg.ClientSecret}}
		}
		// Introspection (RFC 7662): active, with its subject and client.
		status, info := postForm(t, introspect, basic(tk.AccessToken))
		if status != http.StatusOK || info["active"] != true || info["sub"] != tk.Claims["sub"] || info["client_id"] != "viewer" {
			t.Fatalf("introspection of a live token: %d %v", status, info)
		}
		// Each token's own expiry (RFC 7662 2.2): the refresh token's is
		// the refresh lifetime's, not the access token's.
		accessExp, _ := info["exp"].(float64)
		status, info = postForm(t, introspect, basic(tk.RefreshToken))
		refreshExp, _ := info["exp"].(float64)
		if status != http.StatusOK || info["active"] != true ||
			time.Unix(int64(refreshExp), 0).Sub(time.Unix(int64(accessExp), 0)) < p.app.Config.RefreshTokenTTL-p.app.Config.AccessTokenTTL-time.Minute {
			t.Errorf("introspection of the refresh token: %d %v; exp %v, the access token's %v", status, info, refreshExp, accessExp)
		}
		// A refresh token is no access token: userinfo refuses it.
		if st := userinfoStatus(t, r, tk.RefreshToken); st != http.StatusUnauthorized {
			t.Errorf("userinfo with a refresh token answered %d, want 401", st)
		}
		// Introspection wants client credentials: a live access token of a
		// public client, sent as a bearer token, is none.
		pub := p.newPublicRP("pub")
		pa := pub.authorize()
		pt := pub.mustExchange(pa, login(t, p.newBrowser(), pub, pa))
		req, _ = http.NewRequest(http.MethodPost, introspect, strings.NewReader(url.Values{"token": {tk.RefreshToken}}.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.Header.Set("Authorization", "Bearer "+pt.AccessToken)
		if resp, err := http.DefaultClient.Do(req); err != nil {
			t.Fatal(err)
		} else {
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusUnauthorized || strings.Contains(string(body), `"active"`) {
				t.Errorf("introspection with a bearer token as credentials: %d %s", resp.StatusCode, body)
			}
		}
		// Nor in the form, beside Basic credentials of no client: fosite
		// would take it as the caller's and never check the Basic ones.
		for _, in := range []string{"form", "query"} {
			form := url.Values{"token": {tk.RefreshToken}, "basic_id": {"nobody"}, "basic_secret": {"nothing"}}
			endpoint := introspect
			if in == "form" {
				form.Set("access_token", pt.AccessToken)
			} else {
				endpoint += "?access_token=" + url.QueryEscape(pt.AccessToken)
			}
			if status, info := postForm(t, endpoint, form); status != http.StatusUnauthorized || info["active"] != nil {
				t.Errorf("introspection with an access_token in the %s and a wrong Basic client: %d %v", in, status, info)
			}
		}
		// Another client's credentials cannot revoke it; revocation by the
		// owner (RFC 7009) makes it inactive everywhere.
		other := p.newRP("other", true)
		if status, info := postForm(t, revoke, url.Values{"token": {tk.AccessToken}, "client_id": {"other"}, "client_secret": {other.cfg.ClientSecret}}); status != http.StatusBadRequest ||
			info["error"] != "unauthorized_client" || userinfoStatus(t, r, tk.AccessToken) != http.StatusOK {
			t.Fatalf("another client's revocation of this client's token: %d %v, want 400 unauthorized_client (RFC 7009 2.1), the token kept", status, info)
		}
		// Wrong Basic credentials: invalid_client with the challenge (RFC
		// 6749 5.2), at revocation and introspection alike.
		for _, endpoint := range []string{revoke, introspect} {
			req, _ := http.NewRequest(http.MethodPost, endpoint, strings.NewReader(url.Values{"token": {tk.AccessToken}}.Encode()))
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			req.SetBasicAuth("viewer", "wrong")
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusUnauthorized || resp.Header.Get("WWW-Authenticate") == "" || !strings.Contains(string(body), `"invalid_client"`) {
				t.Errorf("%s with a wrong secret: %d WWW-Authenticate=%q %s", endpoint, resp.StatusCode, resp.Header.Get("WWW-Authenticate"), body)
			}
		}
		// A public client has no secret: one sent is refused, not ignored.
		for _, endpoint := range []string{r.cfg.Endpoint.TokenURL, revoke} {
			status, info := postForm(t, endpoint, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {pt.RefreshToken},
				"token": {pt.AccessToken}, "client_id": {"pub"}, "client_secret": {"any secret"}})
			if status != http.StatusUnauthorized || info["error"] != "invalid_client" {
				t.Errorf("%s: a public client with a secret: %d %v, want 401 invalid_client", endpoint, status, info)
			}
		}
		// Nor beside Basic credentials with an empty secret ("pub:").
		req, _ = http.NewRequest(http.MethodPost, revoke, strings.NewReader(url.Values{"token": {pt.AccessToken}, "client_secret": {"any secret"}}.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.SetBasicAuth("pub", "")
		if resp, err := http.DefaultClient.Do(req); err != nil {
			t.Fatal(err)
		} else if resp.Body.Close(); resp.StatusCode != http.StatusUnauthorized {
			t.Errorf("revocation by a public client with Basic \"pub:\" and a secret in the form: %d, want 401", resp.StatusCode)
		}
		if status, _ := postForm(t, revoke, with("token", tk.RefreshToken, "token_type_hint", "refresh_token")); status != http.StatusOK {
			t.Fatalf("revocation answered %d", status)
		}
		if _, info := postForm(t, introspect, basic(tk.AccessToken)); info["active"] != false {
			t.Errorf("access token still active after revoking its refresh token: %v", info)
		}
		if userinfoStatus(t, r, tk.AccessToken) != http.StatusUnauthorized {
			t.Error("userinfo accepts a revoked access token")
		}
		if _, err := r.cfg.TokenSource(ctx, &oauth2.Token{RefreshToken: tk.RefreshToken}).Token(); err == nil {
			t.Error("a revoked refresh token still works")
		}
		// Revoking an unknown token is not an error (RFC 7009 section 2.2).
		if status, _ := postForm(t, revoke, with("token", "not-a-token")); status != http.StatusOK {
			t.Errorf("revoking an unknown token answered %d", status)
		}
		// Wrong client credentials are refused.
		if status, _ := postForm(t, introspect, url.Values{"token": {tk.AccessToken}, "basic_id": {"viewer"}, "basic_secret": {"wrong"}}); status != http.StatusUnauthorized {
			t.Errorf("introspection with a wrong secret answered %d", status)
		}
	})
}

// rawToken posts form to the token endpoint with HTTP Basic credentials.
func rawToken(t *testing.T, r *rp, form url.Values, id, secret string) (*http.Response, map[string]any) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, r.cfg.Endpoint.TokenURL, strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth(url.QueryEscape(id), url.QueryEscape(secret))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	out := map[string]any{}
	_ = json.NewDecoder(resp.Body).Decode(&out)
	return resp, out
}

// TestTokenEndpointEdges: what fosite alone gets wrong at the edges of the
// protocol, as a second review found it.
func TestTokenEndpointEdges(t *testing.T) {
	testenv.Each(t, func(t *testing.T, db testenv.Database) {
		p := startProvider(t, db)
		p.createUser(email, password)
		r := p.newRP("viewer", true, "openid", "email", "offline_access")
		b := p.newBrowser()
		id, secret := r.cfg.ClientID, r.cfg.ClientSecret

		// response_mode=query, as discovery advertises; acr_values gets no
		// made-up acr.
		a := r.authorize(oauth2.SetAuthURLParam("response_mode", "query"), oauth2.SetAuthURLParam("acr_values", "urn:mfa"))
		tk := r.mustExchange(a, login(t, b, r, a))
		if acr, ok := tk.Claims["acr"]; ok {
			t.Errorf("acr %v without any acr supported", acr)
		}

		// A refresh request chooses no nonce, and asks for no more scope.
		resp, out := rawToken(t, r, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {tk.RefreshToken},
			"scope": {"openid phone"}}, id, secret)
		if resp.StatusCode != http.StatusBadRequest || out["error"] != "invalid_scope" {
			t.Errorf("refresh asking for a scope never granted: %d %v", resp.StatusCode, out)
		}
		resp, out = rawToken(t, r, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {tk.RefreshToken},
			"nonce": {"chosen-by-the-caller"}}, id, secret)
		raw, _ := out["id_token"].(string)
		if resp.StatusCode != http.StatusOK || raw == "" {
			t.Fatalf("refresh: %d %v", resp.StatusCode, out)
		}
		idt, err := r.verifier.Verify(context.Background(), raw)
		if err != nil {
			t.Fatal(err)
		}
		if idt.Nonce != "" {
			t.Errorf("refreshed ID token carries the caller's nonce %q", idt.Nonce)
		}

		// Errors: an unsupported grant type by its name; a wrong secret sent
		// by Basic gets WWW-Authenticate.
		resp, out = rawToken(t, r, url.Values{"grant_type": {"client_credentials"}}, id, secret)
		if resp.StatusCode != http.StatusBadRequest || out["error"] != "unsupported_grant_type" {
			t.Errorf("client_credentials: %d %v", resp.StatusCode, out)
		}
		resp, out = rawToken(t, r, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {"x"}}, id, "wrong")
		if resp.StatusCode != http.StatusUnauthorized || out["error"] != "invalid_client" || resp.Header.Get("WWW-Authenticate") == "" {
			t.Errorf("wrong secret by Basic: %d %v, WWW-Authenticate %q", resp.StatusCode, out, resp.Header.Get("WWW-Authenticate"))
		}

		// One client authentication method a request (RFC 6749 2.3).
		resp, out = rawToken(t, r, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {tk.RefreshToken},
			"client_id": {id}, "client_secret": {secret}}, id, secret)
		if resp.StatusCode != http.StatusBadRequest || out["error"] != "invalid_request" {
			t.Errorf("Basic and client_secret in the form: %d %v", resp.StatusCode, out)
		}
		// An OpenID Connect request names its redirect_uri (Core 3.1.2.1;
		// fosite checks it), and without one is not sent to the registered one.
		noRedirect := regexp.MustCompile(`([?&])redirect_uri=[^&]*&?`).ReplaceAllString(r.authorize().URL, "$1")
		if pg := p.newBrowser().get(noRedirect); pg.Redirect != nil || pg.Status != http.StatusBadRequest {
			t.Errorf("no redirect_uri: %d, redirected to %v", pg.Status, pg.Redirect)
		}

		// max_age that is no number of seconds is refused, not ignored.
		if pg := p.newBrowser().get(r.authorize(oauth2.SetAuthURLParam("max_age", "abc")).URL); pg.Redirect == nil || pg.Redirect.Query().Get("error") != "invalid_request" {
			t.Errorf("max_age=abc: %d %v", pg.Status, pg.Redirect)
		}
		// A state is required...
		a = r.authorize()
		noState := regexp.MustCompile(`([?&])state=[^&]*&?`).ReplaceAllString(a.URL, "$1")
		if pg := p.newBrowser().get(noState); pg.Redirect == nil || pg.Redirect.Query().Get("error") != "invalid_state" {
			t.Errorf("no state: %d %v", pg.Status, pg.Redirect)
		}
		// ...of any length, as a nonce: short ones go through to the ID
		// token (fosite's default wants 8 characters of each).
		a = authRequest{State: "xyz", Nonce: "n1", Verifier: oauth2.GenerateVerifier()}
		a.URL = r.cfg.AuthCodeURL(a.State, oauth2.S256ChallengeOption(a.Verifier), oidc.Nonce(a.Nonce))
		tk = r.mustExchange(a, login(t, p.newBrowser(), r, a))
		if tk.Claims["nonce"] != "n1" {
			t.Errorf("ID token nonce %v, want the short nonce n1", tk.Claims["nonce"])
		}
	})
}

// TestRefreshNarrowerScope: a refresh request may name fewer scopes than its
// grant (RFC 6749 6). The new access token, what userinfo and introspection
// answer for it and the refreshed ID token have only those; the new refresh
// token keeps the grant's, so the next refresh gets them all again.
func TestRefreshNarrowerScope(t *testing.T) {
	testenv.Each(t, func(t *testing.T, db testenv.Database) {
		p := startProvider(t, db)
		p.createUser(email, password)
		r := p.newRP("viewer", true, "openid", "email", "profile", "offline_access")
		// name is also asked for by name: it still goes with its scope.
		a := r.authorize(oauth2.SetAuthURLParam("claims", `{"id_token":{"name":null},"userinfo":{"name":null}}`))
		tk := r.mustExchange(a, login(t, p.newBrowser(), r, a))
		id, secret := r.cfg.ClientID, r.cfg.ClientSecret
		var disc map[string]any
		if err := r.provider.Claims(&disc); err != nil {
			t.Fatal(err)
		}
		introspect, _ := disc["introspection_endpoint"].(string)

		// refresh spends rt, asking for scope ("" sends none), and returns
		// the response and its refreshed ID token's claims (nil: none).
		refresh := func(rt, scope string) (map[string]any, map[string]any) {
			t.Helper()
			form := url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}}
			if scope != "" {
				form.Set("scope", scope)
			}
			resp, out := rawToken(t, r, form, id, secret)
			if resp.StatusCode != http.StatusOK || out["access_token"] == nil || out["refresh_token"] == nil || out["token_type"] != "Bearer" {
				t.Fatalf("refresh with scope %q: %d %v", scope, resp.StatusCode, out)
			}
			raw, _ := out["id_token"].(string)
			if raw == "" {
				return out, nil
			}
			idt, err := r.verifier.Verify(context.Background(), raw)
			if err != nil {
				t.Fatal(err)
			}
			claims := map[string]any{}
			if err := idt.Claims(&claims); err != nil {
				t.Fatal(err)
			}
			return out, claims
		}
		scopes := func(s any) []string {
			f := strings.Fields(fmt.Sprint(s))
			slices.Sort(f)
			return f
		}
		// check compares the access token's scope as the response,
		// introspection and userinfo give it with want, and the ID token's
		// claims (nil: no ID token wanted).
		check := func(what string, out, idc map[string]any, want []string) {
			t.Helper()
			slices.Sort(want)
			at, _ := out["access_token"].(string)
			if got := scopes(out["scope"]); !slices.Equal(got, want) {
				t.Errorf("%s: response scope %v, want %v", what, got, want)
			}
			status, info := postForm(t, introspect, url.Values{"token": {at}, "basic_id": {id}, "basic_secret": {secret}})
			if got := scopes(info["scope"]); status != http.StatusOK || info["active"] != true || !slices.Equal(got, want) {
				t.Errorf("%s: introspection %d %v, want the scope %v", what, status, info, want)
			}
			profile := slices.Contains(want, "profile")
			if slices.Contains(want, "openid") {
				ui := userinfo(t, r, at, "GET")
				if ui["email"] != email || (ui["name"] != nil) != profile || (ui["locale"] != nil) != profile {
					t.Errorf("%s: userinfo %v, want email, and name and locale only with profile", what, ui)
				}
			} else if st := userinfoStatus(t, r, at); st != http.StatusForbidden {
				t.Errorf("%s: userinfo without openid answered %d, want 403", what, st)
			}
			switch {
			case idc == nil && slices.Contains(want, "openid"):
				t.Errorf("%s: no ID token", what)
			case idc != nil && !slices.Contains(want, "openid"):
				t.Errorf("%s: an ID token without openid: %v", what, idc)
			case idc != nil && (idc["email"] != email || (idc["name"] != nil) != profile || (idc["locale"] != nil) != profile || idc["sid"] == nil):
				t.Errorf("%s: ID token claims %v, want email and sid, and name and locale only with profile", what, idc)
			}
		}
		all := []string{"openid", "email", "profile", "offline_access"}

		out, idc := refresh(tk.RefreshToken, "openid email offline_access")
		check("narrowed", out, idc, []string{"openid", "email", "offline_access"})
		out, idc = refresh(out["refresh_token"].(string), "")
		check("after a narrowed refresh, no scope", out, idc, all)

		// Without offline_access the response still has a refresh token, with
		// the grant's scopes; without openid it has no ID token.
		out, idc = refresh(out["refresh_token"].(string), "openid email")
		check("without offline_access", out, idc, []string{"openid", "email"})
		out, idc = refresh(out["refresh_token"].(string), "email profile offline_access")
		check("without openid", out, idc, []string{"email", "profile", "offline_access"})
		out, idc = refresh(out["refresh_token"].(string), "offline_access profile email openid")
		check("the whole grant by name", out, idc, all)

		// Wider, unknown or differently written scopes are refused, and the
		// refresh token stays usable.
		rt := out["refresh_token"].(string)
		for _, scope := range []string{"openid phone", "openid email unknown", "openid EMAIL"} {
			resp, bad := rawToken(t, r, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}, "scope": {scope}}, id, secret)
			if resp.StatusCode != http.StatusBadRequest || bad["error"] != "invalid_scope" {
				t.Errorf("refresh asking for %q: %d %v, want invalid_scope", scope, resp.StatusCode, bad)
			}
		}
		out, idc = refresh(rt, "")
		check("after the refusals", out, idc, all)
	})
}
