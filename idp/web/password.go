package web

import (
	"context"
	"encoding/hex"
	"errors"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/kamera-id/idp/idp/crypt"
	"github.com/kamera-id/idp/idp/mail"
	"github.com/kamera-id/idp/idp/password"
	"github.com/kamera-id/idp/idp/store"
	"github.com/kamera-id/idp/templates"
)

// Password reset by e-mail, password change on My Page, the security
// e-mails and the sessions list.

// notify queues a security e-mail to the user; a failure is logged, never
// shown (the change it reports has happened).
func (s *Server) notify(r *http.Request, u *store.User, kind string, n mail.Notice) {
	if err := s.Outbox.Enqueue(r.Context(), u.Email, s.securityMail(r, u, kind, n)); err != nil {
		s.Logger.ErrorContext(r.Context(), "security e-mail not queued", append(logAttrs(r), "kind", kind, "err", err)...)
	}
}

// securityMail is the e-mail of kind to u, in u's language.
func (s *Server) securityMail(r *http.Request, u *store.User, kind string, n mail.Notice) mail.Message {
	n.Lang, n.Product, n.When = u.Locale, s.Config.BrandName, s.Now()
	if n.IP == "" {
		n.IP = s.clientIP(r)
	}
	if n.AccountURL == "" && kind != mail.ResetRequested {
		n.AccountURL = s.Config.BaseURL() + "/account"
	}
	return mail.Compose(kind, n)
}

// accountChange is a change to an account's security and how it is
// reported: an audit event, and a security e-mail unless Mail is "".
type accountChange struct {
	Event  string
	Detail map[string]any
	Mail   string
	Notice mail.Notice
}

// changeAccount makes a change to u's account (apply, with the transaction's
// context for every store call; it says how the change is reported)
// together with its audit event and its security e-mail, in one transaction: the change is not made unless its
// notice is queued, so no crash or failure in between can make it silently.
// The e-mail is sent by the outbox after the commit.
func (s *Server) changeAccount(r *http.Request, u *store.User, apply func(tx context.Context) (accountChange, error)) error {
	err := s.inTx(r.Context(), func(tx context.Context) error {
		c, err := apply(tx)
		if err != nil {
			return err
		}
		if c.Event == "" {
			return nil // nothing changed: nothing to record or mail
		}
		if err := s.Store.AddAuditEvent(tx, s.auditEvent(r, u.ID, c.Event, c.Detail)); err != nil {
			return err
		}
		if c.Mail == "" {
			return nil
		}
		return s.Outbox.Enqueue(tx, u.Email, s.securityMail(r, u, c.Mail, c.Notice))
	})
	if err != nil {
		return err
	}
	s.Outbox.Nudge()
	return nil
}

// inTx runs fn in a store transaction (fn's context carries it) and
// commits it when fn returns nil; otherwise nothing of it is kept.
func (s *Server) inTx(ctx context.Context, fn func(tx context.Context) error) error {
	tx, err := s.Store.BeginTx(ctx)
	if err != nil {
		return err
	}
	defer func() { _ = s.Store.Rollback(tx) }()
	if err := fn(tx); err != nil {
		return err
	}
	return s.Store.Commit(tx)
}

// changeCredentials is changeAccount for a change of the account's
// credentials (a new password, 2FA on or off) made from a browser that has
// just shown it is the owner's: on My Page (whose session stays, with a
// new token: rotateSession), or with a reset link from the account's mail
// (which ends every session). The browser's device cookie was for the old
// credentials, so it gets one for the new, for trust (a reset's counts for
// the password step only), bound to the stamp the change's own
// transaction wrote (read in it: never one a later change wrote for
// someone else).
func (s *Server) changeCredentials(w http.ResponseWriter, r *http.Request, u *store.User, trust deviceTrust, apply func(tx context.Context) (accountChange, error)) error {
	var (
		changed *store.User
		token   string
		sess    *store.Session
	)
	err := s.changeAccount(r, u, func(tx context.Context) (accountChange, error) {
		c, err := apply(tx)
		if err == nil {
			changed, err = s.Store.GetUser(tx, u.ID)
		}
		if err == nil {
			token, sess, err = s.rotateSession(tx, r, u.ID)
		}
		return c, err
	})
	if err == nil {
		s.setDeviceCookie(w, trust, s.accountThrottleKey(changed.Email), s.stampMark(changed))
		s.setSessionCookie(w, token, sess)
	}
	return err
}

// --- Asking for a reset link. ---

// resetPolicy counts an e-mail address's reset requests.
func (s *Server) resetPolicy() store.ThrottlePolicy {
	return store.ThrottlePolicy{MaxFailures: s.Config.ResetMaxPerEmail, BaseLockout: s.Config.ResetLockout, MaxLockout: max64(s.Config.ResetLockout, time.Hour)}
}

// resetIPPolicy counts a client address's reset requests, forgiving one
// per IDP_RESET_LOCKOUT without one, as loginIPPolicy does its failures.
func (s *Server) resetIPPolicy() store.ThrottlePolicy {
	p := s.resetPolicy()
	p.MaxFailures, p.Forgive = s.Config.ResetMaxPerIP, s.Config.ResetLockout
	return p
}

func max64(a, b time.Duration) time.Duration {
	if a > b {
		return a
	}
	return b
}

// resetThrottleKeys count reset requests per address (known or not) and
// per client IP.
func (s *Server) resetThrottleKeys(r *http.Request, email string) []string {
	mac := s.Key.MAC("throttle", []byte(strings.ToLower(strings.TrimSpace(email))))
	return []string{"reset:acct:" + hex.EncodeToString(mac[:16]), "reset:ip:" + ipThrottleKey(s.clientIP(r))}
}

func (s *Server) forgotPassword(w http.ResponseWriter, r *http.Request) {
	action, login, f := s.forgotLinks(r)
	s.render(w, r, http.StatusOK, templates.ForgotPassword(templates.ForgotPasswordPage{
		Page: s.page(w, r, f), Action: action, LoginURL: login,
	}))
}

// forgotLinks are the forgot-password form's action and its way back to
// the login it was opened from (?flow=, kept through the form), so that a
// customer who came from a relying party's login goes back to that login
// (a flow gone by then starts again where it began); else /login. f is
// that login while it lasts (nil: none), for the pages' language and look.
func (s *Server) forgotLinks(r *http.Request) (action, login string, f *flow) {
	q := r.URL.Query()
	id := queryFlowID(q.Get("flow"), maxFieldLen) // a sealed login
	if id == "" {
		return "/forgot-password", "/login", nil
	}
	if open, err := s.openLogin(r, id); err == nil {
		f = open
	}
	carry := "?flow=" + url.QueryEscape(id)
	return "/forgot-password" + carry, "/login" + carry, f
}

// forgotPasswordSubmit answers with the same page whether or not the
// address has an account, and whether or not a limit held the mail back,
// and in the same time: both answers are sent after the same store calls
// (the limits, the address looked up), and the link for a known address is
// made and its mail queued after the answer, by work of its own
// (afterAnswer): had the handler done it, the connection would show it (its
// next request, or its close, would wait for it).
func (s *Server) forgotPasswordSubmit(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	if !s.requireCSRF(w, r) {
		return
	}
	action, login, f := s.forgotLinks(r)
	s.keepResetReturn(w, r)
	email := strings.TrimSpace(r.PostFormValue("email"))
	if email == "" || len(email) > 254 || !strings.Contains(email, "@") {
		s.render(w, r, http.StatusOK, templates.ForgotPassword(templates.ForgotPasswordPage{
			Page: s.page(w, r, f), Action: action, LoginURL: login, Email: truncate(email, 254), Error: "missing_fields",
		}))
		return
	}
	keys := s.resetThrottleKeys(r, email)
	unlock, ok := s.lockAttempts(w, r, keys...) // held until this request is counted (limits.go)
	if !ok {
		return
	}
	defer unlock()
	locked, _, err := s.lockedOut(ctx, keys...)
	if err != nil {
		s.storeFailed(w, r, err)
		return
	}
	var u *store.User
	if !locked {
		if u, err = s.resetRequested(ctx, email, keys); err != nil {
			s.storeFailed(w, r, err)
			return
		}
	} else {
		s.Logger.InfoContext(ctx, "password reset request held back by its limit", logAttrs(r)...)
	}
	unlock()
	s.renderComplete(w, r, http.StatusOK, templates.Message(templates.MessagePage{
		Page: s.page(w, r, f), Heading: "reset_sent_heading", Message: "reset_sent_text",
		LinkURL: login, LinkText: "back_to_login",
	}))
	if u != nil {
		s.afterAnswer(r, func(r *http.Request) { s.sendResetLink(r, u) })
	}
}

// afterAnswerTimeout bounds the work a handler leaves for after its answer.
const afterAnswerTimeout = 10 * time.Second

// afterWork is the work requests left for after their answers: what runs
// and whether Wait has been called.
type afterWork struct {
	mu      sync.Mutex
	closing bool
	running sync.WaitGroup
}

// afterAnswer runs work for r on a goroutine of its own, which the handler
// does not wait for. The work gets a copy of r whose context outlives the
// client (which may hang up once it has the answer) for afterAnswerTimeout;
// Wait waits for all such work. Once Wait has been called (a handler still
// running past the shutdown's grace), the work runs in the handler, before
// its answer ends: nothing starts that Wait would not see.
func (s *Server) afterAnswer(r *http.Request, work func(r *http.Request)) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(r.Context()), afterAnswerTimeout)
	r = r.Clone(ctx)
	run := func() {
		defer cancel()
		work(r)
	}
	a := &s.after
	a.mu.Lock()
	closing := a.closing
	if !closing {
		a.running.Go(run)
	}
	a.mu.Unlock()
	if closing {
		run()
	}
}

// Wait waits for the work that requests left for after their answers (a
// reset link being made and its mail queued), each bounded by
// afterAnswerTimeout: call it once the listeners have shut down, before
// the store is closed.
func (s *Server) Wait() {
	s.after.mu.Lock()
	s.after.closing = true
	s.after.mu.Unlock()
	s.after.running.Wait()
}

// resetRequested counts the request against the address's and the IP's
// limits and returns the account, or nil when the address has none.
func (s *Server) resetRequested(ctx context.Context, email string, keys []string) (*store.User, error) {
	for i, k := range keys {
		p := s.resetPolicy()
		if i > 0 {
			p = s.resetIPPolicy()
		}
		if _, err := s.Store.RecordFailure(ctx, k, p, s.Now()); err != nil {
			return nil, err
		}
	}
	u, err := s.Store.GetUserByEmail(ctx, email)
	if errors.Is(err, store.ErrNotFound) || err == nil && !u.DisabledAt.IsZero() {
		return nil, nil // a disabled account gets no link either, and the same page
	}
	return u, err
}

// sendResetLink makes a reset link for u and queues its mail. It runs after
// the answer was sent, so a failure is logged: the user, told to expect a
// mail that does not come, asks again.
func (s *Server) sendResetLink(r *http.Request, u *store.User) {
	ctx := r.Context()
	token := crypt.RandomToken(32)
	now := s.Now()
	if err := s.Store.CreatePasswordReset(ctx, &store.PasswordReset{
		TokenHash: crypt.HashToken(token), UserID: u.ID, CreatedAt: now, ExpiresAt: now.Add(s.Config.PasswordResetTTL),
	}); errors.Is(err, store.ErrNotFound) {
		return // disabled or deleted since it was read: no link, as for an unknown address
	} else if err != nil {
		s.Logger.ErrorContext(ctx, "password reset link not made", append(logAttrs(r), "err", err)...)
		return
	}
	s.audit(r, u.ID, "password.reset_requested", nil)
	s.notify(r, u, mail.ResetRequested, mail.Notice{
		Link:  s.Config.BaseURL() + "/reset-password?token=" + url.QueryEscape(token),
		Valid: s.Config.PasswordResetTTL,
	})
}

// --- Using the link. ---

// resetToken reads the link's token (query or form) and finds it unused
// and unexpired; nil when it is not.
func (s *Server) resetToken(r *http.Request, token string) (*store.PasswordReset, error) {
	if token == "" || len(token) > 128 {
		return nil, nil
	}
	rec, err := s.Store.GetPasswordReset(r.Context(), crypt.HashToken(token), s.Now())
	if errors.Is(err, store.ErrNotFound) {
		return nil, nil
	}
	return rec, err
}

func (s *Server) resetLinkInvalid(w http.ResponseWriter, r *http.Request) {
	s.render(w, r, http.StatusGone, templates.Message(templates.MessagePage{
		Page: s.page(w, r, nil), Heading: "reset_link_invalid_heading", Message: "reset_link_invalid",
		LinkURL: "/forgot-password", LinkText: "request_new_link",
	}))
}

// renderResetForm shows the new-password form of a reset link of the
// account u, in the account's language (its mail's) unless this browser
// chose one.
func (s *Server) renderResetForm(w http.ResponseWriter, r *http.Request, status int, token string, u *store.User, msg string) {
	s.render(w, r, status, templates.NewPassword(templates.NewPasswordPage{
		Page: s.page(w, r, inLocale(u)), Action: "/reset-password", Token: token, Email: u.Email, Error: msg,
	}))
}

// resetCookie carries the link's token from the mail's URL to the form, so
// that the token leaves the address bar and the browser's history.
const resetCookie = "idp_reset"

// resetPasswordPage opens the link: a valid token moves into a cookie and
// the browser is sent to /reset-password without it, which shows the form
// (with the token in a hidden field for the post).
func (s *Server) resetPasswordPage(w http.ResponseWriter, r *http.Request) {
	fromURL := r.URL.Query().Has("token")
	token := r.URL.Query().Get("token")
	if !fromURL {
		token = s.cookie(r, resetCookie)
	}
	rec, err := s.resetToken(r, token)
	if err != nil {
		s.storeFailed(w, r, err)
		return
	}
	if rec == nil {
		s.setCookie(w, resetCookie, "", -1)
		s.resetLinkInvalid(w, r)
		return
	}
	if fromURL {
		s.setCookie(w, resetCookie, token, max(rec.ExpiresAt.Sub(s.Now()), time.Second))
		http.Redirect(w, r, "/reset-password", http.StatusSeeOther)
		return
	}
	u, err := s.Store.GetUser(r.Context(), rec.UserID)
	if err != nil {
		s.storeFailed(w, r, err)
		return
	}
	s.renderResetForm(w, r, http.StatusOK, token, u, "")
}

// newPasswordProblem checks the two new-password fields; "" when fine.
func newPasswordProblem(r *http.Request, email string) string {
	pw, again := r.PostFormValue("new_password"), r.PostFormValue("new_password_confirm")
	if p := password.Problem(pw, email); p != "" {
		return p
	}
	if !crypt.Equal([]byte(pw), []byte(again)) {
		return "password_mismatch"
	}
	return ""
}

func (s *Server) resetPasswordSubmit(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	if !s.requireCSRF(w, r) {
		return
	}
	token := r.PostFormValue("token")
	rec, err := s.resetToken(r, token)
	if err != nil {
		s.storeFailed(w, r, err)
		return
	}
	if rec == nil {
		s.resetLinkInvalid(w, r)
		return
	}
	u, err := s.Store.GetUser(ctx, rec.UserID)
	if err != nil {
		s.storeFailed(w, r, err)
		return
	}
	if !u.DisabledAt.IsZero() {
		s.resetLinkInvalid(w, r) // a link sent before the account was disabled
		return
	}
	if msg := newPasswordProblem(r, u.Email); msg != "" {
		s.renderResetForm(w, r, http.StatusOK, token, u, msg)
		return
	}
	hash, err := s.Hasher.Hash(ctx, r.PostFormValue("new_password"))
	if err != nil {
		s.storeFailed(w, r, err)
		return
	}
	// One transaction: the token is used, the password set, every session
	// ended, the event recorded and the notice queued, or none of it. The
	// browser, which has just shown it reads the account's mail, gets a
	// device cookie for the new credentials' password step: someone who
	// keeps the account locked does not lock its owner out of the browser
	// that reset the password (its codes still count against the account's
	// key: the mail is not the second factor).
	won, err := s.resetInTx(w, r, token, u, hash)
	if err != nil {
		s.storeFailed(w, r, err)
		return
	}
	if !won {
		s.resetLinkInvalid(w, r)
		return
	}
	// The account's password failures no longer matter.
	if err := s.Store.ResetThrottle(ctx, s.passwordThrottleKeys(r, u.Email)[0]); err != nil {
		s.Logger.WarnContext(ctx, "login throttle not reset", append(logAttrs(r), "err", err)...)
	}
	s.setCookie(w, sessionCookie, "", -1)
	s.setCookie(w, resetCookie, "", -1)
	s.render(w, r, http.StatusOK, templates.Message(templates.MessagePage{
		Page: s.page(w, r, inLocale(u)), Heading: "reset_done_heading", Message: "reset_done_text",
		LinkURL: s.takeResetReturn(w, r), LinkText: "login",
	}))
}

// --- Back to where the login began, after a reset. ---
//
// A customer who asks for the link from a login (the forgot-password form
// of a ?flow=, from the login page's link) and sets the new password in the
// same browser goes back to where that login began, as at Keycloak: the
// completion page's login link starts the relying party's request again
// (the camera viewer, not My Page), or the login for the My Page path it
// was for. Where to go is kept in a cookie (idp_reset_return, sealed with
// the master key: it holds the relying party's request) for the link's
// lifetime, set whether or not the address has an account (the answers
// stay alike). Another browser (the mail opened on a phone) gets the login
// page, as before.

const resetReturnCookie = "idp_reset_return"

var resetReturnAAD = []byte("reset_return")

// keepResetReturn gives the browser where the login of the forgot-password
// form's ?flow= began; a login left open too long still says that.
func (s *Server) keepResetReturn(w http.ResponseWriter, r *http.Request) {
	id := queryFlowID(r.URL.Query().Get("flow"), maxFieldLen)
	if id == "" {
		return
	}
	f, _ := s.openLogin(r, id)
	if f == nil {
		return // not a login of this browser
	}
	if v := s.seal([]byte(f.startTarget()), resetReturnAAD); len(v) <= maxRestartCookie {
		s.setCookie(w, resetReturnCookie, v, s.Config.PasswordResetTTL)
	}
}

// takeResetReturn is where the completed reset's login link goes (see
// above), and clears the cookie that said so.
func (s *Server) takeResetReturn(w http.ResponseWriter, r *http.Request) string {
	v := s.cookie(r, resetReturnCookie)
	if v == "" {
		return "/login"
	}
	s.setCookie(w, resetReturnCookie, "", -1)
	if target, ok := s.open(v, resetReturnAAD); ok && isStartTarget(string(target)) {
		return string(target)
	}
	return "/login"
}

// errResetUsed: the reset link was used, or expired, meanwhile.
var errResetUsed = errors.New("reset link used")

// resetInTx uses the token and applies the reset, as a change of the
// account's credentials (changeCredentials); false when the token was used
// (or expired) meanwhile.
func (s *Server) resetInTx(w http.ResponseWriter, r *http.Request, token string, u *store.User, hash string) (bool, error) {
	err := s.changeCredentials(w, r, u, devicePassword, func(tx context.Context) (accountChange, error) {
		now := s.Now()
		uid, err := s.Store.ConsumePasswordReset(tx, crypt.HashToken(token), now)
		if errors.Is(err, store.ErrConsumed) || (err == nil && uid != u.ID) {
			return accountChange{}, errResetUsed
		}
		if err != nil {
			return accountChange{}, err
		}
		if err := s.Store.UpdatePassword(tx, u.ID, hash, now); err != nil {
			return accountChange{}, err
		}
		// The link came by mail to the account's address: the address is theirs.
		if err := s.Store.MarkEmailVerified(tx, u.ID, now); err != nil {
			return accountChange{}, err
		}
		if _, err := s.Store.DeleteUserSessions(tx, u.ID, ""); err != nil {
			return accountChange{}, err
		}
		return accountChange{Event: "password.reset", Mail: mail.PasswordReset}, nil
	})
	if errors.Is(err, errResetUsed) {
		return false, nil
	}
	return err == nil, err
}

// --- Password change on My Page. ---

// renderChangePassword shows the password change form, with the message
// msg about the current password (currentWrong) or the new one.
func (s *Server) renderChangePassword(w http.ResponseWriter, r *http.Request, status int, u *store.User, msg string, currentWrong bool) {
	s.render(w, r, status, templates.NewPassword(templates.NewPasswordPage{
		Page: s.accountPage(w, r, u), Action: "/account/password", AskCurrent: true, Email: u.Email,
		CancelURL: "/account", Error: msg, CurrentWrong: currentWrong,
	}))
}

func (s *Server) changePasswordPage(w http.ResponseWriter, r *http.Request) {
	_, u, ok := s.requireUser(w, r)
	if !ok {
		return
	}
	s.renderChangePassword(w, r, http.StatusOK, u, "", false)
}

func (s *Server) changePasswordSubmit(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	sess, u, ok := s.requirePostingUser(w, r)
	if !ok {
		return
	}
	status, msg, err := s.reauthenticate(r, u)
	if err != nil {
		s.storeFailed(w, r, err)
		return
	}
	currentWrong := msg != ""
	if msg == "" {
		msg = newPasswordProblem(r, u.Email)
	}
	if msg != "" {
		s.renderChangePassword(w, r, status, u, msg, currentWrong)
		return
	}
	hash, err := s.Hasher.Hash(ctx, r.PostFormValue("new_password"))
	if err != nil {
		s.storeFailed(w, r, err)
		return
	}
	err = s.changeCredentials(w, r, u, deviceLogin, func(tx context.Context) (accountChange, error) {
		c := accountChange{Event: "password.changed", Mail: mail.PasswordChanged}
		if err := s.Store.UpdatePassword(tx, u.ID, hash, s.Now()); err != nil {
			return c, err
		}
		_, err := s.Store.DeleteUserSessions(tx, u.ID, sess.ID)
		return c, err
	})
	if err != nil {
		s.storeFailed(w, r, err)
		return
	}
	http.Redirect(w, r, "/account?notice=password_changed", http.StatusSeeOther)
}

// --- Sessions. ---

func (s *Server) sessionsPage(w http.ResponseWriter, r *http.Request) {
	sess, u, ok := s.requireUser(w, r)
	if !ok {
		return
	}
	list, err := s.Store.ListUserSessions(r.Context(), u.ID, s.Now())
	if err != nil {
		s.storeFailed(w, r, err)
		return
	}
	p := s.accountPage(w, r, u)
	entries := make([]templates.SessionEntry, 0, len(list))
	now := s.Now()
	for _, x := range list {
		if s.idle(&x, now) {
			continue // ended by idleness, its row kept for a while (sessionExpiry)
		}
		entries = append(entries, templates.SessionEntry{
			ID: x.ID, Device: deviceName(p.Lang, x.UserAgent), IP: x.IP, Current: x.ID == sess.ID,
			LastSeen: shownTime(x.LastSeen), Created: shownTime(x.CreatedAt),
		})
	}
	s.render(w, r, http.StatusOK, templates.Sessions(templates.SessionsPage{
		Page: p, Sessions: entries, RevokeAction: "/account/sessions/revoke",
		RevokeOthersAction: "/account/sessions/revoke-others", Notice: noticeOf(r, sessionNotices),
	}))
}

func (s *Server) sessionRevoke(w http.ResponseWriter, r *http.Request) {
	sess, u, ok := s.requirePostingUser(w, r)
	if !ok {
		return
	}
	id := r.PostFormValue("session")
	if err := s.endUserSession(r, u, id); err != nil {
		s.storeFailed(w, r, err)
		return
	}
	if id == sess.ID {
		// This device, as any other in the list: its session and the
		// tokens issued in it end.
		s.forgetSession(w, r)
		s.loggedOut(w, r, nil)
		return
	}
	http.Redirect(w, r, "/account/sessions?notice=session_revoked", http.StatusSeeOther)
}

// endUserSession ends the session id of the user u, and the tokens issued
// in it, with its audit event (session.ended: My Page's security events
// show who signed a device out, and when), in one transaction. A session
// that is gone already (ended meanwhile, or never the user's) is nothing
// to do, and nothing is recorded.
func (s *Server) endUserSession(r *http.Request, u *store.User, id string) error {
	err := s.changeAccount(r, u, func(tx context.Context) (accountChange, error) {
		return accountChange{Event: "session.ended"}, s.Store.DeleteUserSession(tx, u.ID, id)
	})
	if errors.Is(err, store.ErrNotFound) {
		return nil
	}
	return err
}

func (s *Server) sessionsRevokeOthers(w http.ResponseWriter, r *http.Request) {
	sess, u, ok := s.requirePostingUser(w, r)
	if !ok {
		return
	}
	// A copy of this browser's cookie is no other device: it goes too, in
	// the same transaction (a rotation that failed would leave it working
	// while the page said the others were signed out).
	var (
		token   string
		rotated *store.Session
	)
	err := s.changeAccount(r, u, func(tx context.Context) (accountChange, error) {
		n, err := s.Store.DeleteUserSessions(tx, u.ID, sess.ID)
		if err != nil {
			return accountChange{}, err
		}
		token, rotated, err = s.rotateSession(tx, r, u.ID)
		if n == 0 {
			return accountChange{}, err // no other session: nothing to record
		}
		return accountChange{Event: "sessions.ended_others", Detail: map[string]any{"count": n}}, err
	})
	if err != nil {
		s.storeFailed(w, r, err)
		return
	}
	s.setSessionCookie(w, token, rotated)
	http.Redirect(w, r, "/account/sessions?notice=sessions_revoked", http.StatusSeeOther)
}

// deviceName summarises a user agent as "browser (OS)".
func deviceName(lang, ua string) string {
	if ua == "" {
		return templates.T(lang, "unknown_device")
	}
	browser := ""
	for _, b := range []struct{ token, name string }{
		{"Edg/", "Edge"}, {"OPR/", "Opera"}, {"Firefox/", "Firefox"}, {"CriOS/", "Chrome"}, {"Chrome/", "Chrome"},
		{"Safari/", "Safari"},
	} {
		if strings.Contains(ua, b.token) {
			browser = b.name
			break
		}
	}
	osName := ""
	for _, o := range []struct{ token, name string }{
		{"iPhone", "iPhone"}, {"iPad", "iPad"}, {"Android", "Android"}, {"Windows", "Windows"},
		{"Mac OS X", "macOS"}, {"CrOS", "ChromeOS"}, {"Linux", "Linux"},
	} {
		if strings.Contains(ua, o.token) {
			osName = o.name
			break
		}
	}
	switch {
	case browser != "" && osName != "":
		return browser + " (" + osName + ")"
	case browser != "" || osName != "":
		return browser + osName
	}
	return truncate(ua, 60)
}
