package web

import (
	"bytes"
	"context"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/kamera-id/idp/idp/config"
	"github.com/kamera-id/idp/idp/password"
	"github.com/kamera-id/idp/idp/store"
	"github.com/kamera-id/idp/idp/testenv"
)

// TestRetryAfterThroughTheIssuersOrigin: a locked login posted without
// Sec-Fetch-Site from the issuer's origin through another host name (the
// cross-origin check's deny handler serves it) gets its Retry-After too.
func TestRetryAfterThroughTheIssuersOrigin(t *testing.T) {
	st := testenv.SQLiteStore(t)
	cfg := config.Defaults()
	cfg.Issuer = "http://localhost:8080"
	h := password.New(password.Params{Memory: 8192, Time: 1, Threads: 1, SaltLen: 16, KeyLen: 32}, 1)
	s := New(Deps{Config: cfg, Key: testKey(t), Store: st, Hasher: h, Logger: slog.New(slog.DiscardHandler)})
	const addr = "user@example.com"
	rec := httptest.NewRecorder()
	s.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "http://localhost:8080/login", nil))
	loc, _ := url.Parse(rec.Header().Get("Location"))
	var csrf *http.Cookie
	for _, c := range rec.Result().Cookies() {
		if c.Name == s.cookieName(csrfCookie) {
			csrf = c
		}
	}
	key := s.accountThrottleKey(addr)
	if _, err := st.RecordFailure(context.Background(), key,
		store.ThrottlePolicy{MaxFailures: 1, BaseLockout: time.Minute, MaxLockout: time.Hour}, s.Now()); err != nil {
		t.Fatal(err)
	}
	attempt := func(host string) *httptest.ResponseRecorder {
		form := url.Values{"flow": {loc.Query().Get("flow")}, "csrf": {s.csrfFor(csrf.Value)}, "email": {addr}, "password": {"guess"}}
		req := httptest.NewRequest(http.MethodPost, "http://"+host+"/login", strings.NewReader(form.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.Header.Set("Origin", cfg.Issuer)
		req.AddCookie(csrf)
		rec := httptest.NewRecorder()
		s.ServeHTTP(rec, req)
		return rec
	}
	if rec := attempt("localhost:8080"); rec.Code != 429 || rec.Header().Get("Retry-After") == "" {
		t.Fatalf("same host: %d Retry-After %q", rec.Code, rec.Header().Get("Retry-After"))
	}
	if rec := attempt("127.0.0.1:8080"); rec.Code != 429 || rec.Header().Get("Retry-After") == "" {
		t.Errorf("issuer's Origin via another Host (deny handler path): %d, Retry-After %q, want a value", rec.Code, rec.Header().Get("Retry-After"))
	}
}

// TestRefusedInputWithoutProvider: a server without a provider (tests,
// pages only) answers a refused protocol request 400, not a panic.
func TestRefusedInputWithoutProvider(t *testing.T) {
	var logs bytes.Buffer
	s := unitServer(t, "http://localhost:8080", &logs)
	req := httptest.NewRequest(http.MethodPost, "http://localhost:8080/oauth2/token", strings.NewReader("code=a&code=b"))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Origin", "https://spa.example")
	rec := httptest.NewRecorder()
	s.ServeHTTP(rec, req)
	if rec.Code != http.StatusBadRequest {
		t.Errorf("a parameter twice, no Provider: %d, want 400", rec.Code)
	}
}
