package web

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"time"

	"github.com/kamera-id/idp/idp/crypt"
	"github.com/kamera-id/idp/idp/mail"
	"github.com/kamera-id/idp/idp/mfa"
	"github.com/kamera-id/idp/idp/oidc"
	"github.com/kamera-id/idp/idp/store"
	"github.com/kamera-id/idp/templates"
)

// My Page (マイページ) and its 2段階認証設定 section. Every page needs a
// session; the sensitive ones ask for the password again.

// requirePostingUser is requireUser for a My Page form: the form's CSRF
// token is checked first (403 without a valid one).
func (s *Server) requirePostingUser(w http.ResponseWriter, r *http.Request) (*store.Session, *store.User, bool) {
	if !s.requireCSRF(w, r) {
		return nil, nil, false
	}
	return s.requireUser(w, r)
}

// requireUser returns the signed-in user, or sends the visitor to the login
// page, which brings them back here afterwards.
func (s *Server) requireUser(w http.ResponseWriter, r *http.Request) (*store.Session, *store.User, bool) {
	sess, err := s.currentSession(r)
	if err != nil {
		s.storeFailed(w, r, err)
		return nil, nil, false
	}
	if sess != nil {
		u, err := s.Store.GetUser(r.Context(), sess.UserID)
		if err == nil {
			return sess, u, true
		}
		if !errors.Is(err, store.ErrNotFound) {
			s.storeFailed(w, r, err)
			return nil, nil, false
		}
	}
	returnTo := r.URL.Path
	if r.Method != http.MethodGet {
		returnTo = "/account"
	}
	f := &flow{Kind: "login", ReturnTo: safeReturnTo(returnTo), Lang: s.lang(r, nil)}
	if err := s.newFlow(r.Context(), w, r, f); err != nil {
		s.flowNotStarted(w, r, err)
		return nil, nil, false
	}
	http.Redirect(w, r, "/login?flow="+url.QueryEscape(f.id), http.StatusSeeOther)
	return nil, nil, false
}

// The notices a page shows after a change (?notice=), by page: anything
// else in the query is not shown.
var (
	notices        = []string{"2fa_enabled", "2fa_disabled", "codes_replaced", "mfa_reset", "password_changed", "locale_changed"}
	sessionNotices = []string{"session_revoked", "sessions_revoked"}
	appNotices     = []string{"app_revoked"}
)

// noticeOf is the request's notice when it is one of known, else "".
func noticeOf(r *http.Request, known []string) string {
	if n := r.URL.Query().Get("notice"); slices.Contains(known, n) {
		return n
	}
	return ""
}

func notice(r *http.Request) string { return noticeOf(r, notices) }

func (s *Server) account(w http.ResponseWriter, r *http.Request) {
	_, u, ok := s.requireUser(w, r)
	if !ok {
		return
	}
	events, err := s.Store.ListAuditEvents(r.Context(), u.ID, 10)
	if err != nil {
		s.storeFailed(w, r, err)
		return
	}
	p := s.accountPage(w, r, u)
	entries := make([]templates.AuditEntry, 0, len(events))
	for _, e := range events {
		entries = append(entries, auditEntry(p.Lang, e))
	}
	s.render(w, r, http.StatusOK, templates.Account(templates.AccountPage{
		Page: p, Email: u.Email, Name: u.Name, MFAEnabled: u.MFAEnabled, Events: entries, Notice: notice(r),
		Locale: templates.NormalizeLang(u.Locale),
	}))
}

// accountLocale sets the account's language (its security e-mails, the ID
// token's locale) from My Page, and the pages' too.
func (s *Server) accountLocale(w http.ResponseWriter, r *http.Request) {
	_, u, ok := s.requirePostingUser(w, r)
	if !ok {
		return
	}
	locale := r.PostFormValue("locale")
	if !templates.IsLang(locale) {
		s.renderErrorDetail(w, r, http.StatusBadRequest, "invalid_request", "input_locale")
		return
	}
	if err := s.Store.UpdateLocale(r.Context(), u.ID, locale, s.Now()); err != nil {
		s.storeFailed(w, r, err)
		return
	}
	s.setCookie(w, langCookie, locale, 365*24*time.Hour)
	http.Redirect(w, r, "/account?notice=locale_changed", http.StatusSeeOther)
}

// shownTime is how My Page shows a time: to the minute, in Japan's time.
func shownTime(t time.Time) string {
	return t.In(time.FixedZone("JST", 9*3600)).Format("2006/01/02 15:04")
}

func auditEntry(lang string, e store.AuditEvent) templates.AuditEntry {
	a := templates.AuditEntry{When: shownTime(e.CreatedAt), Type: e.Type, IP: e.IP}
	var d struct {
		Remaining *int   `json:"remaining"`
		Method    string `json:"method"`
		Client    string `json:"client"` // the name of the app whose access was removed
	}
	if json.Unmarshal([]byte(e.Detail), &d) != nil {
		return a
	}
	switch {
	case d.Remaining != nil && lang == "en":
		a.Detail = strconv.Itoa(*d.Remaining) + " left"
	case d.Remaining != nil:
		a.Detail = "残り " + strconv.Itoa(*d.Remaining) + " 個"
	case d.Client != "":
		a.Detail = d.Client
	}
	return a
}

func (s *Server) twoFA(w http.ResponseWriter, r *http.Request) {
	_, u, ok := s.requireUser(w, r)
	if !ok {
		return
	}
	remaining := 0
	if u.MFAEnabled {
		codes, err := s.Store.ListBackupCodes(r.Context(), u.ID)
		if err != nil {
			s.storeFailed(w, r, err)
			return
		}
		for _, c := range codes {
			if c.UsedAt.IsZero() {
				remaining++
			}
		}
	}
	s.render(w, r, http.StatusOK, templates.TwoFA(templates.TwoFAPage{
		Page: s.accountPage(w, r, u), MFAEnabled: u.MFAEnabled, RemainingCodes: remaining, Notice: notice(r),
		SetupURL: "/account/2fa/setup", DisableURL: "/account/2fa/disable", BackupCodesURL: "/account/2fa/backup-codes",
	}))
}

// settingsFlow loads the flow of a sensitive setting, checking it belongs to
// the signed-in user.
func (s *Server) settingsFlow(w http.ResponseWriter, r *http.Request, kind string, u *store.User) (*flow, bool) {
	f, err := s.loadFlow(r.Context(), r, r.PostFormValue("flow"))
	if err == nil && (f.Kind != kind || f.UserID != u.ID) {
		err = errFlowGone
	}
	if err != nil {
		s.settingsFailed(w, r, err)
		return nil, false
	}
	return f, true
}

// spendSettingsFlow spends a setting's flow before its change is made: of
// two requests with one form (a double-click, a reload, Back and resubmit)
// exactly one makes the change. The other, whose flow that one spent, is
// sent to gone, the settings page, which shows the change made (rather than
// the expired-flow page, as if it had failed). False when the request was
// answered.
func (s *Server) spendSettingsFlow(w http.ResponseWriter, r *http.Request, f *flow, gone string) bool {
	err := s.finishFlow(r.Context(), f)
	switch {
	case err == nil:
		return true
	case errors.Is(err, errFlowGone):
		http.Redirect(w, r, gone, http.StatusSeeOther)
	default:
		s.storeFailed(w, r, err)
	}
	return false
}

// settingsFailed is flowFailed for a setting's form: the user is signed
// in, so the expired-flow page links back to the settings, not to the
// login.
func (s *Server) settingsFailed(w http.ResponseWriter, r *http.Request, err error) {
	s.flowFailedBack(w, r, err, "/account/2fa")
}

// reauthenticate checks the re-entered password, with the same limits as
// the login form. It answers the status to render and the message key (""
// when the password is right).
func (s *Server) reauthenticate(r *http.Request, u *store.User) (status int, msg string, err error) {
	ctx := r.Context()
	keys := s.passwordKeys(r, u)
	unlock, err := s.lockKeys(ctx, keys) // as at login: one attempt on the account (or device) at a time
	if err != nil {
		return 0, "", err
	}
	defer unlock()
	locked, counted, err := s.lockedOut(ctx, keys...)
	if err != nil || locked {
		return http.StatusTooManyRequests, "too_many_attempts", err
	}
	pw := r.PostFormValue("password")
	ok := false
	if pw != "" && len(pw) <= 1024 {
		ok, _, err = s.verifyPassword(ctx, u, pw)
		if err != nil {
			return 0, "", err
		}
	}
	if !ok {
		status, err := s.recordFailures(ctx, s.loginPolicy(), keys...)
		if status == http.StatusTooManyRequests {
			return status, "too_many_attempts", err
		}
		return http.StatusOK, "invalid_password", err
	}
	if !counted {
		return http.StatusOK, "", nil
	}
	return http.StatusOK, "", s.Store.ResetThrottle(ctx, keys[0])
}

// --- Turning 2FA on: password, then 手順1-3, then the backup codes. ---

func (s *Server) setupStart(w http.ResponseWriter, r *http.Request) {
	_, u, ok := s.requireUser(w, r)
	if !ok {
		return
	}
	if u.MFAEnabled {
		http.Redirect(w, r, "/account/2fa", http.StatusSeeOther)
		return
	}
	f := &flow{Kind: "setup", UserID: u.ID}
	if err := s.newFlow(r.Context(), w, r, f); err != nil {
		s.storeFailed(w, r, err)
		return
	}
	s.renderPasswordPrompt(w, r, f, u, "setup", http.StatusOK, "")
}

func (s *Server) renderPasswordPrompt(w http.ResponseWriter, r *http.Request, f *flow, u *store.User, purpose string, status int, msg string) {
	action := "/account/2fa/setup"
	if purpose == "backup_codes" {
		action = "/account/2fa/backup-codes"
	}
	s.render(w, r, status, templates.PasswordPrompt(templates.PasswordPromptPage{
		Page: s.accountPageIn(w, r, u, f.Lang), Action: action, Purpose: purpose, Flow: f.id, Error: msg,
	}))
}

func (s *Server) setupSubmit(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	sess, u, ok := s.requirePostingUser(w, r)
	if !ok {
		return
	}
	f, ok := s.settingsFlow(w, r, "setup", u)
	if !ok {
		return
	}
	if u.MFAEnabled {
		http.Redirect(w, r, "/account/2fa", http.StatusSeeOther)
		return
	}
	if f.Stage == "" {
		status, msg, err := s.reauthenticate(r, u)
		if err != nil {
			s.storeFailed(w, r, err)
			return
		}
		if msg != "" {
			s.renderPasswordPrompt(w, r, f, u, "setup", status, msg)
			return
		}
		secret, err := mfa.NewSecret()
		if err != nil {
			s.storeFailed(w, r, err)
			return
		}
		now := s.Now()
		pending := &store.PendingTOTP{
			UserID: u.ID, SecretEnc: mfa.SealSecret(s.Key, u.ID, secret), CreatedAt: now, ExpiresAt: now.Add(s.Config.FlowLifetime),
		}
		if err := s.Store.PutPendingTOTP(ctx, pending); err != nil {
			s.storeFailed(w, r, err)
			return
		}
		f.Stage, f.Shown = "confirm", s.pendingMark(pending)
		if err := s.saveFlow(ctx, f); err != nil {
			s.storeFailed(w, r, err)
			return
		}
		s.renderSetup(w, r, f, u, secret, http.StatusOK, "")
		return
	}

	pending, err := s.Store.GetPendingTOTP(ctx, u.ID, s.Now())
	if errors.Is(err, store.ErrNotFound) {
		// Expired, or confirmed meanwhile by another request with this
		// form (a double-click), which turned 2FA on: the settings page
		// shows it.
		cur, err2 := s.Store.GetUser(ctx, u.ID)
		switch {
		case err2 == nil && cur.MFAEnabled:
			http.Redirect(w, r, "/account/2fa", http.StatusSeeOther)
			return
		case err2 != nil && !errors.Is(err2, store.ErrNotFound):
			err = err2
		default:
			err = errFlowGone
		}
	}
	if err != nil {
		s.settingsFailed(w, r, err)
		return
	}
	secret, err := mfa.OpenSecret(s.Key, u.ID, pending.SecretEnc)
	if err != nil {
		s.storeFailed(w, r, err)
		return
	}
	if mark := s.pendingMark(pending); !crypt.Equal(f.Shown, mark) {
		// A setup started since, in another tab or another browser of the
		// account, put another secret in the place of the one this page
		// showed: its code is not a wrong one. The new secret is that
		// setup's, never shown here: in another browser it may be someone
		// else's (who has the password and a session, and would read the
		// secret the owner is about to scan to shut them out). This setup
		// starts again from its password, and says why.
		f.Stage, f.Shown = "", nil
		if err := s.saveFlow(ctx, f); err != nil {
			s.storeFailed(w, r, err)
			return
		}
		s.renderPasswordPrompt(w, r, f, u, "setup", http.StatusOK, "setup_restarted")
		return
	}
	if !r.PostForm.Has("code") {
		// The password form posted again (a reload of this page, or Back
		// and resubmit): no attempt at a code, so nothing to count, and the
		// password was checked when the secret was made.
		s.renderSetup(w, r, f, u, secret, http.StatusOK, "")
		return
	}
	// Wrong confirmation codes count as wrong codes at login do (the
	// contract's 429), on the same key.
	key := s.secondStepKey(r, u.ID, s.accountThrottleKey(u.Email), s.stampMark(u))
	unlock, ok := s.lockAttempts(w, r, key)
	if !ok {
		return
	}
	defer unlock()
	locked, counted, err := s.lockedOut(ctx, key)
	if err != nil {
		s.storeFailed(w, r, err)
		return
	}
	if locked {
		s.renderSetup(w, r, f, u, secret, http.StatusTooManyRequests, "too_many_attempts")
		return
	}
	step, err := mfa.Verify(secret, r.PostFormValue("code"), s.Now(), 0)
	if err != nil {
		status, err := s.secondStepFailed(r, key, u.ID, "setup")
		if err != nil {
			s.storeFailed(w, r, err)
			return
		}
		s.renderSetup(w, r, f, u, secret, status, failureMessage(status, "invalid_setup_code"))
		return
	}
	if err := s.resetThrottle(ctx, key, counted); err != nil {
		s.storeFailed(w, r, err)
		return
	}
	unlock()
	codes, err := mfa.GenerateBackupCodes(mfa.BackupCodeCount)
	if err != nil {
		s.storeFailed(w, r, err)
		return
	}
	if !s.spendSettingsFlow(w, r, f, "/account/2fa") {
		return
	}
	err = s.changeCredentials(w, r, u, deviceLogin, func(tx context.Context) (accountChange, error) {
		c := accountChange{Event: "mfa.enabled", Mail: mail.MFAEnabled}
		// Only the secret the code was checked against: one that a setup
		// started since (in another tab) put in its place was never proved.
		if err := s.Store.ConfirmTOTP(tx, u.ID, pending.SecretEnc, step, mfa.SealBackupCodes(s.Key, u.ID, codes), s.Now()); err != nil {
			return c, err
		}
		// Sessions elsewhere were authenticated without the new factor.
		_, err := s.Store.DeleteUserSessions(tx, u.ID, sess.ID)
		return c, err
	})
	if err != nil {
		if errors.Is(err, store.ErrNotFound) || errors.Is(err, store.ErrConsumed) {
			err = errFlowGone // expired, or replaced: start again
		}
		s.settingsFailed(w, r, err)
		return
	}
	s.render(w, r, http.StatusOK, templates.SetupDone(templates.SetupDonePage{
		Page: s.accountPage(w, r, u), Codes: formatCodes(codes), TwoFAURL: "/account/2fa",
	}))
}

func formatCodes(codes []string) []string {
	out := make([]string, len(codes))
	for i, c := range codes {
		out[i] = mfa.FormatBackupCode(c)
	}
	return out
}

// pendingMark identifies a pending authenticator secret (a keyed hash of
// its sealed form), for a setup's flow to tell which one its page showed.
func (s *Server) pendingMark(p *store.PendingTOTP) []byte {
	return s.Key.MAC("setup-shown", p.SecretEnc)[:16]
}

func (s *Server) renderSetup(w http.ResponseWriter, r *http.Request, f *flow, u *store.User, secret string, status int, msg string) {
	keyURI := mfa.KeyURI(s.Config.TOTPIssuer, u.Email, secret)
	png, err := mfa.QRCodePNG(keyURI, 256)
	if err != nil {
		s.storeFailed(w, r, err)
		return
	}
	s.render(w, r, status, templates.Setup(templates.SetupPage{
		Page: s.accountPage(w, r, u), Action: "/account/2fa/setup", Flow: f.id,
		QRDataURL: "data:image/png;base64," + base64.StdEncoding.EncodeToString(png), KeyURI: keyURI,
		SetupKey: mfa.GroupKey(secret), Error: msg,
	}))
}

// --- Turning 2FA off (2段階認証の解除). ---

func (s *Server) disablePage(w http.ResponseWriter, r *http.Request) {
	_, u, ok := s.requireUser(w, r)
	if !ok {
		return
	}
	if !u.MFAEnabled {
		http.Redirect(w, r, "/account/2fa", http.StatusSeeOther)
		return
	}
	f := &flow{Kind: "disable", UserID: u.ID}
	if err := s.newFlow(r.Context(), w, r, f); err != nil {
		s.storeFailed(w, r, err)
		return
	}
	s.renderDisable(w, r, f, u, http.StatusOK, "")
}

func (s *Server) renderDisable(w http.ResponseWriter, r *http.Request, f *flow, u *store.User, status int, msg string) {
	s.render(w, r, status, templates.Disable(templates.DisablePage{
		Page: s.accountPage(w, r, u), Action: "/account/2fa/disable", Flow: f.id, CancelURL: "/account/2fa", Error: msg,
	}))
}

func (s *Server) disableSubmit(w http.ResponseWriter, r *http.Request) {
	_, u, ok := s.requirePostingUser(w, r)
	if !ok {
		return
	}
	if !u.MFAEnabled {
		// Off already (another tab's form, or the support desk): nothing to
		// turn off, record or mail; the settings page shows it.
		http.Redirect(w, r, "/account/2fa", http.StatusSeeOther)
		return
	}
	f, ok := s.settingsFlow(w, r, "disable", u)
	if !ok {
		return
	}
	status, msg, err := s.reauthenticate(r, u)
	if err != nil {
		s.storeFailed(w, r, err)
		return
	}
	if msg != "" {
		s.renderDisable(w, r, f, u, status, msg)
		return
	}
	if !s.spendSettingsFlow(w, r, f, "/account/2fa") {
		return
	}
	err = s.changeCredentials(w, r, u, deviceLogin, func(tx context.Context) (accountChange, error) {
		c := accountChange{Event: "mfa.disabled", Mail: mail.MFADisabled}
		// ErrNotFound: turned off since the account was read (the support
		// desk's reset): nothing is recorded or mailed.
		return c, s.Store.DeleteMFA(tx, u.ID)
	})
	if errors.Is(err, store.ErrNotFound) {
		http.Redirect(w, r, "/account/2fa", http.StatusSeeOther)
		return
	}
	if err != nil {
		s.storeFailed(w, r, err)
		return
	}
	http.Redirect(w, r, "/account/2fa?notice=2fa_disabled", http.StatusSeeOther)
}

// --- Backup codes again (after the password), and replacing them. ---

// queryFlowID accepts a flow id (at most max characters) from a query
// parameter, to be carried to another page (the low-codes notice's
// "continue" flow, the sealed login a forgot-password page was opened
// from); anything else is dropped.
func queryFlowID(v string, max int) string {
	if len(v) == 0 || len(v) > max {
		return ""
	}
	for _, c := range v {
		if !(c == '-' || c == '_' || (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')) {
			return ""
		}
	}
	return v
}

func (s *Server) backupCodesStart(w http.ResponseWriter, r *http.Request) {
	_, u, ok := s.requireUser(w, r)
	if !ok {
		return
	}
	if !u.MFAEnabled {
		http.Redirect(w, r, "/account/2fa", http.StatusSeeOther)
		return
	}
	f := &flow{Kind: "codes", UserID: u.ID, State: queryFlowID(r.URL.Query().Get("continue"), maxFlowID)}
	if f.State != "" {
		f.Lang = s.lang(r, inLocale(u)) // this page's, for the pages answering its forms
	}
	if err := s.newFlow(r.Context(), w, r, f); err != nil {
		s.storeFailed(w, r, err)
		return
	}
	s.renderPasswordPrompt(w, r, f, u, "backup_codes", http.StatusOK, "")
}

func (s *Server) backupCodesSubmit(w http.ResponseWriter, r *http.Request) {
	_, u, ok := s.requirePostingUser(w, r)
	if !ok {
		return
	}
	f, ok := s.settingsFlow(w, r, "codes", u)
	if !ok {
		return
	}
	if !u.MFAEnabled {
		// Turned off since the page was shown (another tab, the support
		// desk): there are no codes to show, nor to record as shown.
		http.Redirect(w, r, "/account/2fa", http.StatusSeeOther)
		return
	}
	status, msg, err := s.reauthenticate(r, u)
	if err != nil {
		s.storeFailed(w, r, err)
		return
	}
	if msg != "" {
		s.renderPasswordPrompt(w, r, f, u, "backup_codes", status, msg)
		return
	}
	f.Stage, f.ReauthAt = "reauthed", s.Now()
	if err := s.saveFlow(r.Context(), f); err != nil {
		s.storeFailed(w, r, err)
		return
	}
	// The codes are a second factor: whoever sees them can log in without
	// the authenticator. Showing them is recorded and mailed, as replacing
	// them is, so a hijacked session that also has the password does not
	// take them silently; once they are read, so that no mail tells of
	// codes a failed read never showed.
	codes, err := s.backupCodes(r.Context(), u)
	if err == nil && len(codes) == 0 {
		// Turned off between the account's read and the codes' (2FA off
		// deletes them): nothing to show, nor to record as shown.
		http.Redirect(w, r, "/account/2fa", http.StatusSeeOther)
		return
	}
	if err == nil {
		err = s.changeAccount(r, u, func(context.Context) (accountChange, error) {
			return accountChange{Event: "mfa.codes_shown", Mail: mail.CodesShown}, nil
		})
	}
	if err != nil {
		s.storeFailed(w, r, err)
		return
	}
	s.showBackupCodes(w, r, f, u, codes, false)
}

func (s *Server) backupCodesReplace(w http.ResponseWriter, r *http.Request) {
	_, u, ok := s.requirePostingUser(w, r)
	if !ok {
		return
	}
	f, ok := s.settingsFlow(w, r, "codes", u)
	if !ok {
		return
	}
	if f.Stage != "reauthed" || s.Now().Sub(f.ReauthAt) > s.Config.FlowLifetime || !u.MFAEnabled {
		s.settingsFailed(w, r, errFlowGone)
		return
	}
	codes, err := mfa.GenerateBackupCodes(mfa.BackupCodeCount)
	if err != nil {
		s.storeFailed(w, r, err)
		return
	}
	// The form replaces the codes once: sent again (a reload of the page
	// of new codes, Back and resubmit, a double-click) it must not make
	// another set, which would silently void the codes just written down.
	if !s.spendSettingsFlow(w, r, f, "/account/2fa?notice=codes_replaced") {
		return
	}
	// The page of new codes may replace them again, on purpose: with a flow
	// of its own, as long as the password entered before is recent enough.
	next := &flow{Kind: "codes", UserID: u.ID, State: f.State, Stage: "reauthed", ReauthAt: f.ReauthAt, Lang: f.Lang}
	if err := s.newFlow(r.Context(), w, r, next); err != nil {
		s.storeFailed(w, r, err)
		return
	}
	err = s.changeAccount(r, u, func(tx context.Context) (accountChange, error) {
		return accountChange{Event: "mfa.codes_replaced", Mail: mail.CodesReplaced}, s.Store.ReplaceBackupCodes(tx, u.ID, mfa.SealBackupCodes(s.Key, u.ID, codes))
	})
	if errors.Is(err, store.ErrNotFound) {
		// 2FA turned off (or reset by the support desk) since the account
		// was read: no codes without an authenticator.
		s.settingsFailed(w, r, errFlowGone)
		return
	}
	if err != nil {
		s.storeFailed(w, r, err)
		return
	}
	s.renderBackupCodes(w, r, next, u, true)
}

func (s *Server) renderBackupCodes(w http.ResponseWriter, r *http.Request, f *flow, u *store.User, replaced bool) {
	codes, err := s.backupCodes(r.Context(), u)
	if err != nil {
		s.storeFailed(w, r, err)
		return
	}
	s.showBackupCodes(w, r, f, u, codes, replaced)
}

// backupCodes are the user's backup codes, opened, used ones marked.
func (s *Server) backupCodes(ctx context.Context, u *store.User) ([]templates.BackupCode, error) {
	recs, err := s.Store.ListBackupCodes(ctx, u.ID)
	if err != nil {
		return nil, err
	}
	plain, err := mfa.OpenBackupCodes(s.Key, u.ID, recs)
	if err != nil {
		return nil, err
	}
	codes := make([]templates.BackupCode, len(recs))
	for i, rec := range recs {
		codes[i] = templates.BackupCode{Code: mfa.FormatBackupCode(plain[i]), Used: !rec.UsedAt.IsZero()}
	}
	return codes, nil
}

func (s *Server) showBackupCodes(w http.ResponseWriter, r *http.Request, f *flow, u *store.User, codes []templates.BackupCode, replaced bool) {
	p := templates.BackupCodesPage{
		Page: s.accountPageIn(w, r, u, f.Lang), Codes: codes, ReplaceAction: "/account/2fa/backup-codes/replace",
		Flow: f.id, Replaced: replaced,
	}
	if f.State != "" {
		p.ReturnURL = "/login/continue?flow=" + url.QueryEscape(f.State)
	}
	s.render(w, r, http.StatusOK, templates.BackupCodes(p))
}

// --- Logout: RP-initiated (end_session_endpoint) and from My Page. ---

func (s *Server) logoutStart(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	q := r.URL.Query()
	postLogout, state := q.Get("post_logout_redirect_uri"), q.Get("state")
	clientID := q.Get("client_id")
	var hintSub, hintSID string
	hintUnverified := false
	if hint := q.Get("id_token_hint"); hint != "" {
		sub, aud, sid, err := s.Provider.VerifyIDTokenHint(ctx, hint)
		switch {
		case err != nil:
			// Not verifiable (signed with a key retired since, typically:
			// relying parties keep the ID token for the whole session): it
			// proves nothing, so the user is asked, as without a hint.
			hintUnverified = true
		case clientID == "" && len(aud) > 0:
			clientID = aud[0]
		case clientID != "" && !slices.Contains(aud, clientID):
			s.renderError(w, r, http.StatusBadRequest, "invalid_request")
			return
		}
		if err == nil {
			hintSub, hintSID = sub, sid
		}
	}
	if postLogout != "" && !s.postLogoutAllowed(ctx, clientID, postLogout) {
		if !hintUnverified || clientID != "" {
			s.renderError(w, r, http.StatusBadRequest, "unregistered_redirect_uri")
			return
		}
		// Whose URI it is was to come from the hint: not followed.
		postLogout, state = "", ""
	}
	sess, err := s.currentSession(r)
	if err != nil {
		s.storeFailed(w, r, err)
		return
	}
	if sess == nil {
		// No session to ask about; one past its idle or absolute end
		// still has its tokens, and ends now.
		if err := s.endSession(w, r); err != nil {
			s.storeFailed(w, r, err)
			return
		}
		s.loggedOut(w, r, &flow{PostLogoutURI: postLogout, State: state, ClientID: clientID})
		return
	}
	// The relying party proved which session it means: no need to ask.
	if hintSub == sess.UserID && (hintSID == "" || hintSID == sess.ID) {
		if err := s.endSession(w, r); err != nil {
			s.storeFailed(w, r, err)
			return
		}
		s.loggedOut(w, r, &flow{PostLogoutURI: postLogout, State: state, ClientID: clientID})
		return
	}
	f := &flow{Kind: "logout", PostLogoutURI: postLogout, State: state, Lang: s.lang(r, nil)}
	if c, err := s.Provider.Storage.Client(ctx, clientID); err == nil {
		f.ClientName, f.ClientID = c.Name, c.ID
	}
	if err := s.newFlow(ctx, w, r, f); err != nil {
		s.storeFailed(w, r, err)
		return
	}
	s.render(w, r, http.StatusOK, templates.Logout(templates.LogoutPage{
		Page: s.page(w, r, f), Action: "/logout", Flow: f.id, ClientName: f.ClientName,
	}))
}

func (s *Server) postLogoutAllowed(ctx context.Context, clientID, uri string) bool {
	if clientID == "" {
		return false
	}
	c, err := s.Provider.Storage.Client(ctx, clientID)
	return err == nil && slices.Contains(c.PostLogoutRedirectURIs, uri)
}

func (s *Server) logoutSubmit(w http.ResponseWriter, r *http.Request) {
	if r.PostFormValue("csrf") == "" && r.PostFormValue("flow") == "" {
		asGet(oidc.PathEndSession)(w, r) // a relying party's logout request
		return
	}
	if !s.requireCSRF(w, r) {
		return
	}
	// A confirmation whose flow is gone (expired, or sent twice) still logs
	// out: the form's CSRF token shows this browser asked to, and a user
	// who walks away from a shared computer after clicking it must not stay
	// logged in. Only the relying party's redirect, which the flow held, is
	// lost.
	var f *flow
	if id := r.PostFormValue("flow"); id != "" {
		var err error
		f, err = s.loadFlow(r.Context(), r, id)
		if err == nil && f.Kind != "logout" {
			err = errFlowGone
		}
		if err == nil {
			err = s.finishFlow(r.Context(), f)
		}
		switch {
		case errors.Is(err, errFlowGone):
			f = nil
		case err != nil:
			s.storeFailed(w, r, err)
			return
		}
	}
	// The answer speaks the account's language (read while the session
	// lasts) unless the logout's page or this browser chose one, or the
	// browser goes back to its relying party.
	if f == nil || f.Lang == "" && f.PostLogoutURI == "" {
		if u := s.sessionUser(r); u != nil && templates.IsLang(u.Locale) {
			if f == nil {
				f = &flow{}
			}
			f.Lang = u.Locale
		}
	}
	if err := s.endSession(w, r); err != nil {
		s.storeFailed(w, r, err)
		return
	}
	s.loggedOut(w, r, f)
}

// sessionUser is the account of the browser's session; nil when there is
// none, or it cannot be read now. Unlike currentSession it records no use:
// the session is about to end.
func (s *Server) sessionUser(r *http.Request) *store.User {
	v := s.cookie(r, sessionCookie)
	if v == "" {
		return nil
	}
	sess, err := s.Store.GetSession(r.Context(), crypt.HashToken(v), s.Now())
	if err != nil {
		return nil
	}
	u, err := s.Store.GetUser(r.Context(), sess.UserID)
	if err != nil {
		return nil
	}
	return u
}

// loggedOut sends the browser back to the relying party (f's
// post_logout_redirect_uri, with its state) or shows that the user is
// logged out, in the relying party's look. f may be nil. The URI is
// checked again: a confirmation page answered late must not follow a URI
// taken off the client, or a client deleted, since it was shown.
func (s *Server) loggedOut(w http.ResponseWriter, r *http.Request, f *flow) {
	if f != nil && f.PostLogoutURI != "" && s.postLogoutAllowed(r.Context(), f.ClientID, f.PostLogoutURI) {
		u, err := url.Parse(f.PostLogoutURI)
		if err == nil {
			if f.State != "" {
				q := u.Query()
				q.Set("state", f.State)
				u.RawQuery = q.Encode()
			}
			http.Redirect(w, r, u.String(), http.StatusSeeOther)
			return
		}
	}
	s.render(w, r, http.StatusOK, templates.Message(templates.MessagePage{
		Page: s.page(w, r, f), Heading: "logged_out", Message: "logged_out_text", LinkURL: "/login", LinkText: "login",
	}))
}
