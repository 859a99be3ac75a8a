package web_test

import (
	"context"
	"encoding/base64"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/kamera-id/idp/idp/oidc"
	"github.com/kamera-id/idp/idp/store"
	"github.com/kamera-id/idp/idp/testenv"
	"github.com/kamera-id/idp/idp/web"
)

// noFlows is a store on which a test fails if a flow is written or read.
type noFlows struct {
	store.Store
	t *testing.T
}

func (s noFlows) PutFlow(ctx context.Context, f *store.Flow) error {
	s.t.Error("a login wrote a flow to the store")
	return s.Store.PutFlow(ctx, f)
}

func (s noFlows) GetFlow(ctx context.Context, key []byte, now time.Time) (*store.Flow, error) {
	s.t.Error("a login read a flow from the store")
	return s.Store.GetFlow(ctx, key, now)
}

// TestLoginSealed: a login's state travels sealed in its requests. A
// relying party's request and its login page, and the password step, write
// and read no flow in the store; what the login carries does not show the
// request (its login_hint); a login changed by one byte, or taken to
// another browser, is refused as gone (the expired-flow page), never
// opened. Once the login is done, its page opened again by the browser
// holding its session (Back from the relying party) is gone too. An
// authorization request too large for a login's URLs is refused (413).
func TestLoginSealed(t *testing.T) {
	testenv.Each(t, func(t *testing.T, db testenv.Database) {
		e := newFuzzEnvOn(t, db)
		a := e.app
		e.h = web.New(web.Deps{Config: a.Config, Store: noFlows{a.Store, t}, Key: a.Key, Hasher: a.Hasher,
			Provider: a.Provider, Logger: a.Logger, Now: a.Now, Outbox: a.Outbox})
		q := url.Values{"client_id": {fuzzClient}, "response_type": {"code"}, "redirect_uri": {fuzzRedirect},
			"scope": {"openid"}, "state": {"state-state"}, "nonce": {"nonce-nonce-nonce"}, "login_hint": {"hinted@example.com"},
			"code_challenge": {"E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"}, "code_challenge_method": {"S256"}}
		rec := e.serve(httptest.NewRequest(http.MethodGet, origin+oidc.PathAuthorize+"?"+q.Encode(), nil))
		loc, _ := url.Parse(rec.Header().Get("Location"))
		login := loc.Query().Get("flow")
		if rec.Code != http.StatusSeeOther || loc.Path != "/login" || login == "" {
			t.Fatalf("authorize: %d %q, want the login page", rec.Code, rec.Header().Get("Location"))
		}
		if strings.Contains(login, "hinted") {
			t.Errorf("the login shows the request: %s", login)
		}
		page := func(flow string) *httptest.ResponseRecorder {
			return e.serve(httptest.NewRequest(http.MethodGet, origin+"/login?"+url.Values{"flow": {flow}}.Encode(), nil))
		}
		if rec := page(login); rec.Code != http.StatusOK || !strings.Contains(rec.Body.String(), `value="hinted@example.com"`) {
			t.Fatalf("login page: %d, want the form with the hinted address\n%s", rec.Code, rec.Body)
		}

		// One byte changed: gone (no restart either: it is no login of this
		// browser's).
		raw, err := base64.RawURLEncoding.DecodeString(login)
		if err != nil {
			t.Fatal(err)
		}
		raw[len(raw)/2] ^= 1
		if rec := page(base64.RawURLEncoding.EncodeToString(raw)); rec.Code != http.StatusBadRequest {
			t.Errorf("a changed login: %d %q, want the expired-flow page", rec.Code, rec.Header().Get("Location"))
		}
		// Another browser (another CSRF cookie): gone.
		mine := e.cookies
		e.cookies = nil
		if rec := page(login); rec.Code != http.StatusBadRequest {
			t.Errorf("the login in another browser: %d %q, want the expired-flow page", rec.Code, rec.Header().Get("Location"))
		}
		e.cookies = mine

		// The password step (no second step for this user) finishes it.
		rec = e.post("/login", url.Values{"csrf": {e.csrf}, "flow": {login}, "email": {fuzzEmail}, "password": {fuzzPassword}}.Encode())
		if !startsSession(rec) || !strings.HasPrefix(rec.Header().Get("Location"), fuzzRedirect+"?code=") {
			t.Fatalf("password step: %d %q, want a session and the code", rec.Code, rec.Header().Get("Location"))
		}
		if rec := page(login); rec.Code != http.StatusBadRequest {
			t.Errorf("the done login's page again: %d %q, want the expired-flow page", rec.Code, rec.Header().Get("Location"))
		}

		q.Set("state", strings.Repeat("s", 7000))
		rec = e.serve(httptest.NewRequest(http.MethodGet, origin+oidc.PathAuthorize+"?"+q.Encode()+"&prompt=login", nil))
		if rec.Code != http.StatusRequestEntityTooLarge {
			t.Errorf("a request too large for a login: %d %q, want 413", rec.Code, rec.Header().Get("Location"))
		}
	})
}
