package e2e

import (
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/kamera-id/idp/idp/app"
	"github.com/kamera-id/idp/idp/testenv"
)

// TestCrossOriginReads: a public client's page (a single-page app) can
// read discovery, the JWKS, the token endpoint's answer and userinfo with
// fetch, from the origin of its redirect URIs; another origin, or a
// confidential client's, reads nothing but the public documents.
func TestCrossOriginReads(t *testing.T) {
	testenv.Each(t, func(t *testing.T, db testenv.Database) {
		p := startProvider(t, db)
		p.createUser(email, password)
		spa := p.newPublicRP("spa") // redirect URI http://localhost/callback
		if _, _, err := p.app.CreateClient(context.Background(), app.NewClient{ID: "server", Name: "Server",
			RedirectURIs: []string{"https://server.example/cb"}}); err != nil {
			t.Fatal(err)
		}
		const page = "http://localhost"
		send := func(method, path, origin string, form url.Values, header http.Header) *http.Response {
			t.Helper()
			var body *strings.Reader
			if form != nil {
				body = strings.NewReader(form.Encode())
			} else {
				body = strings.NewReader("")
			}
			req, _ := http.NewRequest(method, p.URL+path, body)
			if form != nil {
				req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			}
			for k, v := range header {
				req.Header[k] = v
			}
			if origin != "" {
				req.Header.Set("Origin", origin)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { resp.Body.Close() })
			return resp
		}
		allowed := func(what string, resp *http.Response, want string) {
			t.Helper()
			if got := resp.Header.Get("Access-Control-Allow-Origin"); got != want {
				t.Errorf("%s: Access-Control-Allow-Origin %q, want %q", what, got, want)
			}
			if resp.Header.Get("Access-Control-Allow-Credentials") != "" {
				t.Errorf("%s: credentials allowed", what)
			}
		}

		allowed("discovery", send("GET", "/.well-known/openid-configuration", "https://any.example", nil, nil), "*")
		allowed("the JWKS", send("GET", "/.well-known/jwks.json", "https://any.example", nil, nil), "*")

		b := p.newBrowser()
		a := spa.authorize()
		code := login(t, b, spa, a)
		exchange := url.Values{"grant_type": {"authorization_code"}, "code": {code}, "redirect_uri": {callback},
			"client_id": {"spa"}, "code_verifier": {a.Verifier}}
		resp := send("POST", "/oauth2/token", page, exchange, nil)
		allowed("the token endpoint, from the public client's origin", resp, page)
		if resp.StatusCode != http.StatusOK || !strings.Contains(resp.Header.Get("Vary"), "Origin") {
			t.Fatalf("the exchange: %d, Vary %q", resp.StatusCode, resp.Header.Get("Vary"))
		}
		var tok struct {
			AccessToken string `json:"access_token"`
		}
		if err := json.NewDecoder(resp.Body).Decode(&tok); err != nil || tok.AccessToken == "" {
			t.Fatalf("the exchange's answer: %v", err)
		}
		exchange.Set("code", "spent-or-not")
		allowed("the token endpoint, from another origin", send("POST", "/oauth2/token", "https://evil.example", exchange, nil), "")
		exchange.Set("client_id", "server")
		allowed("the token endpoint, for a confidential client", send("POST", "/oauth2/token", "https://server.example", exchange, nil), "")

		preflight := http.Header{"Access-Control-Request-Method": {"GET"}, "Access-Control-Request-Headers": {"authorization"}}
		resp = send("OPTIONS", "/userinfo", page, nil, preflight)
		allowed("userinfo's preflight", resp, page)
		if resp.StatusCode != http.StatusNoContent || !strings.Contains(resp.Header.Get("Access-Control-Allow-Headers"), "Authorization") ||
			!strings.Contains(resp.Header.Get("Access-Control-Allow-Methods"), "GET") {
			t.Errorf("userinfo's preflight: %d %v", resp.StatusCode, resp.Header)
		}
		allowed("userinfo's preflight from a confidential client's origin", send("OPTIONS", "/userinfo", "https://server.example", nil, preflight), "")
		allowed("userinfo's preflight from another origin", send("OPTIONS", "/userinfo", "https://evil.example", nil, preflight), "")
		resp = send("GET", "/userinfo", page, nil, http.Header{"Authorization": {"Bearer " + tok.AccessToken}})
		allowed("userinfo", resp, page)
		if resp.StatusCode != http.StatusOK {
			t.Errorf("userinfo: %d", resp.StatusCode)
		}
		allowed("introspection", send("POST", "/oauth2/introspect", page, url.Values{"token": {tok.AccessToken}}, nil), "")
	})
}
