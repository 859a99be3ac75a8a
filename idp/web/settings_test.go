package web_test

// My Page's two-step verification settings sent twice: a reload (the
// browser posting the form again), a Back-and-resubmit, a double-click, a
// second tab.

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kamera-id/idp/idp/mfa"
	"github.com/kamera-id/idp/idp/store"
	"github.com/kamera-id/idp/idp/testenv"
	"github.com/kamera-id/idp/idp/web"
)

var (
	flowInput  = regexp.MustCompile(`name="flow" value="([^"]+)"`)
	backupCode = regexp.MustCompile(`class="backup-code[^"]*">([^<]+)<`)
)

// settingsBack is the expired-flow page's link back to the settings.
const settingsBack = `<a href="/account/2fa">`

// useStore serves the browser's requests from now on with st in place of
// the provider's store (st wraps it).
func (e *fuzzEnv) useStore(st store.Store) {
	a := e.app
	e.h = web.New(web.Deps{Config: a.Config, Store: st, Key: a.Key, Hasher: a.Hasher, Provider: a.Provider, Logger: a.Logger, Now: a.Now, Outbox: a.Outbox})
}

// signIn signs the browser in to My Page: with the password alone, or,
// with 2FA turned on first (enableMFA), the password and a backup code.
func (e *fuzzEnv) signIn(t *testing.T, withMFA bool) {
	t.Helper()
	if !withMFA {
		flow := e.newFlow(t, false)
		if rec := e.post("/login", url.Values{"csrf": {e.csrf}, "flow": {flow}, "email": {fuzzEmail}, "password": {fuzzPassword}}.Encode()); rec.Code != http.StatusSeeOther {
			t.Fatalf("login: %d\n%s", rec.Code, rec.Body)
		}
		return
	}
	e.enableMFA(t)
	flow := e.newFlow(t, true)
	if rec := e.post("/login/backup", url.Values{"csrf": {e.csrf}, "flow": {flow}, "backup_code": {fuzzBackupCodes[0]}}.Encode()); rec.Code != http.StatusSeeOther {
		t.Fatalf("login with a backup code: %d\n%s", rec.Code, rec.Body)
	}
}

// formOf returns the CSRF token and flow id of the page's form.
func formOf(t *testing.T, what string, rec *httptest.ResponseRecorder) url.Values {
	t.Helper()
	c, f := csrfField.FindStringSubmatch(rec.Body.String()), flowInput.FindStringSubmatch(rec.Body.String())
	if rec.Code != http.StatusOK || c == nil || f == nil {
		t.Fatalf("%s: %d, want a form\n%s", what, rec.Code, rec.Body)
	}
	return url.Values{"csrf": {c[1]}, "flow": {f[1]}}
}

// getForm opens a settings page and returns its form's hidden fields.
func (e *fuzzEnv) getForm(t *testing.T, path string) url.Values {
	t.Helper()
	return formOf(t, "GET "+path, e.serve(httptest.NewRequest(http.MethodGet, origin+path, nil)))
}

// with returns the form's fields with k set to v.
func with(form url.Values, k, v string) url.Values {
	out := url.Values{}
	for key, vs := range form {
		out[key] = slices.Clone(vs)
	}
	out.Set(k, v)
	return out
}

// codesOn returns the backup codes a page shows.
func codesOn(rec *httptest.ResponseRecorder) []string {
	var codes []string
	for _, m := range backupCode.FindAllStringSubmatch(rec.Body.String(), -1) {
		codes = append(codes, strings.TrimSpace(m[1]))
	}
	return codes
}

// storedCodes returns the user's backup codes as a page shows them.
func (e *fuzzEnv) storedCodes(t *testing.T) []string {
	t.Helper()
	recs, err := e.app.Store.ListBackupCodes(context.Background(), e.user.ID)
	if err != nil {
		t.Fatal(err)
	}
	plain, err := mfa.OpenBackupCodes(e.app.Key, e.user.ID, recs)
	if err != nil {
		t.Fatal(err)
	}
	for i, c := range plain {
		plain[i] = mfa.FormatBackupCode(c)
	}
	return plain
}

// events counts the user's audit events of type typ.
func (e *fuzzEnv) events(t *testing.T, typ string) int {
	t.Helper()
	return testenv.AuditEvents(t, e.app.Store, e.user.ID, typ)
}

// mails counts the mails in the outbox.
func (e *fuzzEnv) mails(t *testing.T) int {
	t.Helper()
	n := 0
	for id := int64(1); id <= 100; id++ {
		_, err := e.app.Store.GetMail(context.Background(), id)
		switch {
		case err == nil:
			n++
		case !errors.Is(err, store.ErrNotFound):
			t.Fatal(err)
		}
	}
	return n
}

// postAll posts body to path from n requests of the browser at once (its
// cookies are not updated) and returns their answers.
func (e *fuzzEnv) postAll(path, body string, n int) []*httptest.ResponseRecorder {
	return e.postTo(slices.Repeat([]http.Handler{e.h}, n), path, body)
}

// spendRace is a real store on which, once armed with n, no flow is spent
// (DeleteFlow) before n flows have been read (GetFlow): the n submits of a
// form posted together all load its flow before any of them can spend it,
// as a double-click's two requests do when they arrive together.
type spendRace struct {
	store.Store
	mu    sync.Mutex
	reads int
	all   chan struct{} // closed once armed and read n times
}

func (s *spendRace) arm(n int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.reads, s.all = n, make(chan struct{})
}

func (s *spendRace) GetFlow(ctx context.Context, key []byte, now time.Time) (*store.Flow, error) {
	f, err := s.Store.GetFlow(ctx, key, now)
	s.mu.Lock()
	if s.reads > 0 {
		if s.reads--; s.reads == 0 {
			close(s.all)
		}
	}
	s.mu.Unlock()
	return f, err
}

var errNeverRead = errors.New("test: the other submits never read the flow")

func (s *spendRace) DeleteFlow(ctx context.Context, key []byte) error {
	s.mu.Lock()
	all := s.all
	s.mu.Unlock()
	if all != nil {
		select {
		case <-all:
		case <-time.After(10 * time.Second): // a guard against a hang, not a wait for the server
			return errNeverRead
		}
	}
	return s.Store.DeleteFlow(ctx, key)
}

// beforeSpend runs hook once, just before the first flow is spent.
type beforeSpend struct {
	store.Store
	once sync.Once
	hook func()
}

func (s *beforeSpend) DeleteFlow(ctx context.Context, key []byte) error {
	s.once.Do(s.hook)
	return s.Store.DeleteFlow(ctx, key)
}

// replaceForm signs in with 2FA on, re-enters the password on the backup
// codes page and returns the page (its replace form).
func replaceForm(t *testing.T, e *fuzzEnv) *httptest.ResponseRecorder {
	t.Helper()
	e.signIn(t, true)
	form := e.getForm(t, "/account/2fa/backup-codes")
	rec := e.post("/account/2fa/backup-codes", with(form, "password", fuzzPassword).Encode())
	if rec.Code != http.StatusOK || len(codesOn(rec)) != 10 {
		t.Fatalf("backup codes after the password: %d\n%s", rec.Code, rec.Body)
	}
	return rec
}

// TestBackupCodesShownRecorded: the backup codes shown again after the
// password are a second factor handed out: it is recorded (My Page's
// security events) and mailed, once per showing; a wrong password shows
// nothing and records nothing of the kind.
func TestBackupCodesShownRecorded(t *testing.T) {
	e := newFuzzEnv(t)
	e.signIn(t, true)
	before := e.mails(t)
	form := e.getForm(t, "/account/2fa/backup-codes")
	if rec := e.post("/account/2fa/backup-codes", with(form, "password", "wrong password").Encode()); len(codesOn(rec)) > 0 {
		t.Fatalf("codes shown after a wrong password")
	}
	if n := e.events(t, "mfa.codes_shown"); n != 0 || e.mails(t) != before {
		t.Fatalf("a wrong password: %d mfa.codes_shown events, %d mails, want none", n, e.mails(t)-before)
	}
	rec := e.post("/account/2fa/backup-codes", with(form, "password", fuzzPassword).Encode())
	if len(codesOn(rec)) != 10 {
		t.Fatalf("codes after the password: %d\n%s", rec.Code, rec.Body)
	}
	if n := e.events(t, "mfa.codes_shown"); n != 1 {
		t.Errorf("%d mfa.codes_shown events, want 1", n)
	}
	if n := e.mails(t) - before; n != 1 {
		t.Errorf("%d mails queued for the codes shown, want 1", n)
	}
	// Codes that could not be read were not shown: nothing is recorded.
	e.useStore(unreadableCodes{e.app.Store})
	if rec := e.post("/account/2fa/backup-codes", with(form, "password", fuzzPassword).Encode()); len(codesOn(rec)) > 0 || rec.Code < 500 {
		t.Fatalf("codes that cannot be read: %d with %d codes, want a 5xx", rec.Code, len(codesOn(rec)))
	}
	if n, m := e.events(t, "mfa.codes_shown"), e.mails(t)-before; n != 1 || m != 1 {
		t.Errorf("after codes that could not be read: %d mfa.codes_shown events and %d mails, want 1 and 1", n, m)
	}
	// 2FA turned off since the page was shown (another tab, the support
	// desk): no codes, nothing recorded nor mailed.
	e.useStore(e.app.Store)
	if err := e.app.Store.DeleteMFA(context.Background(), e.user.ID); err != nil {
		t.Fatal(err)
	}
	rec = e.post("/account/2fa/backup-codes", with(form, "password", fuzzPassword).Encode())
	if n, m := e.events(t, "mfa.codes_shown"), e.mails(t)-before; rec.Code != http.StatusSeeOther || n != 1 || m != 1 {
		t.Errorf("the password after 2FA was turned off: %d, %d mfa.codes_shown events and %d mails, want a redirect and 1 and 1", rec.Code, n, m)
	}
}

// unreadableCodes is a store whose backup codes cannot be read.
type unreadableCodes struct{ store.Store }

func (unreadableCodes) ListBackupCodes(context.Context, string) ([]store.BackupCode, error) {
	return nil, errors.New("the disk is on fire")
}

// TestSettingsFlowGoneLinksBack: a setting's form whose flow is gone (sent
// again after it was used, or left open too long) gets the expired-flow
// page; its user is signed in, so the page links back to the settings, not
// to the login.
func TestSettingsFlowGoneLinksBack(t *testing.T) {
	e := newFuzzEnv(t)
	e.signIn(t, true)
	gone := with(e.getForm(t, "/account/2fa/disable"), "flow", "no-such-flow")
	gone.Set("password", fuzzPassword)
	for _, path := range []string{"/account/2fa/disable", "/account/2fa/backup-codes", "/account/2fa/backup-codes/replace"} {
		rec := e.post(path, gone.Encode())
		if body := rec.Body.String(); rec.Code != http.StatusBadRequest || !strings.Contains(body, settingsBack) || strings.Contains(body, `href="/login"`) {
			t.Errorf("%s with a flow that is gone: %d, want the expired-flow page linking back to /account/2fa\n%s", path, rec.Code, body)
		}
	}
}

// TestReplaceBackupCodesSentAgain: replacing the backup codes spends the
// form's flow. The same form sent again (a reload of the page of new codes,
// or Back and resubmit) makes no other set: the codes just shown, which the
// user wrote down, keep working; the expired-flow page links back to the
// settings, not to the login. The page of new codes has a form of its own
// that replaces them again, on purpose.
func TestReplaceBackupCodesSentAgain(t *testing.T) {
	testenv.Each(t, func(t *testing.T, db testenv.Database) {
		e := newFuzzEnvOn(t, db)
		form := formOf(t, "codes page", replaceForm(t, e))
		const path = "/account/2fa/backup-codes/replace"

		first := e.post(path, form.Encode())
		shown := codesOn(first)
		if first.Code != http.StatusOK || len(shown) != 10 {
			t.Fatalf("replace: %d, %d codes\n%s", first.Code, len(shown), first.Body)
		}
		if stored := e.storedCodes(t); !slices.Equal(stored, shown) {
			t.Fatalf("replace showed %v, stored %v", shown, stored)
		}
		next := formOf(t, "page of new codes", first)
		if next.Get("flow") == form.Get("flow") {
			t.Errorf("the page of new codes posts the spent flow again")
		}

		again := e.post(path, form.Encode())
		if codes := codesOn(again); len(codes) > 0 {
			t.Errorf("the replace form sent again: %d with %d codes, want no other set", again.Code, len(codes))
		}
		if body := again.Body.String(); again.Code != http.StatusBadRequest || !strings.Contains(body, settingsBack) || strings.Contains(body, `href="/login"`) {
			t.Errorf("the replace form sent again: %d, want the expired-flow page linking back to /account/2fa\n%s", again.Code, body)
		}
		if stored := e.storedCodes(t); !slices.Equal(stored, shown) {
			t.Errorf("the codes shown (%v) no longer work: stored %v", shown, stored)
		}
		if n := e.events(t, "mfa.codes_replaced"); n != 1 {
			t.Errorf("%d mfa.codes_replaced events, want 1", n)
		}

		// From the page of new codes, on purpose: another set.
		third := e.post(path, next.Encode())
		if codes := codesOn(third); third.Code != http.StatusOK || len(codes) != 10 || slices.Equal(codes, shown) {
			t.Fatalf("replace again from the page of new codes: %d, codes %v (before: %v)", third.Code, codes, shown)
		}
		if stored := e.storedCodes(t); !slices.Equal(stored, codesOn(third)) {
			t.Errorf("replace again showed %v, stored %v", codesOn(third), stored)
		}
	})
}

// beforeTx runs hook once, just before the first transaction begins.
type beforeTx struct {
	store.Store
	once sync.Once
	hook func()
}

func (s *beforeTx) BeginTx(ctx context.Context) (context.Context, error) {
	s.once.Do(s.hook)
	return s.Store.BeginTx(ctx)
}

// TestReplaceBackupCodesRacingReset: the support desk's reset of 2FA
// (idp user reset-mfa) lands after the replace form's request read the
// account and before its transaction began. No codes are written for an
// account without an authenticator, nothing is recorded or mailed, and
// the browser gets the expired page leading back to the settings (which
// show 2FA off), not a 500.
func TestReplaceBackupCodesRacingReset(t *testing.T) {
	testenv.Each(t, func(t *testing.T, db testenv.Database) {
		e := newFuzzEnvOn(t, db)
		form := formOf(t, "codes page", replaceForm(t, e))
		e.useStore(&beforeTx{Store: e.app.Store, hook: func() {
			if err := e.app.Store.DeleteMFA(context.Background(), e.user.ID); err != nil {
				t.Error(err)
			}
		}})
		rec := e.post("/account/2fa/backup-codes/replace", form.Encode())
		if body := rec.Body.String(); rec.Code != http.StatusBadRequest || !strings.Contains(body, settingsBack) || len(codesOn(rec)) > 0 {
			t.Errorf("replace racing a reset: %d with %d codes, want the expired page linking to /account/2fa\n%s", rec.Code, len(codesOn(rec)), body)
		}
		if stored := e.storedCodes(t); len(stored) > 0 {
			t.Errorf("codes stored without an authenticator: %v", stored)
		}
		if n := e.events(t, "mfa.codes_replaced"); n != 0 {
			t.Errorf("%d mfa.codes_replaced events, want none", n)
		}
	})
}

// TestSettingsDoubleSubmit: the last step of a setting posted twice at once
// (a double-click). Both requests load the flow before either spends it;
// one makes the change, the other finds the flow spent and sends the
// browser to the settings page, which shows the change, rather than to the
// expired-flow page of a login. The change is made once.
func TestSettingsDoubleSubmit(t *testing.T) {
	for _, tc := range []struct {
		name  string
		path  string
		form  func(t *testing.T, e *fuzzEnv) url.Values
		won   func(rec *httptest.ResponseRecorder) bool
		lost  string // the loser's redirect
		event string
	}{
		{
			name:  "setup confirmation",
			path:  "/account/2fa/setup",
			form:  setupConfirmForm,
			won:   func(rec *httptest.ResponseRecorder) bool { return rec.Code == http.StatusOK && len(codesOn(rec)) == 10 },
			lost:  "/account/2fa",
			event: "mfa.enabled",
		},
		{
			name: "disable",
			path: "/account/2fa/disable",
			form: func(t *testing.T, e *fuzzEnv) url.Values {
				e.signIn(t, true)
				return with(e.getForm(t, "/account/2fa/disable"), "password", fuzzPassword)
			},
			won: func(rec *httptest.ResponseRecorder) bool {
				return rec.Code == http.StatusSeeOther && rec.Header().Get("Location") == "/account/2fa?notice=2fa_disabled"
			},
			lost:  "/account/2fa",
			event: "mfa.disabled",
		},
		{
			name: "replace backup codes",
			path: "/account/2fa/backup-codes/replace",
			form: func(t *testing.T, e *fuzzEnv) url.Values {
				return formOf(t, "codes page", replaceForm(t, e))
			},
			won:   func(rec *httptest.ResponseRecorder) bool { return rec.Code == http.StatusOK && len(codesOn(rec)) == 10 },
			lost:  "/account/2fa?notice=codes_replaced",
			event: "mfa.codes_replaced",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			testenv.Each(t, func(t *testing.T, db testenv.Database) {
				e := newFuzzEnvOn(t, db)
				form := tc.form(t, e)
				race := &spendRace{Store: e.app.Store}
				e.useStore(race)
				race.arm(2)
				recs := e.postAll(tc.path, form.Encode(), 2)
				won, lost := 0, 0
				for _, rec := range recs {
					switch {
					case tc.won(rec):
						won++
					case rec.Code == http.StatusSeeOther && rec.Header().Get("Location") == tc.lost:
						lost++
					default:
						t.Errorf("a submit answered %d %q, want the change or a redirect to %s\n%s",
							rec.Code, rec.Header().Get("Location"), tc.lost, rec.Body)
					}
				}
				if won != 1 || lost != 1 {
					t.Errorf("two submits at once: %d made the change, %d were sent to %s; want 1 and 1", won, lost, tc.lost)
				}
				if n := e.events(t, tc.event); n != 1 {
					t.Errorf("%d %s events, want 1", n, tc.event)
				}
				if tc.event == "mfa.codes_replaced" {
					for _, rec := range recs {
						if tc.won(rec) && !slices.Equal(codesOn(rec), e.storedCodes(t)) {
							t.Errorf("the codes shown are not the ones stored")
						}
					}
				}
			})
		})
	}
}

// setupConfirmForm signs in (2FA off), starts the setup and returns its
// confirmation form with the right code.
func setupConfirmForm(t *testing.T, e *fuzzEnv) url.Values {
	t.Helper()
	e.signIn(t, false)
	form := e.getForm(t, "/account/2fa/setup")
	if rec := e.post("/account/2fa/setup", with(form, "password", fuzzPassword).Encode()); rec.Code != http.StatusOK ||
		!strings.Contains(rec.Body.String(), `id="setup-key"`) {
		t.Fatalf("setup password step: %d\n%s", rec.Code, rec.Body)
	}
	return with(form, "code", e.pendingCode(t))
}

// afterFlowRead runs hook just after the first flow is read (the hook's
// own requests read theirs as usual).
type afterFlowRead struct {
	store.Store
	ran  atomic.Bool
	hook func()
}

func (s *afterFlowRead) GetFlow(ctx context.Context, key []byte, now time.Time) (*store.Flow, error) {
	f, err := s.Store.GetFlow(ctx, key, now)
	if s.ran.CompareAndSwap(false, true) {
		s.hook()
	}
	return f, err
}

// TestSetupConfirmedMeanwhile: of a double-click on the setup's
// confirmation, the second request loaded the flow, and the first then
// turned 2FA on (spending the flow and the pending secret) before the
// second read the pending secret. The second sends the browser to the
// settings page, which shows 2FA on, not to the expired-flow page.
func TestSetupConfirmedMeanwhile(t *testing.T) {
	testenv.Each(t, func(t *testing.T, db testenv.Database) {
		e := newFuzzEnvOn(t, db)
		body := setupConfirmForm(t, e).Encode()
		var first *httptest.ResponseRecorder
		e.useStore(&afterFlowRead{Store: e.app.Store, hook: func() { first = e.postAll("/account/2fa/setup", body, 1)[0] }})
		second := e.post("/account/2fa/setup", body)
		if first == nil || first.Code != http.StatusOK || len(codesOn(first)) != 10 {
			t.Fatalf("the first confirmation did not turn 2FA on")
		}
		if second.Code != http.StatusSeeOther || second.Header().Get("Location") != "/account/2fa" {
			t.Errorf("the second confirmation: %d %q, want a redirect to /account/2fa\n%s", second.Code, second.Header().Get("Location"), second.Body)
		}
		if n := e.events(t, "mfa.enabled"); n != 1 {
			t.Errorf("%d mfa.enabled events, want 1", n)
		}
	})
}

// pendingCode is the current code of the user's pending authenticator
// secret (the one the setup page shows).
func (e *fuzzEnv) pendingCode(t *testing.T) string {
	t.Helper()
	now := e.app.Now()
	p, err := e.app.Store.GetPendingTOTP(context.Background(), e.user.ID, now)
	if err != nil {
		t.Fatal(err)
	}
	secret, err := mfa.OpenSecret(e.app.Key, e.user.ID, p.SecretEnc)
	if err != nil {
		t.Fatal(err)
	}
	code, err := mfa.CodeAt(secret, mfa.StepAt(now))
	if err != nil {
		t.Fatal(err)
	}
	return code
}

// TestDisableRacingSupportReset: the support desk resets the user's 2FA
// (idp user reset-mfa) while the user turns it off on My Page, after the
// page read the account. 2FA is off once, by support: the page's change
// finds nothing to remove and records nothing, mails nothing, and sends the
// browser to the settings page, which shows 2FA off.
func TestDisableRacingSupportReset(t *testing.T) {
	testenv.Each(t, func(t *testing.T, db testenv.Database) {
		e := newFuzzEnvOn(t, db)
		e.signIn(t, true)
		form := with(e.getForm(t, "/account/2fa/disable"), "password", fuzzPassword)
		mailsAfterReset := -1
		e.useStore(&beforeSpend{Store: e.app.Store, hook: func() {
			if _, _, err := e.app.ResetMFA(context.Background(), fuzzEmail); err != nil {
				t.Error(err)
			}
			mailsAfterReset = e.mails(t)
		}})
		rec := e.post("/account/2fa/disable", form.Encode())
		if mailsAfterReset < 0 {
			t.Fatalf("the disable form never spent its flow: %d %q", rec.Code, rec.Header().Get("Location"))
		}
		if rec.Code != http.StatusSeeOther || rec.Header().Get("Location") != "/account/2fa" {
			t.Errorf("disable after a support reset: %d %q, want a redirect to /account/2fa", rec.Code, rec.Header().Get("Location"))
		}
		if n := e.events(t, "mfa.disabled"); n != 0 {
			t.Errorf("%d mfa.disabled events after support turned 2FA off, want none", n)
		}
		if n := e.mails(t); n != mailsAfterReset {
			t.Errorf("%d mails queued by the disable form after support turned 2FA off, want none", n-mailsAfterReset)
		}
	})
}
