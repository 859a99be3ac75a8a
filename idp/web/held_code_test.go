package web_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pquerna/otp/totp"

	"github.com/kamera-id/idp/idp/oidc"
	"github.com/kamera-id/idp/idp/store"
)

// codeWrites counts how a login's code reaches the store: alone
// (CreateToken) or with the login's session (StartSession); with stale,
// StartSession is asked with a security stamp the account no longer has
// (its credentials changed meanwhile), which the store refuses.
type codeWrites struct {
	store.Store
	alone, withSession atomic.Int32
	stale              atomic.Bool
}

func (s *codeWrites) CreateToken(ctx context.Context, t *store.TokenRecord) error {
	if t.Kind == store.KindAuthorizeCode {
		s.alone.Add(1)
	}
	return s.Store.CreateToken(ctx, t)
}

func (s *codeWrites) StartSession(ctx context.Context, end store.LoginEnd, x *store.Session) error {
	if end.Code != nil {
		s.withSession.Add(1)
	}
	if s.stale.Load() {
		end.Stamp = "stale"
	}
	return s.Store.StartSession(ctx, end, x)
}

// TestLoginCodeStoredWithSession: the last step of a login for a relying
// party's request stores the code it answers with in the same store call
// as the session, and the code exchanges; a last step whose session is
// refused (the account changed meanwhile) answers no code, and stores
// neither.
func TestLoginCodeStoredWithSession(t *testing.T) {
	e := newFuzzEnv(t)
	secret := e.enableMFAWithSecret(t)
	cw := &codeWrites{Store: e.app.Store}
	e.useStore(cw)
	e.app.Provider.Storage.Store = cw
	code, err := totp.GenerateCode(secret, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	rec := e.post("/login/totp", url.Values{"csrf": {e.csrf}, "flow": {e.promptLoginFlow(t)}, "code": {code}}.Encode())
	loc, err := url.Parse(rec.Header().Get("Location"))
	if rec.Code != http.StatusSeeOther || err != nil || loc.Query().Get("code") == "" || !startsSession(rec) {
		t.Fatalf("TOTP step: %d %q (session %v)", rec.Code, rec.Header().Get("Location"), startsSession(rec))
	}
	if alone, with := cw.alone.Load(), cw.withSession.Load(); alone != 0 || with != 1 {
		t.Fatalf("the code was stored %d times alone and %d times with the session, want 0 and 1", alone, with)
	}
	if tok := e.exchangeCode(fuzzClient, e.secret, loc.Query().Get("code")); tok.Code != http.StatusOK {
		t.Fatalf("exchange of the code: %d %s", tok.Code, tok.Body)
	}

	// Another login whose session the store refuses: the answer prepared
	// for the relying party goes nowhere.
	flow := e.promptLoginFlow(t)
	cw.stale.Store(true)
	code, err = totp.GenerateCode(secret, time.Now().Add(30*time.Second)) // the next time step: the last one is spent
	if err != nil {
		t.Fatal(err)
	}
	rec = e.post("/login/totp", url.Values{"csrf": {e.csrf}, "flow": {flow}, "code": {code}}.Encode())
	if where := rec.Header().Get("Location"); rec.Code != http.StatusSeeOther || startsSession(rec) ||
		!strings.HasPrefix(where, oidc.PathAuthorize+"?") || strings.Contains(where+rec.Body.String(), "code=") {
		t.Fatalf("a login whose session was refused: %d %q (session %v), want the request started again, without a code",
			rec.Code, where, startsSession(rec))
	}
	if alone, with := cw.alone.Load(), cw.withSession.Load(); alone != 0 || with != 2 {
		t.Fatalf("the code was stored %d times alone and %d times with the session, want 0 and 2", alone, with)
	}
}

// exchangeCode redeems code, issued for fuzzRedirect with RFC 7636's
// example challenge, at the token endpoint as the client with secret.
func (e *fuzzEnv) exchangeCode(client, secret, code string) *httptest.ResponseRecorder {
	const verifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk" // RFC 7636's example: E9Melhoa...
	req := httptest.NewRequest(http.MethodPost, origin+oidc.PathToken, strings.NewReader(url.Values{
		"grant_type": {"authorization_code"}, "code": {code}, "redirect_uri": {fuzzRedirect}, "code_verifier": {verifier}}.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth(client, secret)
	tok := httptest.NewRecorder()
	e.app.Handler().ServeHTTP(tok, req)
	return tok
}
