package oidc_test

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kamera-id/idp/idp/app"
	"github.com/kamera-id/idp/idp/config"
	"github.com/kamera-id/idp/idp/oidc"
	"github.com/kamera-id/idp/idp/store"
)

// BenchmarkCodeExchange measures the token endpoint exchanging an
// authorization code (client_secret_basic, PKCE S256, an ID token signed
// with each algorithm) against the embedded store, in process. Issuing the
// code is not timed.
func BenchmarkCodeExchange(b *testing.B) {
	for _, alg := range []string{"RS256", "ES256"} {
		b.Run("alg="+alg, func(b *testing.B) {
			key := make([]byte, 32)
			_, _ = rand.Read(key)
			cfg := config.Defaults()
			cfg.Issuer = "http://127.0.0.1:8080"
			cfg.DatabaseURL = "sqlite://" + filepath.Join(b.TempDir(), "idp.db")
			cfg.SecretKey = base64.StdEncoding.EncodeToString(key)
			cfg.SigningAlg = alg
			cfg.ArgonMemoryKiB, cfg.ArgonIterations = 8192, 1
			a, err := app.Open(b.Context(), cfg, app.Options{Migrate: true, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(func() { a.Close() })
			u, err := a.CreateUser(b.Context(), app.NewUser{Email: "bench@example.com", Name: "Bench", Password: "bench-password"})
			if err != nil {
				b.Fatal(err)
			}
			// The SSO session the codes are issued in (a code is stored only
			// while its session exists).
			t0 := time.Now().Truncate(time.Second)
			if err := a.Store.CreateSession(b.Context(), &store.Session{TokenHash: []byte("bench-session"), ID: "sid",
				UserID: u.ID, AuthTime: t0, AMR: []string{"pwd", "otp"}, CreatedAt: t0, LastSeen: t0, ExpiresAt: t0.Add(time.Hour)}); err != nil {
				b.Fatal(err)
			}
			const redirect = "http://127.0.0.1/callback"
			c, secret, err := a.CreateClient(b.Context(), app.NewClient{ID: "bench", Name: "Bench", RedirectURIs: []string{redirect}, FirstParty: true})
			if err != nil {
				b.Fatal(err)
			}
			issue := func() (code, verifier string) {
				verifier = rand.Text() + rand.Text()
				sum := sha256.Sum256([]byte(verifier))
				q := url.Values{
					"response_type": {"code"}, "client_id": {c.ID}, "redirect_uri": {redirect},
					"scope": {"openid profile email offline_access"}, "state": {"state-0123456789"},
					"nonce": {"nonce-0123456789"}, "code_challenge": {base64.RawURLEncoding.EncodeToString(sum[:])},
					"code_challenge_method": {"S256"},
				}
				ctx := b.Context()
				ar, _, err := a.Provider.ParseAuthorize(ctx, httptest.NewRequest(http.MethodGet, oidc.PathAuthorize+"?"+q.Encode(), nil))
				if err != nil {
					b.Fatal(err)
				}
				now := time.Now().Add(-time.Second).Truncate(time.Second)
				w := httptest.NewRecorder()
				a.Provider.Authorize(ctx, w, ar, u, oidc.Identity{UserID: u.ID, SID: "sid", AuthTime: now, AMR: []string{"pwd", "otp"}, RequestedAt: now})
				loc, err := url.Parse(w.Header().Get("Location"))
				if err != nil || loc.Query().Get("code") == "" {
					b.Fatalf("authorize: %d %q", w.Code, w.Header().Get("Location"))
				}
				return loc.Query().Get("code"), verifier
			}
			b.ResetTimer()
			for range b.N {
				b.StopTimer()
				code, verifier := issue()
				form := url.Values{"grant_type": {"authorization_code"}, "code": {code}, "redirect_uri": {redirect}, "code_verifier": {verifier}}
				r := httptest.NewRequest(http.MethodPost, oidc.PathToken, strings.NewReader(form.Encode()))
				r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
				r.SetBasicAuth(c.ID, secret)
				w := httptest.NewRecorder()
				b.StartTimer()
				a.Provider.Token(w, r)
				if w.Code != http.StatusOK || !strings.Contains(w.Body.String(), `"id_token"`) {
					b.Fatalf("exchange: %d %s", w.Code, w.Body)
				}
			}
		})
	}
}
