package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
)

// fakeProvider is just enough of an OpenID provider for the viewer:
// discovery, JWKS, and a token endpoint that checks PKCE and signs an ID
// token for the one code it knows.
type fakeProvider struct {
	*httptest.Server
	key *ecdsa.PrivateKey

	mu        sync.Mutex
	challenge string // code_challenge of the pending code "c1"
	nonce     string // the ID token's nonce
	amr       []string
}

func newFakeProvider(t *testing.T) *fakeProvider {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	f := &fakeProvider{key: key}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /.well-known/openid-configuration", func(w http.ResponseWriter, r *http.Request) {
		json.NewEncoder(w).Encode(map[string]any{
			"issuer": f.URL, "authorization_endpoint": f.URL + "/auth", "token_endpoint": f.URL + "/token",
			"jwks_uri": f.URL + "/jwks", "end_session_endpoint": f.URL + "/logout",
			"id_token_signing_alg_values_supported": []string{"ES256"},
		})
	})
	mux.HandleFunc("GET /jwks", func(w http.ResponseWriter, r *http.Request) {
		json.NewEncoder(w).Encode(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: &key.PublicKey, KeyID: "k1", Algorithm: "ES256", Use: "sig"}}})
	})
	mux.HandleFunc("POST /token", func(w http.ResponseWriter, r *http.Request) {
		f.mu.Lock()
		defer f.mu.Unlock()
		sum := sha256.Sum256([]byte(r.PostFormValue("code_verifier")))
		id, secret, _ := r.BasicAuth()
		if r.PostFormValue("code") != "c1" || id != "demo-viewer" || secret != "s3cret" ||
			f.challenge == "" || base64.RawURLEncoding.EncodeToString(sum[:]) != f.challenge {
			http.Error(w, `{"error":"invalid_grant"}`, http.StatusBadRequest)
			return
		}
		f.challenge = ""
		now := time.Now()
		signer, _ := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: key}, (&jose.SignerOptions{}).WithHeader("kid", "k1"))
		idt, err := jwt.Signed(signer).Claims(map[string]any{
			"iss": f.URL, "sub": "u-123", "aud": "demo-viewer", "iat": now.Unix(), "exp": now.Add(time.Hour).Unix(),
			"auth_time": now.Unix(), "nonce": f.nonce, "amr": f.amr, "email": "demo@example.com", "name": "デモ ユーザー",
		}).Serialize()
		if err != nil {
			t.Error(err)
		}
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(map[string]any{"access_token": "at", "token_type": "Bearer", "expires_in": 3600, "id_token": idt})
	})
	f.Server = httptest.NewServer(mux)
	t.Cleanup(f.Close)
	return f
}

// get sends a GET to the viewer with the given cookies and returns the response.
func get(h http.Handler, target string, cookies []*http.Cookie) *http.Response {
	r := httptest.NewRequest("GET", target, nil)
	for _, c := range cookies {
		r.AddCookie(c)
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	return w.Result()
}

func body(t *testing.T, res *http.Response) string {
	t.Helper()
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestLoginFlow(t *testing.T) {
	f := newFakeProvider(t)
	p, err := discover(t.Context(), f.URL, time.Second) // the fake is up: no retry, no wait
	if err != nil {
		t.Fatal(err)
	}
	v := newViewer(p, "demo-viewer", "s3cret", "http://localhost:9090")

	if b := body(t, get(v, "/", nil)); !strings.Contains(b, `href="/login"`) || !strings.Contains(b, "ログイン") {
		t.Fatalf("logged-out page has no login link:\n%s", b)
	}

	// login: redirect to the provider with PKCE S256, state and nonce.
	login := func(t *testing.T, amr ...string) (url.Values, []*http.Cookie) {
		res := get(v, "/login", nil)
		loc, err := url.Parse(res.Header.Get("Location"))
		if err != nil || res.StatusCode != http.StatusFound || !strings.HasPrefix(loc.String(), f.URL+"/auth?") {
			t.Fatalf("login: %d %q", res.StatusCode, loc)
		}
		q := loc.Query()
		if q.Get("code_challenge_method") != "S256" || q.Get("state") == "" || q.Get("nonce") == "" ||
			q.Get("redirect_uri") != "http://localhost:9090/callback" || !strings.Contains(q.Get("scope"), "openid") {
			t.Fatalf("authorization request: %v", q)
		}
		c := res.Cookies()
		if len(c) != 1 || !c[0].HttpOnly || c[0].SameSite != http.SameSiteLaxMode {
			t.Fatalf("login cookie: %+v", c)
		}
		f.mu.Lock()
		f.challenge, f.nonce, f.amr = q.Get("code_challenge"), q.Get("nonce"), amr
		f.mu.Unlock()
		return q, c
	}

	t.Run("wrong state", func(t *testing.T) {
		_, c := login(t, "pwd")
		res := get(v, "/callback?code=c1&state=forged", c)
		if res.StatusCode != http.StatusBadRequest || !strings.Contains(body(t, res), "state") {
			t.Fatalf("forged state: %d", res.StatusCode)
		}
	})

	t.Run("wrong nonce", func(t *testing.T) {
		q, c := login(t, "pwd")
		f.mu.Lock()
		f.nonce = "replayed"
		f.mu.Unlock()
		res := get(v, "/callback?code=c1&state="+url.QueryEscape(q.Get("state")), c)
		if b := body(t, res); res.StatusCode == http.StatusFound || !strings.Contains(b, "nonce") {
			t.Fatalf("wrong nonce accepted: %d\n%s", res.StatusCode, b)
		}
	})

	t.Run("password and otp", func(t *testing.T) {
		q, c := login(t, "pwd", "otp")
		res := get(v, "/callback?code=c1&state="+url.QueryEscape(q.Get("state")), c)
		if res.StatusCode != http.StatusFound {
			t.Fatalf("callback: %d\n%s", res.StatusCode, body(t, res))
		}
		var session []*http.Cookie
		for _, c := range res.Cookies() {
			if c.Name == "viewer_session" {
				session = append(session, c)
			}
		}
		b := body(t, get(v, "/", session))
		for _, want := range []string{"2段階認証: 済み", "u-123", "demo@example.com", "デモ ユーザー", `href="/logout"`} {
			if !strings.Contains(b, want) {
				t.Errorf("page lacks %q:\n%s", want, b)
			}
		}

		res = get(v, "/logout", session)
		loc, _ := url.Parse(res.Header.Get("Location"))
		if !strings.HasPrefix(loc.String(), f.URL+"/logout?") || loc.Query().Get("id_token_hint") == "" ||
			loc.Query().Get("post_logout_redirect_uri") != "http://localhost:9090/" {
			t.Fatalf("logout redirect: %q", loc)
		}
		if b := body(t, get(v, "/", session)); !strings.Contains(b, `href="/login"`) {
			t.Fatalf("still logged in after logout:\n%s", b)
		}
	})
}

// A provider that answers with another issuer is a configuration error:
// discovery gives up at once instead of retrying for the whole wait.
func TestDiscoverIssuerMismatch(t *testing.T) {
	f := newFakeProvider(t)
	start := time.Now()
	if _, err := discover(t.Context(), f.URL+"/", time.Minute); err == nil || time.Since(start) > 10*time.Second {
		t.Fatalf("discover with the wrong issuer: %v after %v", err, time.Since(start))
	}
}
