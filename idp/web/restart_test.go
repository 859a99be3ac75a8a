package web

import (
	"encoding/base64"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"github.com/kamera-id/idp/idp/config"
	"github.com/kamera-id/idp/idp/crypt"
)

// withCookies is a request for target carrying the cookies rec set.
func withCookies(method, target string, body url.Values, rec *httptest.ResponseRecorder) *http.Request {
	var r *http.Request
	if body != nil {
		r = httptest.NewRequest(method, target, strings.NewReader(body.Encode()))
		r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	} else {
		r = httptest.NewRequest(method, target, nil)
	}
	for _, c := range rec.Result().Cookies() {
		if c.MaxAge >= 0 {
			r.AddCookie(c)
		}
	}
	return r
}

// TestRestartBinding: a restart cookie opens only for the flow it was given
// for, and is sealed (the relying party's request is not readable in it);
// the notice it leaves is taken only by the request the restart was sent
// to, and is dropped by any other.
func TestRestartBinding(t *testing.T) {
	s := &Server{Deps: Deps{Key: testKey(t), Config: config.Defaults()}}
	f := &flow{Kind: "login", loginID: "flow-one", Authorize: "client_id=viewer&login_hint=hint%40example.com&state=s1"}
	rec := httptest.NewRecorder()
	s.keepRestart(rec, f)
	if c := rec.Result().Cookies(); len(c) != 1 || strings.Contains(c[0].Value, "hint") {
		t.Fatalf("restart cookie: %+v, want one, sealed", c)
	}
	target := "/oauth2/auth?" + f.Authorize
	if got := s.restartTarget(withCookies("GET", "/login?flow=flow-one", nil, rec), "flow-one"); got != target {
		t.Fatalf("restart of its own flow: %q, want %q", got, target)
	}
	if got := s.restartTarget(withCookies("GET", "/login?flow=flow-two", nil, rec), "flow-two"); got != "" {
		t.Fatalf("restart of another flow: %q, want none", got)
	}

	gone := httptest.NewRecorder()
	s.loginGone(gone, withCookies("POST", "/login", url.Values{"email": {"typed@example.com"}, "password": {"secret pw"}}, rec), "flow-one", restartExpired)
	if loc := gone.Header().Get("Location"); gone.Code != http.StatusSeeOther || loc != target {
		t.Fatalf("loginGone: %d %q, want a redirect to %q", gone.Code, loc, target)
	}
	for _, c := range gone.Result().Cookies() {
		if strings.Contains(c.Value, "typed") || strings.Contains(c.Value, "secret") {
			t.Fatalf("cookie %s holds the address or the password in the clear: %q", c.Name, c.Value)
		}
	}
	if msg, typed := s.takeNotice(httptest.NewRecorder(), withCookies("GET", "/login", nil, gone)); msg != "" || typed != "" {
		t.Errorf("notice taken by another request: %q %q", msg, typed)
	}
	if msg, typed := s.takeNotice(httptest.NewRecorder(), withCookies("GET", target, nil, gone)); msg != "login_restarted" || typed != "typed@example.com" {
		t.Errorf("notice at the restart's target: %q %q, want login_restarted and the typed address", msg, typed)
	}

	// A login ended by new credentials says so.
	changed := httptest.NewRecorder()
	s.loginGone(changed, withCookies("POST", "/login/totp", url.Values{"code": {"123456"}}, rec), "flow-one", restartChanged)
	if msg, typed := s.takeNotice(httptest.NewRecorder(), withCookies("GET", target, nil, changed)); msg != restartChanged || typed != "" {
		t.Errorf("notice of a login ended by new credentials: %q %q, want %s and no address", msg, typed, restartChanged)
	}
}

// TestRestartAcrossUpgrade: a login left open across the upgrade to sealed
// logins (its stored flow's id in the form, its restart cookie sealed as
// cookies were then, with the at-rest seal) starts again where it began.
func TestRestartAcrossUpgrade(t *testing.T) {
	s := &Server{Deps: Deps{Key: testKey(t), Config: config.Defaults()}}
	target := "/oauth2/auth?client_id=viewer&state=s1"
	old := base64.RawURLEncoding.EncodeToString(s.Key.Seal([]byte(target), restartAAD(crypt.HashToken("old-flow-id"))))
	r := httptest.NewRequest(http.MethodGet, "/login?flow=old-flow-id", nil)
	r.AddCookie(&http.Cookie{Name: restartCookie, Value: old})
	w := httptest.NewRecorder()
	if _, ok := s.flowOrError(w, r, "old-flow-id", "login"); ok || w.Code != http.StatusSeeOther || w.Header().Get("Location") != target {
		t.Fatalf("a login stored before the upgrade: %d %q, want its restart %q", w.Code, w.Header().Get("Location"), target)
	}
}
