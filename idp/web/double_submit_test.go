package web_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pquerna/otp/totp"

	"github.com/kamera-id/idp/idp/mfa"
	"github.com/kamera-id/idp/idp/oidc"
	"github.com/kamera-id/idp/idp/store"
	"github.com/kamera-id/idp/idp/testenv"
	"github.com/kamera-id/idp/idp/web"
)

// doubleSubmit is a real store on which a second step's form posted twice
// at once plays out as a double-click's two requests can. Both requests
// have the login whatever the other does (a sealed login is opened
// without the store), so whether they overlap or run one after the other,
// the one that checks its code second finds the login done moments
// before (loginEnded's twinWindow); TestLoginSpentPerAccount has the
// requests that are no twin. With holdSteps (two instances, whose attempt
// locks are their own), a later read of the account's second step
// (GetSecondStep) waits until the first login's session is stored, so a
// request that gets that far checks the code only after the other one
// finished the login. With readsFirst (two instances too), it is the
// other way round: no session is stored before both requests have read
// the second step, so both check the code before either has finished the
// login, and the one that stores its session second finds the code spent
// by the other (a code is spent with the session: a TOTP code's step by
// StartSession, a backup code in the session's transaction). On one
// instance nothing but the account's attempt lock orders the two.
type doubleSubmit struct {
	store.Store
	mu         sync.Mutex
	steps      int // second-step reads begun
	reads      int // second-step reads done
	holdSteps  bool
	readsFirst bool
	once       sync.Once
	started    chan struct{} // closed once a session is stored
	read       chan struct{} // closed once the second step is read twice
}

func newDoubleSubmit(st store.Store) *doubleSubmit {
	return &doubleSubmit{Store: st, started: make(chan struct{}), read: make(chan struct{})}
}

var errBarrier = errors.New("test: the other request never got there")

// wait is a guard against a hang, not a wait for the server.
func wait(ch chan struct{}) error {
	select {
	case <-ch:
		return nil
	case <-time.After(10 * time.Second):
		return errBarrier
	}
}

func (s *doubleSubmit) GetSecondStep(ctx context.Context, userID, key string, loginKey []byte) (*store.SecondStep, error) {
	s.mu.Lock()
	s.steps++
	later := s.holdSteps && s.steps > 1
	s.mu.Unlock()
	if later {
		if err := wait(s.started); err != nil {
			return nil, err
		}
	}
	st, err := s.Store.GetSecondStep(ctx, userID, key, loginKey)
	s.mu.Lock()
	s.reads++
	if s.reads == 2 {
		close(s.read)
	}
	s.mu.Unlock()
	return st, err
}

// BeginTx holds a backup code's transaction, as StartSession holds a TOTP
// code's login, until both requests have read the second step (with
// readsFirst): held inside the transaction, the wait would hold SQLite's
// one connection from the other request's read.
func (s *doubleSubmit) BeginTx(ctx context.Context) (context.Context, error) {
	if s.readsFirst {
		if err := wait(s.read); err != nil {
			return nil, err
		}
	}
	return s.Store.BeginTx(ctx)
}

func (s *doubleSubmit) StartSession(ctx context.Context, end store.LoginEnd, x *store.Session) error {
	if s.readsFirst {
		if err := wait(s.read); err != nil {
			return err
		}
	}
	err := s.Store.StartSession(ctx, end, x)
	s.once.Do(func() { close(s.started) })
	return err
}

// enableMFAWithSecret is enableMFA with a TOTP secret the test knows, and
// the given backup codes (none: the fixed ones).
func (e *fuzzEnv) enableMFAWithSecret(t testing.TB, codes ...string) string {
	t.Helper()
	ctx, now := context.Background(), time.Now()
	secret, err := mfa.NewSecret()
	if err != nil {
		t.Fatal(err)
	}
	id := e.user.ID
	secretEnc := mfa.SealSecret(e.app.Key, id, secret)
	if err := e.app.Store.PutPendingTOTP(ctx, &store.PendingTOTP{UserID: id, SecretEnc: secretEnc,
		CreatedAt: now, ExpiresAt: now.Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	if len(codes) == 0 {
		codes = fuzzBackupCodes
	}
	if err := e.app.Store.ConfirmTOTP(ctx, id, secretEnc, 0, mfa.SealBackupCodes(e.app.Key, id, codes), now); err != nil {
		t.Fatal(err)
	}
	return secret
}

// postTo posts body to path from the browser once on each handler, all at
// once (its cookies are not updated), and returns their answers.
func (e *fuzzEnv) postTo(handlers []http.Handler, path, body string) []*httptest.ResponseRecorder {
	recs := make([]*httptest.ResponseRecorder, len(handlers))
	var wg sync.WaitGroup
	for i, h := range handlers {
		req := httptest.NewRequest(http.MethodPost, origin+path, strings.NewReader(body))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.Header.Set("Origin", origin)
		for _, c := range e.cookies {
			req.AddCookie(c)
		}
		recs[i] = httptest.NewRecorder()
		wg.Go(func() { h.ServeHTTP(recs[i], req) })
	}
	wg.Wait()
	return recs
}

func startsSession(rec *httptest.ResponseRecorder) bool {
	for _, c := range rec.Result().Cookies() {
		if c.Name == "idp_session" && c.Value != "" {
			return true
		}
	}
	return false
}

// TestSecondStepDoubleSubmit: a second step's form sent twice at once (a
// double-click on 認証する) with the right code, both requests having
// the login before either checks the code, on one instance and on
// two (whose attempt locks are their own; there both requests may check
// the code before either has finished the login). One request
// completes the login
// (a session, and on to the page the login was for); the other finds the
// login done: it is not a wrong code (no alert, no failure counted against
// the account's second-step limit, no mfa.code_failed event), and it goes
// where the login was going, without a session of its own. A backup code
// is spent once.
func TestSecondStepDoubleSubmit(t *testing.T) {
	for _, tc := range []struct {
		name, path, field string
		code              func(secret string) string
	}{
		{"totp", "/login/totp", "code", func(secret string) string {
			c, err := totp.GenerateCode(secret, time.Now())
			if err != nil {
				t.Fatal(err)
			}
			return c
		}},
		{"backup code", "/login/backup", "backup_code", func(string) string { return fuzzBackupCodes[0] }},
	} {
		for _, mode := range []string{"one instance", "two instances", "two instances, both read first"} {
			instances := 1
			if strings.HasPrefix(mode, "two") {
				instances = 2
			}
			t.Run(tc.name+"/"+mode, func(t *testing.T) {
				testenv.Each(t, func(t *testing.T, db testenv.Database) {
					e := newFuzzEnvOn(t, db)
					secret := e.enableMFAWithSecret(t)
					flow := e.newFlow(t, true)
					a := e.app
					race := newDoubleSubmit(a.Store)
					race.holdSteps = mode == "two instances"
					race.readsFirst = mode == "two instances, both read first"
					var handlers []http.Handler
					for range instances {
						handlers = append(handlers, web.New(web.Deps{Config: a.Config, Store: race, Key: a.Key, Hasher: a.Hasher,
							Provider: a.Provider, Logger: a.Logger, Now: a.Now, Outbox: a.Outbox}))
					}
					if instances == 1 {
						handlers = append(handlers, handlers[0])
					}
					body := url.Values{"csrf": {e.csrf}, "flow": {flow}, tc.field: {tc.code(secret)}}.Encode()
					recs := e.postTo(handlers, tc.path, body)
					wantLoginAndTwin(t, recs)
					for _, rec := range recs {
						if strings.Contains(rec.Body.String(), `role="alert"`) {
							t.Errorf("a submit answered %d with an alert", rec.Code)
						}
					}
					if n := e.events(t, "mfa.code_failed"); n != 0 {
						t.Errorf("%d mfa.code_failed events, want none", n)
					}
					ts, err := a.Store.GetThrottles(context.Background(), "mfa:"+e.user.ID)
					if err != nil {
						t.Fatal(err)
					}
					if len(ts) == 1 && (ts[0].Failures != 0 || !ts[0].LockedUntil.IsZero()) {
						t.Errorf("second-step throttle after the double submit: %+v, want no failure", ts[0])
					}
					if tc.field == "backup_code" {
						if n := e.events(t, "mfa.backup_code_used"); n != 1 {
							t.Errorf("%d mfa.backup_code_used events, want 1", n)
						}
					}
				})
			})
		}
	}
}

// TestSecondStepDoubleSubmitPromptLogin: for a relying party's request
// with prompt=login, the request that finds the login done by its twin
// does not send the browser to a new login: followed with the twin's
// session, it goes on to the code, as right after the login; followed
// without it, or only minutes later (past twinWindow), the request is
// decided like any (prompt=login: the login).
func TestSecondStepDoubleSubmitPromptLogin(t *testing.T) {
	for _, late := range []bool{false, true} {
		t.Run(map[bool]string{false: "at once", true: "late"}[late], func(t *testing.T) {
			testSecondStepDoubleSubmitPromptLogin(t, late)
		})
	}
}

func testSecondStepDoubleSubmitPromptLogin(t *testing.T, late bool) {
	testenv.Each(t, func(t *testing.T, db testenv.Database) {
		e := newFuzzEnvOn(t, db)
		secret := e.enableMFAWithSecret(t)
		flow := e.promptLoginFlow(t)
		a := e.app
		race := newDoubleSubmit(a.Store)
		var offset atomic.Int64
		h := web.New(web.Deps{Config: a.Config, Store: race, Key: a.Key, Hasher: a.Hasher, Provider: a.Provider,
			Logger: a.Logger, Now: func() time.Time { return a.Now().Add(time.Duration(offset.Load())) }, Outbox: a.Outbox})
		code, err := totp.GenerateCode(secret, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		recs := e.postTo([]http.Handler{h, h}, "/login/totp", url.Values{"csrf": {e.csrf}, "flow": {flow}, "code": {code}}.Encode())
		var winner, twin *httptest.ResponseRecorder
		for _, rec := range recs {
			if startsSession(rec) {
				winner = rec
			} else {
				twin = rec
			}
		}
		if winner == nil || twin == nil {
			t.Fatalf("two submits at once: %d %q and %d %q, want one login and one twin",
				recs[0].Code, recs[0].Header().Get("Location"), recs[1].Code, recs[1].Header().Get("Location"))
		}
		if loc := winner.Header().Get("Location"); !strings.HasPrefix(loc, fuzzRedirect+"?code=") {
			t.Fatalf("the login: %q, want the code", loc)
		}
		next := twin.Header().Get("Location")
		if twin.Code != http.StatusSeeOther || !strings.HasPrefix(next, "/login/continue?") {
			t.Fatalf("the twin: %d %q, want the continue page", twin.Code, next)
		}
		follow := func(withSession bool) *httptest.ResponseRecorder {
			req := httptest.NewRequest(http.MethodGet, origin+next, nil)
			for _, c := range e.cookies {
				if c.Name != "idp_session" {
					req.AddCookie(c)
				}
			}
			for _, c := range twin.Result().Cookies() {
				if c.MaxAge >= 0 && c.Name != "idp_session" {
					req.AddCookie(c)
				}
			}
			if withSession {
				for _, c := range winner.Result().Cookies() {
					if c.Name == "idp_session" {
						req.AddCookie(c)
					}
				}
			}
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			return rec
		}
		if rec := follow(false); rec.Code < 300 || rec.Code > 303 || strings.Contains(rec.Header().Get("Location"), "code=") {
			t.Errorf("the twin followed without the session: %d %q, want the login again", rec.Code, rec.Header().Get("Location"))
		}
		if late {
			offset.Store(int64(2 * time.Minute))
			if rec := follow(true); rec.Code < 300 || rec.Code > 303 || strings.Contains(rec.Header().Get("Location"), "code=") {
				t.Errorf("the twin followed minutes later: %d %q, want the login again", rec.Code, rec.Header().Get("Location"))
			}
			return
		}
		if rec := follow(true); !strings.HasPrefix(rec.Header().Get("Location"), fuzzRedirect+"?code=") {
			t.Errorf("the twin followed with the login's session: %d %q, want the code", rec.Code, rec.Header().Get("Location"))
		}
	})
}

// promptLoginFlow starts the relying party's authorization request with
// prompt=login and passes its login's password step: the flow, at its
// second step.
func (e *fuzzEnv) promptLoginFlow(t *testing.T) string {
	t.Helper()
	q := url.Values{"client_id": {fuzzClient}, "response_type": {"code"}, "redirect_uri": {fuzzRedirect},
		"scope": {"openid"}, "state": {"state-state"}, "nonce": {"nonce-nonce-nonce"}, "prompt": {"login"},
		"code_challenge": {"E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"}, "code_challenge_method": {"S256"}}
	rec := e.serve(httptest.NewRequest(http.MethodGet, origin+oidc.PathAuthorize+"?"+q.Encode(), nil))
	loc, _ := url.Parse(rec.Header().Get("Location"))
	if rec.Code != http.StatusSeeOther || loc.Path != "/login" {
		t.Fatalf("authorize: %d %q, want the login page", rec.Code, rec.Header().Get("Location"))
	}
	rec = e.post("/login", url.Values{"csrf": {e.csrf}, "flow": {loc.Query().Get("flow")}, "email": {fuzzEmail}, "password": {fuzzPassword}}.Encode())
	second := codeForm(rec)
	if second == "" {
		t.Fatalf("password step: %d %q\n%s", rec.Code, rec.Header().Get("Location"), rec.Body)
	}
	return second
}

// TestPasswordDoubleSubmit: the login form of an account without 2FA sent
// twice at once (a double-click on ログイン): one request completes the
// login, the other finds it done by its twin and goes where the login was
// going, without a session of its own and without a restart.
func TestPasswordDoubleSubmit(t *testing.T) {
	testenv.Each(t, func(t *testing.T, db testenv.Database) {
		e := newFuzzEnvOn(t, db)
		flow := e.newFlow(t, false)
		body := url.Values{"csrf": {e.csrf}, "flow": {flow}, "email": {fuzzEmail}, "password": {fuzzPassword}}.Encode()
		wantLoginAndTwin(t, e.postTo([]http.Handler{e.h, e.h}, "/login", body))
	})
}

// wantLoginAndTwin checks the answers to a login's form sent twice at
// once, for a login to My Page: one completes the login (a session, on
// to /account), the other goes there too without a session of its own.
func wantLoginAndTwin(t *testing.T, recs []*httptest.ResponseRecorder) {
	t.Helper()
	done, other := 0, 0
	for _, rec := range recs {
		switch loc := rec.Header().Get("Location"); {
		case rec.Code == http.StatusSeeOther && loc == "/account" && startsSession(rec):
			done++
		case rec.Code == http.StatusSeeOther && loc == "/account" && !startsSession(rec):
			other++
		default:
			t.Errorf("a submit answered %d %q (session %v), want the login's target\n%s", rec.Code, loc, startsSession(rec), rec.Body)
		}
	}
	if done != 1 || other != 1 {
		t.Errorf("two submits at once: %d completed the login, %d went on without a session; want 1 and 1", done, other)
	}
}

// failingLoginSession is a store on which no login's session can be read.
type failingLoginSession struct{ store.Store }

func (failingLoginSession) LoginSession(context.Context, []byte) (string, error) {
	return "", store.ErrUnavailable
}

// TestLoginSpentUnreadable: a login whose session another request started
// (the login form sent twice), when the store cannot tell which session
// that was, is a store failure (503: the form can be sent again), not a
// login to start over.
func TestLoginSpentUnreadable(t *testing.T) {
	e := newFuzzEnv(t)
	flow := e.newFlow(t, false)
	body := url.Values{"csrf": {e.csrf}, "flow": {flow}, "email": {fuzzEmail}, "password": {fuzzPassword}}.Encode()
	if rec := e.post("/login", body); rec.Code != http.StatusSeeOther || !startsSession(rec) {
		t.Fatalf("the login: %d %q", rec.Code, rec.Header().Get("Location"))
	}
	e.useStore(failingLoginSession{e.app.Store})
	rec := e.postAll("/login", body, 1)[0]
	if rec.Code != http.StatusServiceUnavailable {
		t.Fatalf("the same form again, the login's session unreadable: %d %q, want 503", rec.Code, rec.Header().Get("Location"))
	}
}
