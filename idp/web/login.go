package web

import (
	"cmp"
	"context"
	"errors"
	"net/http"
	"net/url"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/kamera-id/idp/idp/crypt"
	"github.com/kamera-id/idp/idp/mail"
	"github.com/kamera-id/idp/idp/metrics"
	"github.com/kamera-id/idp/idp/mfa"
	"github.com/kamera-id/idp/idp/oidc"
	"github.com/kamera-id/idp/idp/password"
	"github.com/kamera-id/idp/idp/store"
	"github.com/kamera-id/idp/templates"
)

// The login state machine: password → (TOTP code | backup code) → session.
// Each step's result is kept in the sealed login (state.go), which the
// browser carries but can neither read nor change.

// loginPage shows the e-mail and password form. Without a flow (a visitor
// opening /login directly) it starts one that ends on My Page, or on the
// own path given as return_to.
func (s *Server) loginPage(w http.ResponseWriter, r *http.Request) {
	id := r.URL.Query().Get("flow")
	var f *flow
	if id == "" {
		s.keepLangChoice(w, r) // /login?lang=en: the pages after it too
		f = &flow{Kind: "login", ReturnTo: safeReturnTo(r.URL.Query().Get("return_to")), Lang: s.lang(r, nil)}
		if err := s.newFlow(r.Context(), w, r, f); err != nil {
			s.flowNotStarted(w, r, err)
			return
		}
		http.Redirect(w, r, "/login?flow="+url.QueryEscape(f.id), http.StatusSeeOther)
		return
	}
	f, ok := s.flowOrError(w, r, id, "login")
	if !ok || s.loginFinished(w, r, f) {
		return
	}
	if f.UserID != "" { // the password step is done: on to the second step
		http.Redirect(w, r, "/login/totp?flow="+url.QueryEscape(f.id), http.StatusSeeOther)
		return
	}
	s.renderLogin(w, r, f, http.StatusOK, cmp.Or(f.Typed, f.Email), f.Remember, f.Notice)
}

func (s *Server) renderLogin(w http.ResponseWriter, r *http.Request, f *flow, status int, email string, remember bool, msg string) {
	if r.Method == http.MethodPost {
		f = s.asTyped(f, email, remember)
	}
	p := s.page(w, r, f)
	s.render(w, r, status, templates.Login(templates.LoginPage{
		Page: p, Action: "/login", Flow: f.id, Email: email, Remember: remember,
		Error: msg, Notice: r.Method == http.MethodGet, ClientName: f.ClientName, ForgotURL: inLang("/forgot-password?flow="+url.QueryEscape(f.id), p.Lang),
	}))
}

// asTyped is the login f as its form was sent back (a wrong password, say):
// resealed with the address typed and the remember box, so that the
// language switch's links, which lead to the login's page, show them
// again; f itself when that adds nothing, or would make it too large.
// Only what the page shows changes: the password step sets Remember anew.
func (s *Server) asTyped(f *flow, email string, remember bool) *flow {
	if email == f.Typed && remember == f.Remember {
		return f
	}
	g := *f
	g.Typed, g.Remember = email, remember
	s.sealLogin(&g)
	if len(g.id) > maxNewLogin+typedRoom {
		return f
	}
	return &g
}

// typedRoom is what an address typed may add to a sealed login.
const typedRoom = 512

// inLang is a link from a page of a flow to a page without it, in the
// flow's language (which a relying party's ui_locales may have chosen):
// with ?ui_locales=, which, unlike the language switch's ?lang=, the
// browser does not remember, and which gives way to the browser's own
// choice and, on My Page, to the account's language.
func inLang(link, lang string) string {
	sep := "?"
	if strings.Contains(link, "?") {
		sep = "&"
	}
	return link + sep + "ui_locales=" + lang
}

// maxReturnTo bounds the own path a login returns to.
const maxReturnTo = 1024

// safeReturnTo keeps return_to only when it is a path of this provider,
// and of a reasonable length (it goes into the login's URLs).
func safeReturnTo(v string) string {
	if v == "" || len(v) > maxReturnTo || !strings.HasPrefix(v, "/") || strings.HasPrefix(v, "//") || strings.HasPrefix(v, "/\\") ||
		strings.ContainsAny(v, "\\\r\n\t") || !utf8.ValidString(v) {
		return "/account"
	}
	u, err := url.Parse(v)
	if err != nil || u.Scheme != "" || u.Host != "" || u.User != nil {
		return "/account"
	}
	return u.RequestURI()
}

// checked reports whether a checkbox's posted value is a checked box: a
// browser sends its value ("on") or nothing; a script may send "0",
// "false", "off" or "no" for an unchecked one.
func checked(v string) bool {
	switch strings.ToLower(strings.TrimSpace(v)) {
	case "", "0", "false", "off", "no":
		return false
	}
	return true
}

func (s *Server) loginSubmit(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	f, ok := s.postedFlow(w, r, "login")
	if !ok {
		return
	}
	email := strings.TrimSpace(r.PostFormValue("email"))
	pw := r.PostFormValue("password")
	remember := checked(r.PostFormValue("remember"))
	if email == "" || pw == "" || len(email) > 254 || len(pw) > 1024 {
		s.renderLogin(w, r, f, http.StatusOK, truncate(email, 254), remember, "invalid_credentials")
		return
	}
	a, ok := s.startPasswordAttempt(w, r, email) // locked until this attempt is counted
	if !ok {
		return
	}
	defer a.unlock()
	locked, counted := throttled(ctx, s.Now(), a.ts...)
	if locked {
		s.Metrics.Login(metrics.StepPassword, metrics.ResultLocked)
		s.renderLogin(w, r, f, http.StatusTooManyRequests, email, remember, "too_many_attempts")
		return
	}
	user, err := s.checkPassword(ctx, a.user, pw)
	if err != nil {
		s.storeFailed(w, r, err)
		return
	}
	if user == nil {
		s.Metrics.Login(metrics.StepPassword, metrics.ResultFailure)
		status, err := s.recordFailures(ctx, s.loginPolicy(), a.keys...)
		if err != nil {
			s.storeFailed(w, r, err)
			return
		}
		s.renderLogin(w, r, f, status, email, remember, failureMessage(status, "invalid_credentials"))
		return
	}
	if !user.DisabledAt.IsZero() {
		// The right password of an account the support desk disabled (idp
		// user disable): said so, to whoever knows the password only, and
		// nothing starts. Its failures are not forgiven.
		s.Metrics.Login(metrics.StepPassword, metrics.ResultDisabled)
		s.renderLogin(w, r, f, http.StatusForbidden, email, remember, "account_disabled")
		return
	}
	if err := s.resetThrottle(ctx, a.keys[0], counted); err != nil {
		s.storeFailed(w, r, err)
		return
	}
	a.unlock()
	s.Metrics.Login(metrics.StepPassword, metrics.ResultSuccess)
	f.UserID, f.AMR, f.Remember, f.Account = user.ID, []string{"pwd"}, remember, a.acct
	f.Typed = "" // shown by the login page only
	f.Stamp = s.stampMark(user)
	if !user.MFAEnabled {
		// Two-step verification turned on since the read above changed the
		// account's stamp: then the store starts no session, or the
		// enabling, which ends the user's other sessions, ends this one.
		f.user = user
		sess, err := s.establish(w, r, f, user, 0)
		if err != nil {
			return
		}
		s.setDeviceCookie(w, deviceLogin, f.Account, f.Stamp)
		s.afterLogin(w, r, f, sess)
		return
	}
	// The second step has IDP_FLOW_LIFETIME from the password step, as
	// the login page had from its start (the store keeps a login's end on
	// record for longer: spentUntil).
	f.expires = s.Now().Add(s.Config.FlowLifetime)
	s.sealLogin(f)
	// The code form answers the password form, as Keycloak's does, rather
	// than a redirect to it: a request fewer for every login. The page's
	// script puts the form's own page, /login/totp?flow=, in the address
	// bar (templates.Page.StepPath). Without it the browser keeps the
	// password's POST in its history: reloading the form, or going Back to
	// it, posts the password again (the browser asks first), which checks
	// it again and answers the same form, or the expired-flow page once the
	// login has finished, as /login/totp does.
	if s.loginFinished(w, r, f) {
		return
	}
	s.renderTOTP(w, r, f, http.StatusOK, "")
}

// loginFinished answers a second step's page of the login f when a
// request of this browser has finished it (Back from the relying party):
// as a login gone (nothing to start again, once it completed: the
// expired-flow page). A browser without a session cookie has not finished
// a login lately, so the common case costs no store call; the form of such
// a page, sent, ends the same way (readSecondStep, loginEnded). False when
// the request is still to be answered.
func (s *Server) loginFinished(w http.ResponseWriter, r *http.Request, f *flow) bool {
	if f.UserID == "" || s.cookie(r, sessionCookie) == "" {
		return false
	}
	sid, err := s.loginSession(r.Context(), f)
	switch {
	case err != nil:
		s.storeFailed(w, r, err)
	case sid != "":
		s.loginGone(w, r, f.loginID, restartExpired)
	}
	return err != nil || sid != ""
}

// failureMessage is the message of a form answering a wrong password or
// code: wrong, or too many attempts once the failure locked the account.
func failureMessage(status int, wrong string) string {
	if status == http.StatusTooManyRequests {
		return "too_many_attempts"
	}
	return wrong
}

// checkPassword returns user (the account of the e-mail entered) when pw
// is its password, nil when there is no such account (user nil) or the
// password is wrong. Both cost one argon2id hash, so neither the answer
// nor its timing tells whether the account exists.
func (s *Server) checkPassword(ctx context.Context, user *store.User, pw string) (*store.User, error) {
	if user == nil {
		s.Hasher.VerifyDummy(ctx, pw)
		return nil, nil
	}
	ok, rehash, err := s.verifyPassword(ctx, user, pw)
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, nil
	}
	if rehash {
		// user was read before the (queued, slow) hashes: only the hash
		// verified here is replaced, never a password changed meanwhile.
		if h, err := s.Hasher.Hash(ctx, pw); err == nil && s.Store.UpgradePasswordHash(ctx, user.ID, user.PasswordHash, h) == nil {
			// The account as it is now (or, if its password changed meanwhile,
			// as it was not: its security stamp is then not the account's,
			// so neither the second step nor the session goes on).
			upgraded := *user
			upgraded.PasswordHash = h
			return &upgraded, nil
		}
	}
	return user, nil
}

// verifyPassword checks pw against the user's stored hash. A stored hash
// the provider cannot read (a row imported or edited by hand, a cost over
// the bounds) is logged and answered as a wrong password: the account's
// owner can still set a new one by a reset link, where an error would
// answer 500 to every login for good.
func (s *Server) verifyPassword(ctx context.Context, u *store.User, pw string) (ok, rehash bool, err error) {
	ok, rehash, err = s.Hasher.Verify(ctx, u.PasswordHash, pw)
	if errors.Is(err, password.ErrMalformed) {
		s.Logger.ErrorContext(ctx, "the account's stored password hash cannot be read; a password reset replaces it", "user", u.ID)
		s.Hasher.VerifyDummy(ctx, pw) // answered no sooner than a wrong password
		return false, false, nil
	}
	return ok, rehash, err
}

// secondStep loads a login flow whose password step has passed.
func (s *Server) secondStep(w http.ResponseWriter, r *http.Request, id string) (*flow, bool) {
	f, ok := s.flowOrError(w, r, id, "login")
	if !ok {
		return nil, false
	}
	if f.UserID == "" {
		http.Redirect(w, r, "/login?flow="+url.QueryEscape(f.id), http.StatusSeeOther)
		return nil, false
	}
	return f, true
}

// postedSecondStep is secondStep for a second step's form, after its CSRF
// check.
func (s *Server) postedSecondStep(w http.ResponseWriter, r *http.Request) (*flow, bool) {
	if !s.requireCSRF(w, r) {
		return nil, false
	}
	return s.secondStep(w, r, r.PostFormValue("flow"))
}

func (s *Server) totpPage(w http.ResponseWriter, r *http.Request) {
	if f, ok := s.secondStep(w, r, r.URL.Query().Get("flow")); ok && !s.loginFinished(w, r, f) {
		s.renderTOTP(w, r, f, http.StatusOK, "")
	}
}

func (s *Server) renderTOTP(w http.ResponseWriter, r *http.Request, f *flow, status int, msg string) {
	s.render(w, r, status, templates.TOTP(templates.TOTPPage{
		Page: s.pageAt(w, r, f, "/login/totp"), Action: "/login/totp", Flow: f.id, Error: msg,
		BackupURL: "/login/backup?flow=" + url.QueryEscape(f.id),
	}))
}

func (s *Server) totpSubmit(w http.ResponseWriter, r *http.Request) {
	f, ok := s.postedSecondStep(w, r)
	if !ok {
		return
	}
	key := s.secondStepKey(r, f.UserID, f.Account, f.Stamp)
	unlock, ok := s.lockAttempts(w, r, key) // held until this attempt is counted
	if !ok {
		return
	}
	defer unlock()
	acct, ok := s.readSecondStep(w, r, f, key)
	if !ok {
		return
	}
	locked, counted := throttled(r.Context(), s.Now(), acct.Throttle)
	if locked {
		s.Metrics.Login(metrics.StepTOTP, metrics.ResultLocked)
		s.renderTOTP(w, r, f, http.StatusTooManyRequests, "too_many_attempts")
		return
	}
	step, err := s.verifyTOTP(acct.TOTP, r.PostFormValue("code"))
	var sess *store.Session
	if err == nil {
		sess, err = s.secondStepDone(w, r, f, acct, counted, unlock, func() (*store.Session, error) {
			return s.establish(w, r, f, acct.User, step)
		})
	}
	if errors.Is(err, errWrongCode) {
		if !s.loginOpen(w, r, f) {
			return // the code was this login's own, spent by its twin
		}
		s.Metrics.Login(metrics.StepTOTP, metrics.ResultFailure)
		status, err := s.secondStepFailed(r, key, f.UserID, "totp")
		if err != nil {
			s.storeFailed(w, r, err)
			return
		}
		s.renderTOTP(w, r, f, status, failureMessage(status, "invalid_code"))
		return
	}
	if errors.Is(err, errAnswered) {
		return
	}
	if err != nil {
		s.storeFailed(w, r, err)
		return
	}
	s.Metrics.Login(metrics.StepTOTP, metrics.ResultSuccess)
	s.afterLogin(w, r, f, sess)
}

// errAnswered is an error already answered to the browser.
var errAnswered = errors.New("answered")

// secondStepDone ends the login f of the account acct.User, whose second
// step passed: start stores its session with the code, spent with it
// (establish with a TOTP code's time step, or the backup code's
// transaction), and returns errWrongCode, unanswered, for a wrong code or
// one spent since it was checked (by a twin request, say), or errAnswered.
// The session is stored and the account's failed codes are forgotten
// (counted: it has some) before its attempt lock is released (unlock), so
// that a twin request waiting for the lock finds the login done
// (loginOpen); then the browser gets its device cookie. Once the session
// is stored the login goes on: failed codes that could not be forgotten
// are only logged (they expire with their throttle), where an error page
// would strand a browser already holding the session's cookie.
func (s *Server) secondStepDone(w http.ResponseWriter, r *http.Request, f *flow, acct *store.SecondStep,
	counted bool, unlock func(), start func() (*store.Session, error)) (*store.Session, error) {
	f.AMR, f.user = []string{"pwd", "otp"}, acct.User
	sess, err := start()
	if err != nil {
		return nil, err
	}
	if err := s.resetThrottle(r.Context(), acct.Throttle.Key, counted); err != nil {
		s.Logger.WarnContext(r.Context(), "a login's earlier failed codes could not be forgotten", "user", acct.User.ID, "err", err)
	}
	unlock()
	s.setDeviceCookie(w, deviceLogin, f.Account, f.Stamp)
	return sess, nil
}

// loginOpen reports whether the login f is still to be finished, when its
// code was found wrong or spent: the login may have ended since the second
// step's read (readSecondStep) by a request with the same form on another
// instance (instances' attempt locks are their own), once that request has
// stored its session; this request is then answered as loginEnded does.
// (Checked only after a wrong code, so a login's second step costs no
// store call more.)
func (s *Server) loginOpen(w http.ResponseWriter, r *http.Request, f *flow) bool {
	sid, err := s.loginSession(r.Context(), f)
	if err != nil {
		s.storeFailed(w, r, err)
		return false
	}
	if sid == "" {
		return true
	}
	s.loginEnded(w, r, f, sid)
	return false
}

// loginEnded answers a step of the login f, which has started its
// account's session sid. Within twinWindow of that, while the session
// lasts, and with another session cookie than that session's (or none),
// the request is the twin of the one that finished the login: the same
// form sent twice (a double-click on 認証する or ログイン), its request
// having waited for the account's attempt lock (a second step stores the
// session before the lock is released) or lost the race to start the
// session (establish). Its code is not a wrong one, no failure is
// counted, and it goes where the login was going (loginDone). A login done
// longer ago, or by the session this browser holds (its form sent again
// after the login: the back button), is a login gone.
func (s *Server) loginEnded(w http.ResponseWriter, r *http.Request, f *flow, sid string) {
	twin := s.userSession(r.Context(), f.UserID, sid)
	if twin == nil || s.Now().Sub(twin.AuthTime) > twinWindow ||
		crypt.Equal(twin.TokenHash, crypt.HashToken(s.cookie(r, sessionCookie))) {
		s.loginGone(w, r, f.loginID, restartExpired)
		return
	}
	s.loginDone(w, r, f, twin)
}

// twinWindow is how long after a login's end a request with the same form
// is taken for its twin (loginEnded): longer than a request waits for the
// account's attempt lock.
const twinWindow = time.Minute

// loginDone answers a step of a login that was completed by another
// request with the same form while it waited, starting the session twin:
// the browser goes where the login was going (the relying party's
// request, or the own page asked for), and its session, if the other
// answer reached it, decides there (as the losing request of a
// double-submitted setting goes to the settings). It gets no session of
// its own.
//
// For a relying party's request, the other request's session is the login
// of this request too (prompt=login and max_age answered by it): when the
// browser follows with that session's cookie, a continue flow bound to it
// goes on as right after the login; with any other, the request is decided
// like any.
func (s *Server) loginDone(w http.ResponseWriter, r *http.Request, f *flow, twin *store.Session) {
	s.clearCookie(w, r, restartCookie) // the login is done: nothing to start again
	if f.Authorize == "" {
		http.Redirect(w, r, safeReturnTo(f.ReturnTo), http.StatusSeeOther)
		return
	}
	next := &flow{Kind: "continue", Authorize: f.Authorize, RequestedAt: f.RequestedAt, ReturnTo: f.ReturnTo,
		Lang: f.Lang, UserID: f.UserID, Stage: "twin"}
	next.bindSession(twin)
	if err := s.newFlow(r.Context(), w, r, next); err == nil {
		http.Redirect(w, r, "/login/continue?flow="+url.QueryEscape(next.id), http.StatusSeeOther)
		return
	}
	http.Redirect(w, r, oidc.PathAuthorize+"?"+f.Authorize, http.StatusSeeOther)
}

// userSession is the user's unexpired session with the id sid; nil when
// there is none (or the store fails).
func (s *Server) userSession(ctx context.Context, userID, sid string) *store.Session {
	list, err := s.Store.ListUserSessions(ctx, userID, s.Now())
	if err != nil {
		return nil
	}
	for i := range list {
		if list[i].ID == sid {
			return &list[i]
		}
	}
	return nil
}

// readSecondStep reads the login's account, its authenticator, the
// second-step throttle key (secondStepKey) and whether the login has ended
// in one round trip. An account deleted since the password step ends the
// login; a login that has started its session is answered before any code
// is checked (loginEnded: a double-submit's twin, or a form sent again
// later), so its form spends no code and counts no failure.
func (s *Server) readSecondStep(w http.ResponseWriter, r *http.Request, f *flow, key string) (*store.SecondStep, bool) {
	acct, err := s.Store.GetSecondStep(r.Context(), f.UserID, key, loginKey(f))
	if errors.Is(err, store.ErrNotFound) {
		s.loginGone(w, r, f.loginID, restartChanged) // the account was deleted
		return nil, false
	}
	if err != nil {
		s.storeFailed(w, r, err)
		return nil, false
	}
	if acct.LoginSession != "" {
		s.loginEnded(w, r, f, acct.LoginSession)
		return nil, false
	}
	if !crypt.Equal(f.Stamp, s.stampMark(acct.User)) {
		// A new password, or two-step verification turned off and on,
		// since this login's password step (or a flow from before stamps).
		s.loginGone(w, r, f.loginID, restartChanged)
		return nil, false
	}
	return acct, true
}

// stampMark identifies the account's credentials as u holds them (its
// security stamp), for a login flow and a device cookie to tell whether
// they are still the account's: a keyed hash, bound to the account.
func (s *Server) stampMark(u *store.User) []byte {
	return s.Key.MAC("account-stamp", []byte(u.ID+"\x00"+u.SecurityStamp))[:16]
}

var errWrongCode = errors.New("wrong code")

// verifyTOTP returns the time step of code if it is a code of the
// authenticator t (nil: none) later than the last accepted one;
// errWrongCode otherwise. The step is spent with the login's session
// (store.StartSession), in one atomic statement, so of two concurrent
// requests with the same code only one passes.
func (s *Server) verifyTOTP(t *store.TOTP, code string) (int64, error) {
	if t == nil {
		return 0, errWrongCode
	}
	secret, err := mfa.OpenSecret(s.Key, t.UserID, t.SecretEnc)
	if err != nil {
		return 0, err
	}
	step, err := mfa.Verify(secret, code, s.Now(), t.LastStep)
	if err != nil {
		return 0, errWrongCode
	}
	return step, nil
}

// secondStepFailed counts a failed code of the account userID against key
// (secondStepKey) and records it; it answers 429 once the key is locked.
func (s *Server) secondStepFailed(r *http.Request, key, userID, method string) (int, error) {
	ctx := r.Context()
	th, err := s.Store.RecordFailure(ctx, key, s.mfaPolicy(), s.Now())
	if err != nil {
		return 0, err
	}
	s.audit(r, userID, "mfa.code_failed", map[string]any{"method": method})
	if th.LockedUntil.After(s.Now()) {
		noteLock(ctx, th.LockedUntil)
		s.Metrics.Lockout(metrics.LockoutMFA)
		s.audit(r, userID, "mfa.locked", map[string]any{"until": th.LockedUntil.UTC().Format("2006-01-02T15:04:05Z")})
		return http.StatusTooManyRequests, nil
	}
	return http.StatusOK, nil
}

func (s *Server) backupPage(w http.ResponseWriter, r *http.Request) {
	if f, ok := s.secondStep(w, r, r.URL.Query().Get("flow")); ok && !s.loginFinished(w, r, f) {
		s.renderBackup(w, r, f, http.StatusOK, "")
	}
}

func (s *Server) renderBackup(w http.ResponseWriter, r *http.Request, f *flow, status int, msg string) {
	s.render(w, r, status, templates.BackupCodeLogin(templates.BackupCodePage{
		Page: s.page(w, r, f), Action: "/login/backup", Flow: f.id, Error: msg,
		TOTPURL: "/login/totp?flow=" + url.QueryEscape(f.id),
	}))
}

func (s *Server) backupSubmit(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	f, ok := s.postedSecondStep(w, r)
	if !ok {
		return
	}
	key := s.secondStepKey(r, f.UserID, f.Account, f.Stamp)
	unlock, ok := s.lockAttempts(w, r, key) // held until this attempt is counted
	if !ok {
		return
	}
	defer unlock()
	acct, ok := s.readSecondStep(w, r, f, key)
	if !ok {
		return
	}
	locked, counted := throttled(r.Context(), s.Now(), acct.Throttle)
	if locked {
		s.Metrics.Login(metrics.StepBackup, metrics.ResultLocked)
		s.renderBackup(w, r, f, http.StatusTooManyRequests, "too_many_attempts")
		return
	}
	var remaining int
	sess, err := s.secondStepDone(w, r, f, acct, counted, unlock, func() (sess *store.Session, err error) {
		sess, remaining, err = s.startWithBackupCode(w, r, f, acct.User, r.PostFormValue("backup_code"))
		return sess, err
	})
	if errors.Is(err, errWrongCode) {
		if !s.loginOpen(w, r, f) {
			return // the code was this login's own, spent by its twin
		}
		s.Metrics.Login(metrics.StepBackup, metrics.ResultFailure)
		status, err := s.secondStepFailed(r, key, f.UserID, "backup_code")
		if err != nil {
			s.storeFailed(w, r, err)
			return
		}
		s.renderBackup(w, r, f, status, failureMessage(status, "invalid_backup_code"))
		return
	}
	if err != nil {
		return // answered
	}
	s.Metrics.Login(metrics.StepBackup, metrics.ResultSuccess)
	if remaining > 2 {
		s.afterLogin(w, r, f, sess)
		return
	}
	// Few codes left: say so before going on, and offer new ones.
	next := &flow{Kind: "continue", Authorize: f.Authorize, RequestedAt: f.RequestedAt, ReturnTo: f.ReturnTo,
		Lang: f.Lang, UserID: f.UserID, Remaining: remaining}
	next.bindSession(sess)
	if err := s.newFlow(ctx, w, r, next); err != nil {
		s.storeFailed(w, r, err)
		return
	}
	// The notice is a page of its own (post/redirect/get): it can be
	// reloaded, and its language switch has a page to link to.
	http.Redirect(w, r, "/login/notice?flow="+url.QueryEscape(next.id), http.StatusSeeOther)
}

// lowCodesNotice says that few backup codes are left, after a login with
// one of them, and offers new ones before going on.
func (s *Server) lowCodesNotice(w http.ResponseWriter, r *http.Request) {
	f, sess, ok := s.continueFlow(w, r)
	if !ok {
		return
	}
	if sess == nil {
		s.flowFailed(w, r, errFlowGone)
		return
	}
	p := s.page(w, r, f)
	s.render(w, r, http.StatusOK, templates.LowBackupCodes(templates.LowBackupCodesPage{
		Page: p, Remaining: f.Remaining,
		ReplaceURL:  inLang("/account/2fa/backup-codes?continue="+url.QueryEscape(f.id), p.Lang),
		ContinueURL: "/login/continue?flow=" + url.QueryEscape(f.id),
	}))
}

// startWithBackupCode starts the session of the login f of the account u
// whose backup code is input, and returns it with the number of unused
// codes left. The session is started, the code spent and the notice of it
// queued in one transaction: a request that finds the code spent by its
// twin finds the twin's session too (loginOpen). errWrongCode, unanswered,
// for a wrong or spent code (nothing is kept); errAnswered when the
// request was answered (sessionRefused).
func (s *Server) startWithBackupCode(w http.ResponseWriter, r *http.Request, f *flow, u *store.User, input string) (*store.Session, int, error) {
	code, ok := mfa.NormalizeBackupCode(input)
	if !ok {
		return nil, 0, errWrongCode // not a code: no transaction
	}
	var (
		sess      *store.Session
		token     string
		remaining int
	)
	err := s.changeAccount(r, u, func(tx context.Context) (accountChange, error) {
		var err error
		if sess, token, err = s.startSession(tx, r, f, u, 0); err != nil {
			return accountChange{}, err
		}
		remaining, err = s.useBackupCode(tx, u.ID, code)
		return accountChange{
			Event: "mfa.backup_code_used", Detail: map[string]any{"remaining": remaining},
			Mail: mail.BackupCodeUsed, Notice: mail.Notice{Remaining: remaining},
		}, err
	})
	if errors.Is(err, errWrongCode) {
		return nil, 0, err
	}
	if err != nil {
		return nil, 0, s.sessionRefused(w, r, f, err)
	}
	s.endPreviousSession(r, u.ID)
	s.sessionStarted(w, r, token, sess)
	return sess, remaining, nil
}

// useBackupCode consumes the backup code canonical (NormalizeBackupCode's)
// atomically and returns how many unused ones remain.
func (s *Server) useBackupCode(ctx context.Context, userID, canonical string) (int, error) {
	remaining, err := s.Store.UseBackupCode(ctx, userID, mfa.BackupCodeHash(s.Key, userID, canonical), s.Now())
	if errors.Is(err, store.ErrConsumed) || errors.Is(err, store.ErrNotFound) {
		return 0, errWrongCode
	}
	return remaining, err
}

// establish finishes the login and starts the session of its user u, as
// the login read the account: both or neither, exactly once, and only
// while u's security stamp is still the account's (new credentials since
// the login's steps read it end the login as an expired one would:
// loginGone). totpStep (0: none) is the time step of the login's TOTP
// code, spent with the session: errWrongCode, unanswered, when it was
// spent already. errAnswered when the request was answered.
//
// A login for a relying party's request (f.Authorize) answers that request
// first, into f.answer for afterLogin, with the session it is about to
// store: the code it issues is held (oidc.Storage.HoldCode) and stored with
// the session, in one store call instead of two, and the answer goes out
// only once both are stored. When the session is refused, the answer is
// dropped and its code was never stored nor shown.
func (s *Server) establish(w http.ResponseWriter, r *http.Request, f *flow, u *store.User, totpStep int64) (*store.Session, error) {
	sess, token := s.newSession(r, f)
	var held *oidc.HeldCode
	if f.Authorize != "" {
		ctx, h := s.Provider.Storage.HoldCode(r.Context())
		f.answer, held = &heldAnswer{header: http.Header{}}, h
		s.resume(f.answer, r.WithContext(ctx), f, sess)
	}
	if err := s.storeSession(r.Context(), f, u, totpStep, sess, held.Record()); err != nil {
		f.answer = nil
		return nil, s.sessionRefused(w, r, f, err)
	}
	held.Stored()
	s.endPreviousSession(r, u.ID)
	s.sessionStarted(w, r, token, sess)
	return sess, nil
}

// sessionStarted gives the browser the session sess that its login
// started, with the cookie's token: the login is done, nothing is left to
// start again.
func (s *Server) sessionStarted(w http.ResponseWriter, r *http.Request, token string, sess *store.Session) {
	s.setSessionCookie(w, token, sess)
	s.clearCookie(w, r, restartCookie)
}

// sessionRefused answers the login f whose session could not be started
// (startSession's err) and returns errAnswered; or errWrongCode,
// unanswered, when its TOTP code was spent meanwhile.
func (s *Server) sessionRefused(w http.ResponseWriter, r *http.Request, f *flow, err error) error {
	if errors.Is(err, store.ErrConsumed) {
		return errWrongCode
	}
	if errors.Is(err, store.ErrNotFound) {
		// Finished by another request (its twin, such as the same login
		// form sent twice, goes where the login was going: loginEnded), or
		// the account changed (the store then starts no session).
		sid, err := s.loginSession(r.Context(), f)
		switch {
		case err != nil:
			s.storeFailed(w, r, err) // which of the two is not known: the form may be sent again
		case sid != "":
			s.loginEnded(w, r, f, sid)
		default:
			s.loginGone(w, r, f.loginID, restartChanged)
		}
		return errAnswered
	}
	s.storeFailed(w, r, err)
	return errAnswered
}

func (s *Server) afterLogin(w http.ResponseWriter, r *http.Request, f *flow, sess *store.Session) {
	if f.answer != nil {
		f.answer.writeTo(w)
		return
	}
	if f.Authorize != "" {
		s.resume(w, r, f, sess)
		return
	}
	http.Redirect(w, r, safeReturnTo(f.ReturnTo), http.StatusSeeOther)
}

// continueFlow loads the query's "continue" flow (after a login with one
// of the last backup codes, or a double-submit's twin) and the browser's
// session: nil when it has none; a session of another user ends it.
func (s *Server) continueFlow(w http.ResponseWriter, r *http.Request) (*flow, *store.Session, bool) {
	f, ok := s.flowOrError(w, r, r.URL.Query().Get("flow"), "continue")
	if !ok {
		return nil, nil, false
	}
	sess, err := s.currentSession(r)
	if err != nil {
		s.storeFailed(w, r, err)
		return nil, nil, false
	}
	if sess != nil && sess.UserID != f.UserID {
		s.flowFailed(w, r, errFlowGone)
		return nil, nil, false
	}
	return f, sess, true
}

// continueLogin goes on after the few-backup-codes notice.
func (s *Server) continueLogin(w http.ResponseWriter, r *http.Request) {
	f, sess, ok := s.continueFlow(w, r)
	if !ok {
		return
	}
	if sess == nil {
		// Not signed in (a double-submit's twin whose browser did not keep
		// the other answer's cookie, or signed out since): the relying
		// party's request, or the page asked for, as any (a login).
		s.afterLogin(w, r, f, nil)
		return
	}
	if err := s.finishFlow(r.Context(), f); err != nil {
		s.flowFailed(w, r, err)
		return
	}
	// Right after the login only with the session it started: another
	// (a login in another tab meanwhile) is taken as any session is. A
	// double-submit's twin goes on so only moments after that login
	// (twinWindow), not for the flow's lifetime.
	fresh := f.freshSession(sess)
	if f.Stage == "twin" && fresh != nil && s.Now().Sub(fresh.AuthTime) > twinWindow {
		fresh = nil
	}
	s.afterLogin(w, r, f, fresh)
}
