package web_test

import (
	"context"
	"encoding/base64"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pquerna/otp/totp"

	"github.com/kamera-id/idp/idp/app"
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
// opened. An authorization request too large for a login's URLs is
// refused (413), as is a return_to too long for them.
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

		q.Set("state", strings.Repeat("s", 7000))
		rec = e.serve(httptest.NewRequest(http.MethodGet, origin+oidc.PathAuthorize+"?"+q.Encode()+"&prompt=login", nil))
		if rec.Code != http.StatusRequestEntityTooLarge {
			t.Errorf("a request too large for a login: %d %q, want 413", rec.Code, rec.Header().Get("Location"))
		}
		e.signOut()
		rec = e.serve(httptest.NewRequest(http.MethodGet, origin+"/login?return_to=/"+strings.Repeat("r", 7000), nil))
		if loc, _ := url.Parse(rec.Header().Get("Location")); rec.Code != http.StatusSeeOther || len(loc.String()) > 4096 {
			t.Errorf("a login to a too long return_to: %d, want a login to My Page", rec.Code)
		}
	})
}

// TestLoginSpentPerAccount: a login's first form can be sent with one
// account's password, then another's. One account's session from it does
// not make the other's login look done: a wrong code there is a wrong code
// (counted, and the form again), not a double-submit's twin. A second
// step's form of a login done a while ago, sent again without its session
// (after a logout), is a login gone, not a twin, and spends no code; its
// page opened again with the session (Back from the relying party) is
// gone too.
func TestLoginSpentPerAccount(t *testing.T) {
	testenv.Each(t, func(t *testing.T, db testenv.Database) {
		e := newFuzzEnvOn(t, db)
		a := e.app
		var offset atomic.Int64
		e.h = web.New(web.Deps{Config: a.Config, Store: a.Store, Key: a.Key, Hasher: a.Hasher, Provider: a.Provider,
			Logger: a.Logger, Now: func() time.Time { return a.Now().Add(time.Duration(offset.Load())) }, Outbox: a.Outbox})
		secret := e.enableMFAWithSecret(t)
		const otherEmail, otherPassword = "other@example.com", "other password 123"
		if _, err := a.CreateUser(t.Context(), app.NewUser{Email: otherEmail, Name: "Other", Password: otherPassword}); err != nil {
			t.Fatal(err)
		}
		first := e.newFlow(t, false)
		password := func(email, pw string) *httptest.ResponseRecorder {
			return e.post("/login", url.Values{"csrf": {e.csrf}, "flow": {first}, "email": {email}, "password": {pw}}.Encode())
		}
		if rec := password(otherEmail, otherPassword); !startsSession(rec) {
			t.Fatalf("the other account's login: %d %q, want a session", rec.Code, rec.Header().Get("Location"))
		}
		rec := password(fuzzEmail, fuzzPassword)
		second := codeForm(rec)
		if second == "" {
			t.Fatalf("the same login with this account: %d %q, want its second step", rec.Code, rec.Header().Get("Location"))
		}
		// The code form answering the password links its language switch
		// to its own page, of the login as the password step left it.
		for _, want := range []string{`href="/login/totp?flow=` + second + `&amp;lang=en"`, `<meta name="idp-step" content="/login/totp">`} {
			if !strings.Contains(rec.Body.String(), want) {
				t.Errorf("the code form answering the password lacks %s", want)
			}
		}
		postCode := func(code string) *httptest.ResponseRecorder {
			return e.post("/login/totp", url.Values{"csrf": {e.csrf}, "flow": {second}, "code": {code}}.Encode())
		}
		if rec := postCode("000000"); rec.Code != http.StatusOK || !strings.Contains(rec.Body.String(), `role="alert"`) {
			t.Errorf("a wrong code after another account's session: %d %q, want the form with its message", rec.Code, rec.Header().Get("Location"))
		}
		if n := e.events(t, "mfa.code_failed"); n != 1 {
			t.Errorf("%d mfa.code_failed events, want 1", n)
		}

		code, err := totp.GenerateCode(secret, a.Now())
		if err != nil {
			t.Fatal(err)
		}
		if rec := postCode(code); !startsSession(rec) {
			t.Fatalf("the right code: %d %q, want a session", rec.Code, rec.Header().Get("Location"))
		}
		totpPage := origin + "/login/totp?" + url.Values{"flow": {second}}.Encode()
		if rec := e.serve(httptest.NewRequest(http.MethodGet, totpPage, nil)); rec.Code != http.StatusBadRequest {
			t.Errorf("the done login's code page again: %d %q, want the expired-flow page", rec.Code, rec.Header().Get("Location"))
		}
		if rec := postCode("000000"); rec.Code != http.StatusBadRequest {
			t.Errorf("the done login's form again at once, with its session: %d %q, want the expired-flow page",
				rec.Code, rec.Header().Get("Location"))
		}
		// Back to the password's answer, sent again: the login is done.
		if rec := password(fuzzEmail, fuzzPassword); rec.Code != http.StatusBadRequest || codeForm(rec) != "" {
			t.Errorf("the done login's password form again, with its session: %d %q, want the expired-flow page",
				rec.Code, rec.Header().Get("Location"))
		}
		e.signOut()
		offset.Store(int64(2 * time.Minute))
		if rec := postCode("000000"); rec.Code != http.StatusBadRequest {
			t.Errorf("the done login's form, sent again later without its session: %d %q, want the expired-flow page",
				rec.Code, rec.Header().Get("Location"))
		}
		// Sent with a code the authenticator shows now, it spends nothing:
		// the code still logs in.
		before := lastStep(t, e)
		code, err = totp.GenerateCode(secret, a.Now().Add(2*time.Minute))
		if err != nil {
			t.Fatal(err)
		}
		if rec := postCode(code); rec.Code != http.StatusBadRequest {
			t.Errorf("the done login's form with a good code: %d %q, want the expired-flow page", rec.Code, rec.Header().Get("Location"))
		}
		if after := lastStep(t, e); after != before {
			t.Errorf("the done login's form spent a code: last step %d, was %d", after, before)
		}
	})
}

// lastStep is the time step of the user's last accepted TOTP code.
func lastStep(t *testing.T, e *fuzzEnv) int64 {
	t.Helper()
	st, err := e.app.Store.GetSecondStep(t.Context(), e.user.ID, "mfa:"+e.user.ID, nil)
	if err != nil || st.TOTP == nil {
		t.Fatalf("the user's authenticator: %v", err)
	}
	return st.TOTP.LastStep
}

// TestSecondStepLifetime: the second step has IDP_FLOW_LIFETIME from the
// password step (as with a stored flow, which the step saved again), not
// what was left of the login page's.
func TestSecondStepLifetime(t *testing.T) {
	e := newFuzzEnv(t)
	a := e.app
	var offset atomic.Int64
	now := func() time.Time { return a.Now().Add(time.Duration(offset.Load())) }
	e.h = web.New(web.Deps{Config: a.Config, Store: a.Store, Key: a.Key, Hasher: a.Hasher, Provider: a.Provider,
		Logger: a.Logger, Now: now, Outbox: a.Outbox})
	secret := e.enableMFAWithSecret(t)
	lifetime := a.Config.FlowLifetime
	login := func() string {
		first := e.newFlow(t, false)
		offset.Add(int64(lifetime * 2 / 3))
		rec := e.post("/login", url.Values{"csrf": {e.csrf}, "flow": {first}, "email": {fuzzEmail}, "password": {fuzzPassword}}.Encode())
		second := codeForm(rec)
		if second == "" {
			t.Fatalf("password step: %d %q", rec.Code, rec.Header().Get("Location"))
		}
		offset.Add(int64(lifetime * 2 / 3))
		return second
	}
	postCode := func(flow string) *httptest.ResponseRecorder {
		code, err := totp.GenerateCode(secret, now())
		if err != nil {
			t.Fatal(err)
		}
		return e.post("/login/totp", url.Values{"csrf": {e.csrf}, "flow": {flow}, "code": {code}}.Encode())
	}
	if rec := postCode(login()); !startsSession(rec) {
		t.Errorf("the code within the lifetime from the password step: %d %q, want a session", rec.Code, rec.Header().Get("Location"))
	}
	e.signOut()
	flow := login()
	offset.Add(int64(lifetime / 2))
	if rec := postCode(flow); startsSession(rec) || !strings.HasPrefix(rec.Header().Get("Location"), "/login?return_to=") {
		t.Errorf("the code past the lifetime from the password step: %d %q, want the login started again", rec.Code, rec.Header().Get("Location"))
	}
}
