package web

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/kamera-id/idp/idp/store"
)

// TestRetryAfterThroughTheIssuersOrigin: a locked login posted without
// Sec-Fetch-Site from the issuer's origin through another host name (the
// cross-origin check's deny handler serves it) gets its Retry-After too.
func TestRetryAfterThroughTheIssuersOrigin(t *testing.T) {
	f := newLoginForm(t)
	const addr = "user@example.com"
	if _, err := f.st.RecordFailure(context.Background(), f.s.accountThrottleKey(addr),
		store.ThrottlePolicy{MaxFailures: 1, BaseLockout: time.Minute, MaxLockout: time.Hour}, f.s.Now()); err != nil {
		t.Fatal(err)
	}
	attempt := func(host string) *httptest.ResponseRecorder {
		form := url.Values{"flow": {f.flow}, "csrf": {f.s.csrfFor(f.csrf.Value)}, "email": {addr}, "password": {"guess"}}
		req := httptest.NewRequest(http.MethodPost, "http://"+host+"/login", strings.NewReader(form.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.Header.Set("Origin", "http://localhost:8080") // the issuer's
		req.AddCookie(f.csrf)
		rec := httptest.NewRecorder()
		f.s.ServeHTTP(rec, req)
		return rec
	}
	if rec := attempt("localhost:8080"); rec.Code != http.StatusTooManyRequests || rec.Header().Get("Retry-After") != "60" {
		t.Fatalf("a locked login: %d, Retry-After %q, want 429 and 60", rec.Code, rec.Header().Get("Retry-After"))
	}
	if rec := attempt("127.0.0.1:8080"); rec.Code != http.StatusTooManyRequests || rec.Header().Get("Retry-After") == "" {
		t.Errorf("a locked login from the issuer's origin through another host name: %d, Retry-After %q, want 429 and a value",
			rec.Code, rec.Header().Get("Retry-After"))
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
