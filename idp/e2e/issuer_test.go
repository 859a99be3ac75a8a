package e2e

import (
	"encoding/json"
	"net"
	"net/http"
	"strings"
	"testing"

	"github.com/kamera-id/idp/idp/testenv"
)

// TestIssuerWithSlash: an issuer may end with a slash (Ory Hydra's do, and
// OpenID Connect allows it). Tokens and discovery say it exactly, the
// endpoints and the links in mails are built without doubling it, and a
// relying party (go-oidc, which checks the discovery's issuer and the ID
// token's iss against the one it was given) logs in.
func TestIssuerWithSlash(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := newSMTPServer(t)
	cfg := testConfig(testenv.SQLite(t), quickMail(srv))
	cfg.Issuer = "http://" + ln.Addr().String() + "/"
	p := startInstance(t, cfg, newClock(), ln)
	p.createUser(email, password)

	resp, err := http.Get("http://" + p.Addr + "/.well-known/openid-configuration")
	if err != nil {
		t.Fatal(err)
	}
	var disc map[string]any
	err = json.NewDecoder(resp.Body).Decode(&disc)
	resp.Body.Close()
	if err != nil || disc["issuer"] != cfg.Issuer {
		t.Fatalf("discovery issuer %v (%v), want %s", disc["issuer"], err, cfg.Issuer)
	}
	for k, v := range disc {
		if s, ok := v.(string); ok && (strings.HasSuffix(k, "_endpoint") || strings.HasSuffix(k, "_uri")) &&
			strings.Contains(strings.TrimPrefix(s, "http://"), "//") {
			t.Errorf("%s = %s: the issuer's slash doubled", k, s)
		}
	}

	r := p.newRP("viewer", true) // go-oidc's discovery, with the issuer as given
	a := r.authorize()
	tk := r.mustExchange(a, login(t, p.newBrowser(), r, a)) // go-oidc checks iss
	if tk.Claims["iss"] != cfg.Issuer {
		t.Fatalf("iss %v, want %s", tk.Claims["iss"], cfg.Issuer)
	}

	// The reset mail's link.
	runMail(t, p)
	requestReset(t, p, p.newBrowser(), email)
	link := resetLink(t, srv.waitFor(email, "パスワード再設定のご案内"))
	if !strings.HasPrefix(link, "http://"+p.Addr+"/reset-password?token=") {
		t.Errorf("reset link %s, want it under %s without a doubled slash", link, cfg.Issuer)
	}
}
