package web_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"

	"github.com/kamera-id/idp/idp/oidc"
	"github.com/kamera-id/idp/idp/password"
	"github.com/kamera-id/idp/idp/store"
	"github.com/kamera-id/idp/idp/web"
)

// beforeSession runs hook once, just before the first login session is
// stored, or before the first transaction begins (a backup code's login
// stores its session in the code's transaction, which on SQLite holds the
// one connection the hook's changes need).
type beforeSession struct {
	store.Store
	once sync.Once
	hook func()
}

func (s *beforeSession) BeginTx(ctx context.Context) (context.Context, error) {
	s.once.Do(s.hook)
	return s.Store.BeginTx(ctx)
}

func (s *beforeSession) StartSession(ctx context.Context, end store.LoginEnd, x *store.Session) error {
	s.once.Do(s.hook)
	return s.Store.StartSession(ctx, end, x)
}

// loginRacing runs a password login of the user in which hook runs just
// before the login stores its session, and returns the password step's
// answer and the user's sessions afterwards.
func loginRacing(t *testing.T, e *fuzzEnv, hook func()) (*httptest.ResponseRecorder, []store.Session) {
	t.Helper()
	a := e.app
	st := &beforeSession{Store: a.Store, hook: hook}
	e.h = web.New(web.Deps{Config: a.Config, Store: st, Key: a.Key, Hasher: a.Hasher, Provider: a.Provider, Logger: a.Logger, Now: a.Now, Outbox: a.Outbox})
	flow := e.newFlow(t, false)
	rec := e.post("/login", url.Values{"csrf": {e.csrf}, "flow": {flow}, "email": {fuzzEmail}, "password": {fuzzPassword}}.Encode())
	sessions, err := a.Store.ListUserSessions(context.Background(), e.user.ID, a.Now())
	if err != nil {
		t.Fatal(err)
	}
	return rec, sessions
}

// TestPasswordLoginRacingEnable: 2FA is turned on (and the user's sessions
// ended, as the setup page does) after a password login read the account
// and before it stored its session. No session may come of it: My Page and
// relying parties would take it for a login of an account without 2FA. The
// store refuses it (turning 2FA on gave the account a new security stamp),
// and the login ends as one whose flow is gone, and starts again.
func TestPasswordLoginRacingEnable(t *testing.T) {
	e := newFuzzEnv(t)
	rec, sessions := loginRacing(t, e, func() {
		e.enableMFA(t)
		if _, err := e.app.Store.DeleteUserSessions(context.Background(), e.user.ID, ""); err != nil {
			t.Error(err)
		}
	})
	e.wantRestart(t, "password step raced by turning 2FA on", rec)
	if len(sessions) != 0 {
		t.Errorf("a password-only session of an account with 2FA on survived: %+v", sessions)
	}
	rec = e.serve(httptest.NewRequest(http.MethodGet, origin+"/account", nil))
	if rec.Code != http.StatusSeeOther || !strings.HasPrefix(rec.Header().Get("Location"), "/login?") {
		t.Errorf("My Page after the raced login: %d %q, want a redirect to the login", rec.Code, rec.Header().Get("Location"))
	}
}

// TestSecondStepAfterPasswordChange: a login whose password step passed
// before the password was changed (or reset) cannot finish with the second
// step: whoever knew the old password is out.
func TestSecondStepAfterPasswordChange(t *testing.T) {
	e := newFuzzEnv(t)
	e.enableMFA(t)
	flow := e.newFlow(t, true)
	h, err := e.app.Hasher.Hash(context.Background(), "a brand new passphrase")
	if err != nil {
		t.Fatal(err)
	}
	if err := e.app.Store.UpdatePassword(context.Background(), e.user.ID, h, e.app.Now()); err != nil {
		t.Fatal(err)
	}
	rec := e.post("/login/backup", url.Values{"csrf": {e.csrf}, "flow": {flow}, "backup_code": {fuzzBackupCodes[0]}}.Encode())
	e.wantRestart(t, "backup code after the password changed", rec)
	// The code is still unused: a new login with the new password takes it.
	codes, err := e.app.Store.ListBackupCodes(context.Background(), e.user.ID)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range codes {
		if !c.UsedAt.IsZero() {
			t.Errorf("backup code %d spent by the refused login", c.Position)
		}
	}
}

// TestResetRequestBurst: a burst of reset requests for one address makes
// no more links than the address's limit (each request is counted before
// the next is checked).
func TestResetRequestBurst(t *testing.T) {
	e := newFuzzEnv(t)
	const n = 40
	body := url.Values{"csrf": {e.csrf}, "email": {fuzzEmail}}.Encode()
	var wg sync.WaitGroup
	for range n {
		wg.Go(func() {
			req := httptest.NewRequest(http.MethodPost, origin+"/forgot-password", strings.NewReader(body))
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			req.Header.Set("Origin", origin)
			for _, c := range e.cookies {
				req.AddCookie(c)
			}
			rec := httptest.NewRecorder()
			e.h.ServeHTTP(rec, req) // returns once the link, if any, is made
			if rec.Code != http.StatusOK {
				t.Errorf("reset request: %d", rec.Code)
			}
		})
	}
	wg.Wait()
	e.app.Web.Wait() // the links are made after the answers
	events, err := e.app.Store.ListAuditEvents(context.Background(), e.user.ID, 2*n)
	if err != nil {
		t.Fatal(err)
	}
	links := 0
	for _, ev := range events {
		if ev.Type == "password.reset_requested" {
			links++
		}
	}
	if want := e.app.Config.ResetMaxPerEmail; links != want {
		t.Errorf("%d parallel reset requests made %d links, want the limit %d", n, links, want)
	}
}

// TestSecondStepAfterHashUpgrade: a password step that upgrades the stored
// hash (the argon2id cost was raised) does not look like a password change
// to its own second step.
func TestSecondStepAfterHashUpgrade(t *testing.T) {
	e := newFuzzEnv(t)
	weak := password.New(password.Params{Memory: 1024, Time: 1, Threads: 1, SaltLen: 16, KeyLen: 32}, 1)
	h, err := weak.Hash(context.Background(), fuzzPassword)
	if err != nil {
		t.Fatal(err)
	}
	if err := e.app.Store.UpdatePassword(context.Background(), e.user.ID, h, e.app.Now()); err != nil {
		t.Fatal(err)
	}
	e.enableMFA(t)
	flow := e.newFlow(t, true)
	if u, err := e.app.Store.GetUser(context.Background(), e.user.ID); err != nil || u.PasswordHash == h {
		t.Fatalf("the password step did not upgrade the hash (%v)", err)
	}
	rec := e.post("/login/backup", url.Values{"csrf": {e.csrf}, "flow": {flow}, "backup_code": {fuzzBackupCodes[0]}}.Encode())
	if rec.Code != http.StatusSeeOther {
		t.Errorf("backup code after a hash upgrade: %d, want the login to finish\n%s", rec.Code, rec.Body)
	}
}

// TestPasswordLoginRacingChange: the password is changed (and the user's
// sessions ended, as My Page and a reset do) after a
// password login verified the old one and before it stored its session.
// That session must not survive.
func TestPasswordLoginRacingChange(t *testing.T) {
	e := newFuzzEnv(t)
	ctx := context.Background()
	h, err := e.app.Hasher.Hash(ctx, "a brand new passphrase")
	if err != nil {
		t.Fatal(err)
	}
	rec, sessions := loginRacing(t, e, func() {
		if err := e.app.Store.UpdatePassword(ctx, e.user.ID, h, e.app.Now()); err != nil {
			t.Error(err)
		}
		if _, err := e.app.Store.DeleteUserSessions(ctx, e.user.ID, ""); err != nil {
			t.Error(err)
		}
	})
	// The store refuses the session (StartSession's security stamp condition):
	// the login ends as one whose flow is gone, and starts again.
	e.wantRestart(t, "password step raced by a password change", rec)
	if len(sessions) != 0 {
		t.Errorf("a session of the old password survived the change: %+v", sessions)
	}
}

// TestSecondStepRacingChange: the password is changed (and the user's
// sessions ended, as My Page and a reset do) after a login's second step
// read the account, found the password its first step verified, and
// accepted the code, but before it stored its session. That session must
// not survive: the store refuses it (StartSession's security stamp condition),
// as it refuses the password-only path's.
func TestSecondStepRacingChange(t *testing.T) {
	e := newFuzzEnv(t)
	ctx := context.Background()
	e.enableMFA(t)
	flow := e.newFlow(t, true)
	h, err := e.app.Hasher.Hash(ctx, "a brand new passphrase")
	if err != nil {
		t.Fatal(err)
	}
	a := e.app
	st := &beforeSession{Store: a.Store, hook: func() {
		if err := a.Store.UpdatePassword(ctx, e.user.ID, h, a.Now()); err != nil {
			t.Error(err)
		}
		if _, err := a.Store.DeleteUserSessions(ctx, e.user.ID, ""); err != nil {
			t.Error(err)
		}
	}}
	e.h = web.New(web.Deps{Config: a.Config, Store: st, Key: a.Key, Hasher: a.Hasher, Provider: a.Provider, Logger: a.Logger, Now: a.Now, Outbox: a.Outbox})
	rec := e.post("/login/backup", url.Values{"csrf": {e.csrf}, "flow": {flow}, "backup_code": {fuzzBackupCodes[0]}}.Encode())
	e.wantRestart(t, "second step raced by a password change", rec)
	sessions, err := a.Store.ListUserSessions(ctx, e.user.ID, a.Now())
	if err != nil {
		t.Fatal(err)
	}
	if len(sessions) != 0 {
		t.Errorf("a session of the old password survived the change: %+v", sessions)
	}
}

// beforeCode runs hook once, just before the first authorization code is
// stored.
type beforeCode struct {
	store.Store
	once sync.Once
	hook func()
}

func (s *beforeCode) CreateToken(ctx context.Context, t *store.TokenRecord) error {
	if t.Kind == store.KindAuthorizeCode {
		s.once.Do(s.hook)
	}
	return s.Store.CreateToken(ctx, t)
}

// loginAndHookCode logs the environment's browser in (a password, no
// second step), then has hook run on the plain store just before the next
// code is stored; ran reports whether it has.
func (e *fuzzEnv) loginAndHookCode(t *testing.T, hook func(st store.Store)) (ran *bool) {
	t.Helper()
	flow := e.newFlow(t, false)
	if rec := e.post("/login", url.Values{"csrf": {e.csrf}, "flow": {flow}, "email": {fuzzEmail}, "password": {fuzzPassword}}.Encode()); rec.Code != http.StatusSeeOther {
		t.Fatalf("login: %d\n%s", rec.Code, rec.Body)
	}
	storage := e.app.Provider.Storage
	plain := storage.Store
	ran = new(bool)
	storage.Store = &beforeCode{Store: plain, hook: func() { *ran = true; hook(plain) }}
	t.Cleanup(func() { storage.Store = plain })
	return ran
}

// TestAuthorizeRacingEndSessions: the user's sessions end (a password
// reset on another device) after the authorization endpoint read the
// browser's session and before it stored the code. No code is issued in
// the ended session: the request asks for a login again, as if there had
// been no session (login_required for prompt=none), never a server error.
func TestAuthorizeRacingEndSessions(t *testing.T) {
	for _, none := range []bool{false, true} {
		t.Run(map[bool]string{false: "login", true: "prompt=none"}[none], func(t *testing.T) {
			e := newFuzzEnv(t)
			ended := e.loginAndHookCode(t, func(st store.Store) {
				if _, err := st.DeleteUserSessions(context.Background(), e.user.ID, ""); err != nil {
					t.Error(err)
				}
			})
			q := url.Values{"client_id": {fuzzClient}, "response_type": {"code"}, "redirect_uri": {fuzzRedirect},
				"scope": {"openid"}, "state": {"state-state"}, "nonce": {"nonce-nonce-nonce"},
				"code_challenge": {"E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"}, "code_challenge_method": {"S256"}}
			if none {
				q.Set("prompt", "none")
			}
			rec := e.serve(httptest.NewRequest(http.MethodGet, origin+oidc.PathAuthorize+"?"+q.Encode(), nil))
			loc, err := url.Parse(rec.Header().Get("Location"))
			if rec.Code != http.StatusSeeOther && rec.Code != http.StatusFound || err != nil {
				t.Fatalf("authorize: %d %q\n%s", rec.Code, rec.Header().Get("Location"), rec.Body)
			}
			if !*ended {
				t.Fatalf("authorize: %s before a code was to be stored", loc)
			}
			if loc.Query().Has("code") {
				t.Fatalf("a code was issued in the ended session: %s", loc)
			}
			if none {
				if !strings.HasPrefix(loc.String(), fuzzRedirect+"?") || loc.Query().Get("error") != "login_required" {
					t.Fatalf("prompt=none: %s, want login_required", loc)
				}
				return
			}
			if loc.Path != "/login" || loc.Query().Get("flow") == "" {
				t.Fatalf("authorize: redirected to %s, want the login page", loc)
			}
		})
	}
}

// TestRacedLoginGivesNoDeviceCookie: a password login that is refused at its
// end (2FA turned on since it read the account: once its session is stored;
// the password changed: when the store refuses the session) did not
// complete, so it gives the browser no device cookie: with one, whoever knew the old password, or the password alone,
// would have the account's failure limits of a trusted browser.
func TestRacedLoginGivesNoDeviceCookie(t *testing.T) {
	for _, tc := range []struct {
		name string
		race func(t *testing.T, e *fuzzEnv)
	}{
		{"2FA turned on", func(t *testing.T, e *fuzzEnv) {
			e.enableMFA(t)
			if _, err := e.app.Store.DeleteUserSessions(context.Background(), e.user.ID, ""); err != nil {
				t.Error(err)
			}
		}},
		{"password changed", func(t *testing.T, e *fuzzEnv) {
			ctx := context.Background()
			h, err := e.app.Hasher.Hash(ctx, "a brand new passphrase")
			if err == nil {
				err = e.app.Store.UpdatePassword(ctx, e.user.ID, h, e.app.Now())
			}
			if err == nil {
				_, err = e.app.Store.DeleteUserSessions(ctx, e.user.ID, "")
			}
			if err != nil {
				t.Error(err)
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newFuzzEnv(t)
			if _, sessions := loginRacing(t, e, func() { tc.race(t, e) }); len(sessions) != 0 {
				t.Fatalf("the raced login kept a session: %+v", sessions)
			}
			for _, c := range e.cookies {
				if c.Name == "idp_device" && c.MaxAge >= 0 {
					t.Errorf("a refused login gave the browser a device cookie: %s", c)
				}
			}
		})
	}
}

// wantRestart fails unless rec sends the browser back to the start of its
// login (the login page, for a login to My Page), whose page says why: a
// login that cannot go on because the account's credentials changed starts
// again (loginGone) and says so.
func (e *fuzzEnv) wantRestart(t *testing.T, what string, rec *httptest.ResponseRecorder) {
	t.Helper()
	loc := rec.Header().Get("Location")
	if rec.Code != http.StatusSeeOther || !strings.HasPrefix(loc, "/login?return_to=") {
		t.Errorf("%s: %d %q, want the login started again", what, rec.Code, loc)
		return
	}
	start := e.serve(httptest.NewRequest(http.MethodGet, origin+loc, nil))
	page := e.serve(httptest.NewRequest(http.MethodGet, origin+start.Header().Get("Location"), nil))
	const notice = "ログイン中にアカウントのパスワードまたは2段階認証の設定が変更されたため"
	if page.Code != http.StatusOK || !strings.Contains(page.Body.String(), notice) {
		t.Errorf("%s: the new login page (%d, from %q) does not say %q", what, page.Code, start.Header().Get("Location"), notice)
	}
	// Nothing typed into it is wrong: no field is marked invalid.
	if strings.Contains(page.Body.String(), `aria-invalid`) {
		t.Errorf("%s: the new login page marks a field invalid", what)
	}
}
