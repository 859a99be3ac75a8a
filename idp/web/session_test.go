package web_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/kamera-id/idp/idp/store"
)

// endedWhileRead ends the session between a request's read of it and the
// touch that records its use, as a logout in another tab may: the read
// finds it last seen two minutes ago, so the request touches it.
type endedWhileRead struct{ store.Store }

func (s endedWhileRead) GetSession(ctx context.Context, tokenHash []byte, now time.Time) (*store.Session, error) {
	x, err := s.Store.GetSession(ctx, tokenHash, now)
	if err == nil {
		x.LastSeen, x.Remember = now.Add(-2*time.Minute), true
	}
	return x, err
}

func (s endedWhileRead) TouchSession(ctx context.Context, tokenHash []byte, lastSeen, expiresAt time.Time) error {
	if err := s.Store.DeleteSession(ctx, tokenHash); err != nil {
		return err
	}
	return s.Store.TouchSession(ctx, tokenHash, lastSeen, expiresAt)
}

// TestSessionEndedWhileRead: a session ended between its read and its
// touch is no session (My Page sends the browser to the login), not a
// server error.
func TestSessionEndedWhileRead(t *testing.T) {
	e := newFuzzEnv(t)
	e.signIn(t, false)
	e.useStore(endedWhileRead{e.app.Store})
	rec := e.serve(httptest.NewRequest(http.MethodGet, origin+"/account", nil))
	if loc := rec.Header().Get("Location"); rec.Code != http.StatusSeeOther || !strings.HasPrefix(loc, "/login?") {
		t.Errorf("My Page with a session ended while it was read: %d %q, want a redirect to the login", rec.Code, loc)
	}
}

// failingDeleteSession is a real store that cannot delete a session.
type failingDeleteSession struct{ store.Store }

func (failingDeleteSession) DeleteSession(context.Context, []byte) error { return store.ErrUnavailable }

// TestLoginWhenThePreviousSessionCannotEnd: a login whose session is
// stored stands when the browser's previous session cannot be ended after
// it: the browser gets its new session, not an error page for a login
// that was used up (its step spent, its session never given).
func TestLoginWhenThePreviousSessionCannotEnd(t *testing.T) {
	e := newFuzzEnv(t)
	e.signIn(t, false)
	session := func() string {
		for _, c := range e.cookies {
			if c.Name == "idp_session" {
				return c.Value
			}
		}
		return ""
	}
	before := session()
	e.useStore(failingDeleteSession{e.app.Store})
	flow := e.newFlow(t, false)
	rec := e.post("/login", url.Values{"csrf": {e.csrf}, "flow": {flow}, "email": {fuzzEmail}, "password": {fuzzPassword}}.Encode())
	if rec.Code != http.StatusSeeOther || session() == "" || session() == before {
		t.Fatalf("login: %d, session cookie %q (was %q)\n%s", rec.Code, session(), before, rec.Body)
	}
}

// TestIssuerOriginAcrossHosts: a form posted without Sec-Fetch-Site (an
// older browser, a script) from the issuer's own origin is taken though
// the request reached the server under another host name (its listen
// address, a proxy's Host); another origin, or a browser that says the
// request is cross-site, is refused as before.
func TestIssuerOriginAcrossHosts(t *testing.T) {
	e := newFuzzEnv(t)
	flow := e.newFlow(t, false)
	post := func(origin, fetchSite string) int {
		req := httptest.NewRequest(http.MethodPost, "http://127.0.0.1:8080/login", strings.NewReader(url.Values{
			"csrf": {e.csrf}, "flow": {flow}, "email": {fuzzEmail}, "password": {"wrong password"}}.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.Header.Set("Origin", origin)
		if fetchSite != "" {
			req.Header.Set("Sec-Fetch-Site", fetchSite)
		}
		return e.serve(req).Code
	}
	if code := post(origin, ""); code == http.StatusForbidden {
		t.Errorf("the issuer's origin through another host name: %d, want the form answered", code)
	}
	if code := post("https://evil.example", ""); code != http.StatusForbidden {
		t.Errorf("another origin: %d, want 403", code)
	}
	if code := post(origin, "cross-site"); code != http.StatusForbidden {
		t.Errorf("the issuer's origin with Sec-Fetch-Site cross-site: %d, want 403", code)
	}
}
