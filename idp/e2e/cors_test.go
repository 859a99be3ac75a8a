package e2e

import (
	"context"
	"encoding/base64"
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
		_, serverSecret, err := p.app.CreateClient(context.Background(), app.NewClient{ID: "server", Name: "Server",
			RedirectURIs: []string{"https://server.example/cb", "http://localhost/server-cb"}})
		if err != nil {
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
		// A confidential client authenticating with Basic while the form
		// names the public one: fosite takes Basic's, and so does CORS.
		basic := http.Header{"Authorization": {"Basic " + base64.StdEncoding.EncodeToString([]byte("server:"+serverSecret))}}
		exchange.Set("client_id", "spa")
		allowed("the token endpoint, as a confidential client naming a public one", send("POST", "/oauth2/token", page, exchange, basic), "")
		exchange.Del("client_id")
		allowed("the token endpoint, as a confidential client on a public one's origin", send("POST", "/oauth2/token", page, exchange, basic), "")
		resp = send("POST", "/oauth2/revoke", page, url.Values{"token": {"unknown"}, "client_id": {"spa"}}, nil)
		allowed("revocation, from the public client's origin", resp, page)
		resp = send("OPTIONS", "/oauth2/token", page, nil, http.Header{"Access-Control-Request-Method": {"POST"}})
		allowed("the token endpoint's preflight", resp, page)
		if resp.StatusCode != http.StatusNoContent {
			t.Errorf("the token endpoint's preflight: %d", resp.StatusCode)
		}

		preflight := http.Header{"Access-Control-Request-Method": {"GET"}, "Access-Control-Request-Headers": {"authorization"}}
		resp = send("OPTIONS", "/userinfo", page, nil, preflight)
		allowed("userinfo's preflight", resp, page)
		if resp.StatusCode != http.StatusNoContent || !strings.Contains(resp.Header.Get("Access-Control-Allow-Headers"), "Authorization") ||
			!strings.Contains(resp.Header.Get("Access-Control-Allow-Methods"), "GET") {
			t.Errorf("userinfo's preflight: %d %v", resp.StatusCode, resp.Header)
		}
		allowed("userinfo's preflight from a confidential client's origin", send("OPTIONS", "/userinfo", "https://server.example", nil, preflight), "")
		allowed("userinfo's preflight from another origin", send("OPTIONS", "/userinfo", "https://evil.example", nil, preflight), "")
		bearer := http.Header{"Authorization": {"Bearer " + tok.AccessToken}}
		resp = send("GET", "/userinfo", page, nil, bearer)
		allowed("userinfo", resp, page)
		if resp.StatusCode != http.StatusOK || !strings.Contains(resp.Header.Get("Access-Control-Expose-Headers"), "WWW-Authenticate") {
			t.Errorf("userinfo: %d, exposed headers %q", resp.StatusCode, resp.Header.Get("Access-Control-Expose-Headers"))
		}
		allowed("userinfo, from another origin", send("GET", "/userinfo", "https://evil.example", nil, bearer), "")
		if v := send("GET", "/userinfo", "", nil, bearer).Header.Get("Vary"); !strings.Contains(v, "Origin") {
			t.Errorf("userinfo without an Origin: Vary %q, want Origin (the answer depends on it)", v)
		}
		allowed("introspection", send("POST", "/oauth2/introspect", page, url.Values{"token": {tok.AccessToken}}, nil), "")
		// A request refused before it reaches the endpoint (a parameter
		// twice): the page can read why.
		twice := url.Values{"grant_type": {"authorization_code"}, "code": {"a", "b"}, "client_id": {"spa"}}
		resp = send("POST", "/oauth2/token", page, twice, nil)
		allowed("the token endpoint's refusal of a parameter sent twice", resp, page)
		if resp.StatusCode != http.StatusBadRequest {
			t.Errorf("a parameter sent twice: %d, want 400", resp.StatusCode)
		}
		allowed("the refusal, from another origin", send("POST", "/oauth2/token", "https://evil.example", twice, nil), "")
	})
}
