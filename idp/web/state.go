package web

import (
	"cmp"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/kamera-id/idp/idp/crypt"
	"github.com/kamera-id/idp/idp/oidc"
	"github.com/kamera-id/idp/idp/store"
)

// Cookie names; https issuers get the __Host- prefix (Secure, Path=/, no Domain).
func (s *Server) cookieName(base string) string {
	if s.Config.Secure() {
		return "__Host-" + base
	}
	return base
}

func (s *Server) setCookie(w http.ResponseWriter, name, value string, maxAge time.Duration) {
	c := &http.Cookie{
		Name: s.cookieName(name), Value: value, Path: "/",
		HttpOnly: true, Secure: s.Config.Secure(), SameSite: http.SameSiteLaxMode,
	}
	switch {
	case maxAge > 0:
		c.MaxAge = int(maxAge / time.Second)
	case maxAge < 0:
		c.MaxAge = -1
	}
	http.SetCookie(w, c)
}

// clearCookie tells the browser to forget the cookie name, if it sent one.
func (s *Server) clearCookie(w http.ResponseWriter, r *http.Request, name string) {
	if s.cookie(r, name) != "" {
		s.setCookie(w, name, "", -1)
	}
}

// seal is plain sealed with the master key under aad, for the browser to
// carry (a cookie's value, a sealed login).
func (s *Server) seal(plain, aad []byte) string {
	return base64.RawURLEncoding.EncodeToString(s.Key.SealForBrowser(plain, aad))
}

// open is what seal sealed under the same aad in v; false when v is not
// such a value.
func (s *Server) open(v string, aad []byte) ([]byte, bool) {
	sealed, err := base64.RawURLEncoding.DecodeString(v)
	if err != nil || len(sealed) == 0 {
		return nil, false
	}
	plain, err := s.Key.OpenFromBrowser(sealed, aad)
	return plain, err == nil
}

func (s *Server) cookie(r *http.Request, name string) string {
	c, err := r.Cookie(s.cookieName(name))
	if err != nil {
		return ""
	}
	return c.Value
}

// --- CSRF: a random per-browser cookie; forms carry a MAC of it. ---

const csrfCookie = "idp_csrf"

// csrfToken returns the token for the forms of the page being rendered,
// setting the browser's CSRF cookie first if it has none.
func (s *Server) csrfToken(w http.ResponseWriter, r *http.Request) string {
	v := s.cookie(r, csrfCookie)
	if len(v) < 32 {
		v = crypt.RandomToken(32)
		s.setCookie(w, csrfCookie, v, 0)
		// Later reads in this request see the new cookie.
		r.AddCookie(&http.Cookie{Name: s.cookieName(csrfCookie), Value: v})
	}
	return s.csrfFor(v)
}

func (s *Server) csrfFor(cookieValue string) string {
	return base64.RawURLEncoding.EncodeToString(s.Key.MAC("csrf", []byte(cookieValue)))
}

// checkCSRF reports whether the posted token matches this browser's cookie
// (compared in constant time).
func (s *Server) checkCSRF(r *http.Request) bool {
	v := s.cookie(r, csrfCookie)
	if v == "" {
		return false
	}
	return crypt.Equal([]byte(r.PostFormValue("csrf")), []byte(s.csrfFor(v)))
}

// requireCSRF is checkCSRF for a form's handler: without a valid token it
// answers 403 and reports false.
func (s *Server) requireCSRF(w http.ResponseWriter, r *http.Request) bool {
	if s.checkCSRF(r) {
		return true
	}
	s.renderError(w, r, http.StatusForbidden, "csrf")
	return false
}

// browserBinding ties server-side state to this browser's CSRF cookie, so a
// flow id copied elsewhere is useless.
func (s *Server) browserBinding(r *http.Request) []byte {
	return crypt.HashToken("browser:" + s.cookie(r, csrfCookie))
}

// --- Flows: interactions in progress. ---

// flow is the state of a login (password, then the second step), a consent
// or a sensitive setting. A login's travels sealed in its own URLs and
// forms (sealLogin); any other flow is held in the store, the browser
// carrying a random id.
type flow struct {
	// id is what the browser carries: the stored flow's random id, or the
	// sealed login.
	id string
	// loginID is a login's own random id, sealed in it: the login's
	// restart and its end (StartSession) are bound to it. expires is when
	// the login can no longer go on.
	loginID string
	expires time.Time
	// user is the account as this request's login step read it, for the
	// authorization that follows in the same request (never stored).
	user *store.User
	// answer is the answer to the relying party's request that the login
	// step of this request prepared before storing its session (establish),
	// to go out once the session is stored (afterLogin); never stored.
	answer *heldAnswer

	Kind        string    `json:"kind"` // "login", "consent", "account", "continue", "setup", "disable", "codes", "logout"
	Browser     []byte    `json:"browser"`
	Lang        string    `json:"lang,omitempty"`
	Authorize   string    `json:"authorize,omitempty"` // the relying party's request, form-encoded
	RequestedAt time.Time `json:"requested_at"`
	ClientName  string    `json:"client_name,omitempty"`
	ClientID    string    `json:"client_id,omitempty"` // picks the relying party family's brand
	ReturnTo    string    `json:"return_to,omitempty"` // an own path, for logins to My Page
	Email       string    `json:"email,omitempty"`     // login_hint
	// Filled by the password step: the second step can only be reached
	// through a flow whose password step passed.
	UserID   string   `json:"user_id,omitempty"`
	AMR      []string `json:"amr,omitempty"`
	Remember bool     `json:"remember,omitempty"`
	// Account is the account's throttle key, for the device cookie that
	// the completed login gives the browser (limits.go).
	Account string `json:"acct,omitempty"`
	// Stamp identifies the account's credentials as the password step read
	// them (stampMark): a new password, or two-step verification turned on
	// or off, meanwhile ends the login.
	Stamp []byte `json:"stamp,omitempty"`
	// Remaining is how many backup codes are left (the notice after a
	// login with one of the last ones).
	Remaining int `json:"remaining,omitempty"`
	// Settings: the stage reached and when the password was re-entered.
	Stage    string    `json:"stage,omitempty"`
	ReauthAt time.Time `json:"reauth_at,omitzero"`
	// Notice is what a restarted login's page says (login_restarted), with
	// Typed, the e-mail address typed into the expired form (loginGone).
	Notice string `json:"notice,omitempty"`
	Typed  string `json:"typed,omitempty"`
	// Shown marks the pending authenticator secret a 2FA setup's page
	// shows (pendingMark), so that a setup started again in another tab,
	// which replaces it, is told apart from a wrong code.
	Shown []byte `json:"shown,omitempty"`
	// Session is the id of the session a login started, in the flows it
	// leaves for its relying party's request (the consent page, the
	// few-backup-codes notice): only that session goes on as just logged
	// in (bindSession, freshSession).
	Session string `json:"session,omitempty"`
	// RP-initiated logout.
	PostLogoutURI string `json:"post_logout_uri,omitempty"`
	State         string `json:"state,omitempty"`
}

var errFlowGone = errors.New("flow expired or unknown")

// maxFlowID bounds a stored flow's id (and a login's own id) as a request
// carries it: RandomToken(24) is 32 characters.
const maxFlowID = 64

func (s *Server) newFlow(ctx context.Context, w http.ResponseWriter, r *http.Request, f *flow) error {
	s.csrfToken(w, r) // the browser needs its cookie before a flow can be bound to it
	f.Browser = s.browserBinding(r)
	now := s.Now()
	if f.RequestedAt.IsZero() {
		f.RequestedAt = now.UTC()
	}
	if f.Kind != "login" {
		s.clearCookie(w, r, noticeCookie)
		f.id = crypt.RandomToken(24)
		return s.saveFlow(ctx, f)
	}
	// The notice of a restart this request is the target of goes with the
	// new login; any other is dropped.
	f.Notice, f.Typed = s.takeNotice(w, r)
	f.loginID, f.expires = crypt.RandomToken(24), now.Add(s.Config.FlowLifetime)
	s.sealLogin(f)
	if len(f.id) > maxNewLogin {
		return errLoginTooLarge
	}
	s.keepRestart(w, f)
	return nil
}

// --- Logins: sealed into the browser's requests. ---
//
// A login's state (the relying party's request, then the account whose
// password step passed) travels in the login's URLs and forms, sealed with
// the master key (XChaCha20-Poly1305: neither readable nor changeable),
// instead of in the store, as Ory Hydra 2 keeps its login flows: a visitor
// who opens a login page and leaves costs the store nothing, and the steps
// of a login read and write no flow. It is bound to the browser that
// started it (its CSRF cookie, as a stored flow is) and expires after
// IDP_FLOW_LIFETIME; a change of the account's credentials meanwhile ends
// it (its security stamp, checked at the second step and by the store when
// the session starts). What must happen once is in the store: the login's
// end (StartSession records the login and its account with the session it
// starts, so of two requests finishing one login exactly one starts a
// session), the second step's codes and the limits. The sealed login is
// visible to no one but the provider; like a stored flow's id, it is of no
// use in another browser.

// loginAAD binds a sealed value to being a login.
var loginAAD = []byte("login-flow")

// maxNewLogin bounds a new sealed login, so that its URLs stay within what
// proxies pass (8 KiB for a request line, nginx's default) with the room
// its password step adds; a longer authorization request is refused.
const maxNewLogin = 6 << 10

// spentMargin keeps a login's end on record past what its login could
// still be used for by as much as instances' clocks could disagree.
const spentMargin = time.Hour

// spentUntil is how long the end of the login f stays on record: a login's
// first form sealed at t lives until t+IDP_FLOW_LIFETIME, and each password
// step gives its second step as long again from then, so every second step
// sealed from that form has expired by t+2*IDP_FLOW_LIFETIME, which is at
// most f's expiry plus IDP_FLOW_LIFETIME.
func (s *Server) spentUntil(f *flow) time.Time {
	return f.expires.Add(s.Config.FlowLifetime + spentMargin)
}

var errLoginTooLarge = errors.New("the authorization request is too large for a login")

// sealLogin seals the login f into f.id, what its pages and forms carry
// (its encoding: appendLogin).
func (s *Server) sealLogin(f *flow) {
	f.id = s.seal(appendLogin(make([]byte, 0, 512+len(f.Authorize)), f), loginAAD)
}

// openLogin returns the login sealed in ref if it belongs to this browser
// and has not expired; errFlowGone otherwise, with the login when it only
// expired (its id finds its restart: loginGone).
func (s *Server) openLogin(r *http.Request, ref string) (*flow, error) {
	if len(ref) > maxFieldLen {
		return nil, errFlowGone
	}
	plain, ok := s.open(ref, loginAAD)
	if !ok {
		return nil, errFlowGone
	}
	f, err := parseLogin(plain)
	if err != nil || f.loginID == "" || f.Kind != "login" {
		return nil, errFlowGone
	}
	f.id = ref
	if !crypt.Equal(f.Browser, s.browserBinding(r)) {
		return nil, errFlowGone
	}
	if !s.Now().Before(f.expires) {
		return f, errFlowGone
	}
	return f, nil
}

// loginKey is the store's key of the login f by the account whose password
// step passed (StartSession, LoginSession). A login's first form can be sent
// with one account's password, then another's: each account's end of it
// is its own, so that one account's session never makes another's login
// look finished (loginOpen would then take its wrong codes for a twin's).
func loginKey(f *flow) []byte { return crypt.HashToken("login:" + f.loginID + "\x00" + f.UserID) }

// loginSession is the id of the session the login f started for its
// account; "" while it has started none.
func (s *Server) loginSession(ctx context.Context, f *flow) (string, error) {
	return s.Store.LoginSession(ctx, loginKey(f))
}

// --- Restarting a login whose flow is gone. ---
//
// A login left open past IDP_FLOW_LIFETIME (or ended by a change of the
// account's credentials while its last step ran) cannot go on. Rather than
// a dead end, the browser that started it is sent back to where the login
// began, as Keycloak does: the relying party's authorization request (a
// new login for it), or the login page with the My Page path it was to
// return to; the new login page says why, with the e-mail address typed
// into the expired form. What to start again is kept in a cookie
// (idp_restart, for the browser's session), sealed with the master key (it
// holds the relying party's request: its login_hint, its id_token_hint)
// and bound to the login's id (loginID): a login of another browser, or an
// older login in another tab, finds no restart and gets the expired-flow
// page. A completed login or a logout clears it, so a login page of a
// login that ended and went stale after either also gets that page. The notice
// (idp_notice) is bound to the restart's target: only the login that
// request starts takes it; any other flow, or a code issued from the SSO
// session, drops it.

const (
	restartCookie = "idp_restart"
	noticeCookie  = "idp_notice"
	// maxRestartCookie keeps the cookie within what browsers store (4 KiB
	// with its name and attributes); a longer authorization request gets
	// no restart.
	maxRestartCookie = 3072
)

// keepRestart gives the browser the restart of the login f.
func (s *Server) keepRestart(w http.ResponseWriter, f *flow) {
	v := s.seal([]byte(f.startTarget()), restartAAD(crypt.HashToken(f.loginID)))
	if len(v) <= maxRestartCookie {
		s.setCookie(w, restartCookie, v, 0)
	}
}

// startTarget is where the login f began, to start it again: the relying
// party's authorization request, or the login page with the My Page path
// it was for.
func (f *flow) startTarget() string {
	if f.Authorize != "" {
		return oidc.PathAuthorize + "?" + f.Authorize // ui_locales, if any, is in it
	}
	target := "/login?return_to=" + url.QueryEscape(cmp.Or(f.ReturnTo, "/account"))
	if f.Lang != "" {
		target = inLang(target, f.Lang)
	}
	return target
}

// isStartTarget reports whether target is one startTarget makes (checked
// again where one comes back from the browser, sealed as it is).
func isStartTarget(target string) bool {
	return strings.HasPrefix(target, oidc.PathAuthorize+"?") || strings.HasPrefix(target, "/login?")
}

func restartAAD(bound []byte) []byte { return append([]byte("restart\x00"), bound...) }

// restartTarget is where the login with the id (gone) started, when this
// browser's restart cookie is that login's; else "".
func (s *Server) restartTarget(r *http.Request, id string) string {
	if id == "" || len(id) > maxFlowID {
		return ""
	}
	v, aad := s.cookie(r, restartCookie), restartAAD(crypt.HashToken(id))
	target, ok := s.open(v, aad)
	if !ok {
		// A restart cookie sealed before values for the browser had a
		// cipher of their own (with the at-rest seal, under the same
		// associated data): a login left open across the upgrade. To go in
		// the release after next.
		if sealed, err := base64.RawURLEncoding.DecodeString(v); err == nil {
			target, _ = s.Key.Open(sealed, aad)
		}
	}
	if !isStartTarget(string(target)) {
		return ""
	}
	return string(target)
}

// Why a login started again, as the new login page says it (message keys).
const (
	restartExpired = "login_restarted"         // left open too long, or gone
	restartChanged = "login_restarted_changed" // the account's credentials changed meanwhile
)

// loginGone answers a step of the login flow id that is gone (why:
// restartExpired or restartChanged): the login starts again where it began
// when this browser started it (see above), else the expired-flow page.
func (s *Server) loginGone(w http.ResponseWriter, r *http.Request, id, why string) {
	target := s.restartTarget(r, id)
	if target == "" {
		s.flowFailed(w, r, errFlowGone)
		return
	}
	// The address typed into the expired form goes on to the new one
	// (never the password).
	typed := ""
	if email := strings.TrimSpace(r.PostFormValue("email")); len(email) <= 254 && utf8.ValidString(email) {
		typed = email
	}
	s.setCookie(w, restartCookie, "", -1)
	s.setCookie(w, noticeCookie, s.seal([]byte(why+"\x00"+typed), noticeAAD(target)), 0)
	http.Redirect(w, r, target, http.StatusSeeOther)
}

func noticeAAD(target string) []byte { return []byte("restarted\x00" + target) }

// takeNotice clears the browser's notice of a restarted login and, when r
// is the request the restart sent it to, returns the notice's message key
// and the address typed before; else "", "".
func (s *Server) takeNotice(w http.ResponseWriter, r *http.Request) (msg, typed string) {
	v := s.cookie(r, noticeCookie)
	s.clearCookie(w, r, noticeCookie)
	plain, ok := s.open(v, noticeAAD(r.URL.RequestURI()))
	if !ok {
		return "", ""
	}
	why, typed, _ := strings.Cut(string(plain), "\x00")
	if why != restartChanged {
		why = restartExpired
	}
	return why, typed
}

func (s *Server) saveFlow(ctx context.Context, f *flow) error {
	data, err := json.Marshal(f)
	if err != nil {
		return fmt.Errorf("encode flow: %w", err)
	}
	now := s.Now()
	return s.Store.PutFlow(ctx, &store.Flow{
		Key: crypt.HashToken(f.id), Data: data,
		CreatedAt: now, ExpiresAt: now.Add(s.Config.FlowLifetime),
	})
}

// loadFlow returns the flow with this id if it exists, has not expired and
// belongs to this browser; errFlowGone otherwise.
func (s *Server) loadFlow(ctx context.Context, r *http.Request, id string) (*flow, error) {
	if id == "" || len(id) > maxFlowID {
		return nil, errFlowGone
	}
	rec, err := s.Store.GetFlow(ctx, crypt.HashToken(id), s.Now())
	if errors.Is(err, store.ErrNotFound) {
		return nil, errFlowGone
	}
	if err != nil {
		return nil, err
	}
	f := &flow{}
	if err := json.Unmarshal(rec.Data, f); err != nil {
		return nil, fmt.Errorf("decode flow: %w", err)
	}
	if !crypt.Equal(f.Browser, s.browserBinding(r)) {
		return nil, errFlowGone
	}
	f.id = id
	return f, nil
}

// finishFlow removes the flow; of two requests finishing it, exactly one
// gets nil.
func (s *Server) finishFlow(ctx context.Context, f *flow) error {
	err := s.Store.DeleteFlow(ctx, crypt.HashToken(f.id))
	if errors.Is(err, store.ErrNotFound) {
		return errFlowGone
	}
	return err
}

// --- SSO sessions. ---

const sessionCookie = "idp_session"

// currentSession returns the browser's SSO session, or nil when it has none
// (or it expired, absolutely or by idleness).
func (s *Server) currentSession(r *http.Request) (*store.Session, error) {
	v := s.cookie(r, sessionCookie)
	if v == "" {
		return nil, nil
	}
	now := s.Now()
	sess, err := s.Store.GetSession(r.Context(), crypt.HashToken(v), now)
	if errors.Is(err, store.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	if s.idle(sess, now) {
		return nil, nil
	}
	if now.Sub(sess.LastSeen) > time.Minute {
		err := s.Store.TouchSession(r.Context(), sess.TokenHash, now, s.sessionExpiry(sess, now))
		if errors.Is(err, store.ErrNotFound) {
			return nil, nil // ended since the read (a logout in another tab, say)
		}
		if err != nil {
			return nil, err
		}
	}
	return sess, nil
}

// startSession spends the login f (and its TOTP code's totpStep, if not
// 0) and starts the session of its user u (the account as the login read
// it) in one store call (store.StartSession: ErrNotFound when the login
// was spent or u's credentials have changed since, ErrConsumed when the
// code was spent), in ctx, a transaction's when the session starts with
// other changes (a backup code spent). Once they are committed, the caller
// ends the browser's previous session (endPreviousSession) and gives the
// browser the new session's cookie, whose token this returns
// (sessionStarted): a request that loses the race for the flow leaves the
// browser's session alone.
func (s *Server) startSession(ctx context.Context, r *http.Request, f *flow, u *store.User, totpStep int64) (*store.Session, string, error) {
	sess, token := s.newSession(r, f)
	if err := s.storeSession(ctx, f, u, totpStep, sess, nil); err != nil {
		return nil, "", err
	}
	return sess, token, nil
}

// newSession is the session the login f starts, with its cookie's token:
// not stored yet (storeSession).
func (s *Server) newSession(r *http.Request, f *flow) (*store.Session, string) {
	now := s.Now().Truncate(time.Second)
	token := crypt.RandomToken(32)
	sess := &store.Session{
		TokenHash: crypt.HashToken(token),
		ID:        crypt.RandomToken(16),
		UserID:    f.UserID,
		AuthTime:  now,
		AMR:       f.AMR,
		Remember:  f.Remember,
		CreatedAt: now,
		LastSeen:  now,
		UserAgent: truncate(r.UserAgent(), 200),
		IP:        s.clientIP(r),
	}
	if f.Remember {
		// Remembered across browser restarts, never past the absolute limit.
		sess.ExpiresAt = now.Add(min(s.Config.RememberMe, s.Config.SessionMaxAge))
	} else {
		sess.ExpiresAt = s.sessionExpiry(sess, now)
	}
	return sess, token
}

// sessionExpiry is when the row of sess, used at now, goes: a remembered
// session's at its end; one not remembered, which ends when idle for
// SessionIdleTimeout (idle), idleKeep after its last use, never past
// SessionMaxAge from its start. Kept that long, an idle session can
// still be logged out of, which ends the access tokens issued in it
// (store.EndSession); after that, the cleanup deletes it.
func (s *Server) sessionExpiry(sess *store.Session, now time.Time) time.Time {
	if sess.Remember {
		return sess.ExpiresAt
	}
	if end := sess.CreatedAt.Add(s.Config.SessionMaxAge); end.Before(now.Add(s.idleKeep())) {
		return end
	}
	return now.Add(s.idleKeep())
}

// idleKeep is how long the row of a session not remembered is kept after
// its last use (sessionExpiry): the idle timeout, then as long as an
// access token issued in it can live (its code redeemed at the last
// moment), and the minute by which its last use may be recorded late
// (currentSession).
func (s *Server) idleKeep() time.Duration {
	return s.Config.SessionIdleTimeout + s.Config.AuthCodeTTL + s.Config.AccessTokenTTL + time.Minute
}

// idle says whether sess, not remembered, was last used more than
// SessionIdleTimeout before now: it no longer signs in.
func (s *Server) idle(sess *store.Session, now time.Time) bool {
	return !sess.Remember && now.Sub(sess.LastSeen) > s.Config.SessionIdleTimeout
}

// storeSession stores sess, the session the login f of the user u starts
// (startSession), with code, the code its relying party's request was
// answered with (nil: none).
func (s *Server) storeSession(ctx context.Context, f *flow, u *store.User, totpStep int64, sess *store.Session,
	code *store.TokenRecord) error {
	end := store.LoginEnd{Key: loginKey(f), SpentUntil: s.spentUntil(f), Stamp: u.SecurityStamp, TOTPStep: totpStep, Code: code}
	return s.Store.StartSession(ctx, end, sess)
}

// endPreviousSession ends the session the browser had before its login
// started one of the user userID (none: nothing to do): the session id is
// rotated at every login. Another account's session ends as its logout
// would (store.EndSession), with the access tokens issued in it: an
// account switched in a shared browser leaves the previous account's
// relying parties no access but what a logout leaves (refresh tokens for
// offline access). The same user's session is only deleted:
// the relying parties it signed in keep their tokens, as the user is
// still signed in. The login stands either way; a session that cannot be
// ended is logged, and its cookie is replaced, so no one holds it.
func (s *Server) endPreviousSession(r *http.Request, userID string) {
	old := s.cookie(r, sessionCookie)
	if old == "" {
		return
	}
	ctx, hash := r.Context(), crypt.HashToken(old)
	// Expired or not (a zero now): its tokens may outlive it.
	prev, err := s.Store.GetSession(ctx, hash, time.Time{})
	switch {
	case errors.Is(err, store.ErrNotFound):
		return
	case err == nil && prev.UserID != userID:
		err = s.Store.EndSession(ctx, hash)
	case err == nil:
		err = s.Store.DeleteSession(ctx, hash)
	}
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		s.Logger.WarnContext(ctx, "login: the browser's previous session could not be ended", append(logAttrs(r), "err", err)...)
	}
}

// rotateSession gives the browser's session of the user userID a new
// token, in the transaction of ctx (a change of the account's credentials,
// or its other devices signed out): a copy of the old cookie, taken by
// whomever the owner means to shut out, no longer signs in (OWASP: a new
// session id at every change of privilege). It returns the new token and
// the session, for setSessionCookie once the transaction has committed;
// "" when the browser has no session of the user (a reset link's browser:
// the reset ends them all).
func (s *Server) rotateSession(ctx context.Context, r *http.Request, userID string) (string, *store.Session, error) {
	old := s.cookie(r, sessionCookie)
	if old == "" {
		return "", nil, nil
	}
	token := crypt.RandomToken(32)
	sess, err := s.Store.RotateSession(ctx, crypt.HashToken(old), crypt.HashToken(token), userID)
	if errors.Is(err, store.ErrNotFound) {
		return "", nil, nil
	}
	if err != nil {
		return "", nil, err
	}
	return token, sess, nil
}

// setSessionCookie gives the browser the cookie token of its session sess
// (new, or rotated): for the browser's session, or, remembered, until the
// session's end (whole seconds, as ExpiresAt). Nothing when token is "".
func (s *Server) setSessionCookie(w http.ResponseWriter, token string, sess *store.Session) {
	if token == "" {
		return
	}
	var age time.Duration // a browser-session cookie
	if sess.Remember {
		age = max(sess.ExpiresAt.Sub(s.Now().Truncate(time.Second)), time.Second)
	}
	s.setCookie(w, sessionCookie, token, age)
}

// endSession logs the browser out: it ends its SSO session, expired or
// not, with the access tokens and codes issued in it (store.EndSession),
// and forgets it.
func (s *Server) endSession(w http.ResponseWriter, r *http.Request) error {
	if v := s.cookie(r, sessionCookie); v != "" {
		if err := s.Store.EndSession(r.Context(), crypt.HashToken(v)); err != nil && !errors.Is(err, store.ErrNotFound) {
			return err
		}
	}
	s.forgetSession(w, r)
	return nil
}

// forgetSession tells the browser to drop its session cookie, and the
// restart of a login (which a logout ends too).
func (s *Server) forgetSession(w http.ResponseWriter, r *http.Request) {
	s.setCookie(w, sessionCookie, "", -1)
	s.clearCookie(w, r, restartCookie)
}

// clientIP is the client's address: the connection's, or, when that is a
// trusted proxy (IDP_TRUSTED_PROXIES), the nearest address in
// X-Forwarded-For that is not one (the ones left of it could be forged by
// the client).
func (s *Server) clientIP(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	if len(s.trusted) == 0 || !s.isTrusted(host) {
		return host
	}
	hops := strings.Split(strings.Join(r.Header.Values("X-Forwarded-For"), ","), ",")
	for i := len(hops) - 1; i >= 0; i-- {
		a, err := parseHop(strings.TrimSpace(hops[i]))
		if err != nil {
			return host // garbage from beyond the trusted proxies: not believed
		}
		if !s.trustedAddr(a) {
			return a.Unmap().String()
		}
	}
	return host
}

// parseHop reads an X-Forwarded-For entry: an address, or (as some
// balancers write it) an address with a port, an IPv6 one in brackets.
func parseHop(h string) (netip.Addr, error) {
	if a, err := netip.ParseAddr(h); err == nil {
		return a, nil
	}
	if ap, err := netip.ParseAddrPort(h); err == nil {
		return ap.Addr(), nil
	}
	return netip.ParseAddr(strings.TrimSuffix(strings.TrimPrefix(h, "["), "]"))
}

func (s *Server) isTrusted(ip string) bool {
	a, err := netip.ParseAddr(ip)
	return err == nil && s.trustedAddr(a)
}

func (s *Server) trustedAddr(a netip.Addr) bool {
	a = a.Unmap()
	for _, p := range s.trusted {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// truncate bounds free text from the request (a header, a form value) to n
// bytes of valid UTF-8, cut between characters: see store.ClipText.
func truncate(s string, n int) string { return store.ClipText(s, n) }
