package web

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/ory/fosite"

	"github.com/kamera-id/idp/idp/oidc"
	"github.com/kamera-id/idp/idp/store"
	"github.com/kamera-id/idp/templates"
)

// authorize is the authorization endpoint (GET or POST).
func (s *Server) authorize(w http.ResponseWriter, r *http.Request) {
	ar, ok := s.parseAuthorize(w, r)
	if !ok {
		return
	}
	s.decide(w, r, ar, s.Now().UTC(), nil, nil)
}

// parseAuthorize validates the request; errors that cannot go back to a
// registered redirect URI get an error page, never a redirect.
func (s *Server) parseAuthorize(w http.ResponseWriter, r *http.Request) (fosite.AuthorizeRequester, bool) {
	ar, redirectable, err := s.Provider.ParseAuthorize(r.Context(), r)
	if err == nil {
		return ar, true
	}
	if oidc.Unavailable(err) {
		// The client could not be looked up: not the request's fault.
		s.storeFailed(w, r, err)
		return nil, false
	}
	if redirectable {
		s.Provider.WriteAuthorizeError(r.Context(), w, ar, err)
		return nil, false
	}
	rfc := fosite.ErrorToRFC6749Error(err)
	p := templates.ErrorPage{Page: s.page(w, r, nil), Status: http.StatusBadRequest, Message: "invalid_request", Detail: rfc.ErrorField}
	if key := "oauth_" + rfc.ErrorField; templates.HasMessage(key) {
		p.Detail = templates.T(p.Lang, key) + " (" + rfc.ErrorField + ")" // in the page's language, with the code for support
	}
	if strings.Contains(rfc.HintField, "redirect") {
		p.Message = "unregistered_redirect_uri"
	}
	s.render(w, r, http.StatusBadRequest, templates.Error(p))
	return nil, false
}

// decide continues a valid authorization request: it asks for a login or
// consent when needed (or answers login_required / consent_required for
// prompt=none) and otherwise issues the code. fresh is the session the user
// has just logged in with for this very request (nil: use the browser's),
// freshUser the account as that login read it (nil: read it here). A fresh
// session skips the checks a login answers (prompt=login, max_age,
// id_token_hint, select_account), not the others (see needsLogin).
func (s *Server) decide(w http.ResponseWriter, r *http.Request, ar fosite.AuthorizeRequester, requestedAt time.Time, fresh *store.Session, freshUser *store.User) {
	ctx := r.Context()
	form := ar.GetRequestForm()
	prompt := strings.Fields(form.Get("prompt"))
	none := slices.Contains(prompt, "none")

	sess, err := fresh, error(nil)
	if sess == nil {
		sess, err = s.currentSession(r)
	}
	if err != nil {
		s.storeFailed(w, r, err)
		return
	}
	var user *store.User
	if sess != nil && fresh != nil && freshUser != nil && freshUser.ID == sess.UserID {
		user = freshUser // read by the login step of this request
	} else if sess != nil {
		user, err = s.Store.GetUser(ctx, sess.UserID)
		if errors.Is(err, store.ErrNotFound) {
			sess = nil
		} else if err != nil {
			s.storeFailed(w, r, err)
			return
		}
	}
	if s.needsLogin(ctx, sess, user, form, prompt, fresh != nil) {
		s.loginRequired(w, r, ar, requestedAt, none)
		return
	}
	if fresh == nil && slices.Contains(prompt, "select_account") {
		// A login for this request chose its account; otherwise ask.
		s.askAccount(w, r, ar, user, requestedAt)
		return
	}

	c, err := s.Provider.Storage.Client(ctx, ar.GetClient().GetID())
	if err != nil {
		s.storeFailed(w, r, err)
		return
	}
	// asked answers the request when the client needs the user's consent
	// to it (first-party clients never do), and reports whether it did.
	asked := func(force bool) bool {
		if c.FirstParty {
			return false
		}
		if !force {
			granted, err := s.Store.GetConsent(ctx, user.ID, c.ID)
			if err != nil {
				s.storeFailed(w, r, err)
				return true
			}
			if covers(granted, oidc.ConsentScopes(form)) {
				return false
			}
		}
		s.consentRequired(w, r, ar, c, requestedAt, user.ID, fresh, none)
		return true
	}
	if asked(slices.Contains(prompt, "consent")) {
		return
	}
	s.clearCookie(w, r, noticeCookie) // a restart answered from the SSO session: no login page for its notice
	err = s.Provider.Authorize(ctx, w, ar, user, oidc.Identity{
		UserID: user.ID, SID: sess.ID, AuthTime: sess.AuthTime, AMR: sess.AMR, RequestedAt: requestedAt,
	})
	switch {
	case errors.Is(err, oidc.ErrWithdrawn):
		// The consent, or the session, ended (My Page, a password reset)
		// since it was read: as if there had been none.
		if !asked(false) {
			s.loginRequired(w, r, ar, requestedAt, none)
		}
	case err != nil:
		s.storeFailed(w, r, err)
	}
}

// consentRequired answers a request that needs the consent of the user
// userID: consent_required for prompt=none, else the consent page; fresh
// is the session of a login for this request, if any.
func (s *Server) consentRequired(w http.ResponseWriter, r *http.Request, ar fosite.AuthorizeRequester, c *store.Client, requestedAt time.Time, userID string, fresh *store.Session, none bool) {
	if none {
		s.Provider.WriteAuthorizeError(r.Context(), w, ar, fosite.ErrConsentRequired)
		return
	}
	s.askConsent(w, r, ar, c, requestedAt, userID, fresh)
}

// loginRequired answers a request that needs a login: login_required for
// prompt=none, else the login page.
func (s *Server) loginRequired(w http.ResponseWriter, r *http.Request, ar fosite.AuthorizeRequester, requestedAt time.Time, none bool) {
	if none {
		s.Provider.WriteAuthorizeError(r.Context(), w, ar, fosite.ErrLoginRequired)
		return
	}
	s.startLogin(w, r, ar, requestedAt)
}

// needsLogin applies OIDC Core's rules to the SSO session: none, a forced
// login, an authentication older than max_age, another user named by
// id_token_hint, or a password-only session of a user who has since turned
// two-step verification on. A fresh session (of a login for this very
// request) has answered the first three, but not the last: 2FA may have
// been turned on since that login (in another tab, while its consent page
// was open), and the session kept is password-only.
func (s *Server) needsLogin(ctx context.Context, sess *store.Session, user *store.User, form url.Values, prompt []string, fresh bool) bool {
	if sess == nil || user == nil {
		return true
	}
	if user.MFAEnabled && !slices.Contains(sess.AMR, "otp") {
		return true
	}
	if fresh {
		return false
	}
	if slices.Contains(prompt, "login") {
		return true
	}
	if v := form.Get("max_age"); v != "" {
		if maxAge, err := strconv.ParseInt(v, 10, 64); err == nil &&
			s.Now().Sub(sess.AuthTime) > time.Duration(maxAge)*time.Second {
			return true
		}
	}
	if hint := form.Get("id_token_hint"); hint != "" {
		sub, _, _, err := s.Provider.VerifyIDTokenHint(ctx, hint)
		if err != nil || sub != user.ID {
			return true
		}
	}
	return false
}

func covers(granted, requested []string) bool {
	for _, s := range requested {
		if !slices.Contains(granted, s) {
			return false
		}
	}
	return true
}

// requestFlow is a new flow of kind that keeps the relying party's request
// ar server-side, with the pages' language (the request's ui_locales
// first) and the client's name for them; c is the client when the caller
// has it (nil: looked up).
func (s *Server) requestFlow(r *http.Request, ar fosite.AuthorizeRequester, kind string, requestedAt time.Time, c *store.Client) *flow {
	form := ar.GetRequestForm()
	f := &flow{Kind: kind, Authorize: form.Encode(), RequestedAt: requestedAt, Lang: s.lang(r, nil)}
	if v := form.Get("ui_locales"); v != "" {
		f.Lang = templates.NormalizeLang(v)
	}
	if c == nil {
		c, _ = s.Provider.Storage.Client(r.Context(), ar.GetClient().GetID())
	}
	if c != nil {
		f.ClientName, f.ClientID = c.Name, c.ID
	}
	return f
}

// startFlow starts f and sends the browser to its page at path.
func (s *Server) startFlow(w http.ResponseWriter, r *http.Request, f *flow, path string) {
	if err := s.newFlow(r.Context(), w, r, f); err != nil {
		s.flowNotStarted(w, r, err)
		return
	}
	http.Redirect(w, r, path+"?flow="+url.QueryEscape(f.id), http.StatusSeeOther)
}

// flowNotStarted answers a request whose flow newFlow could not start: a
// login too large for its URLs is refused (413), any other error is the
// store's.
func (s *Server) flowNotStarted(w http.ResponseWriter, r *http.Request, err error) {
	if errors.Is(err, errLoginTooLarge) {
		s.renderErrorDetail(w, r, http.StatusRequestEntityTooLarge, "invalid_request", "input_too_large")
		return
	}
	s.storeFailed(w, r, err)
}

// startLogin starts a login for the request and sends the browser to the
// login page.
func (s *Server) startLogin(w http.ResponseWriter, r *http.Request, ar fosite.AuthorizeRequester, requestedAt time.Time) {
	f := s.requestFlow(r, ar, "login", requestedAt, nil)
	f.Email = ar.GetRequestForm().Get("login_hint")
	s.startFlow(w, r, f, "/login")
}

// askAccount answers prompt=select_account while the browser is signed in
// as u: a page to go on with u, or to log in with another account (one
// session a browser, so choosing another is a login; without a session the
// login page is the choice, as at Hydra, Google and Zitadel).
func (s *Server) askAccount(w http.ResponseWriter, r *http.Request, ar fosite.AuthorizeRequester, u *store.User, requestedAt time.Time) {
	f := s.requestFlow(r, ar, "account", requestedAt, nil)
	f.UserID, f.Email = u.ID, u.Email
	s.startFlow(w, r, f, "/login/account")
}

func (s *Server) accountChoicePage(w http.ResponseWriter, r *http.Request) {
	f, ok := s.flowOrError(w, r, r.URL.Query().Get("flow"), "account")
	if !ok {
		return
	}
	s.render(w, r, http.StatusOK, templates.SelectAccount(templates.SelectAccountPage{
		Page: s.page(w, r, f), Action: "/login/account", Flow: f.id, ClientName: f.ClientName, Email: f.Email,
	}))
}

func (s *Server) accountChoiceSubmit(w http.ResponseWriter, r *http.Request) {
	f, ok := s.postedFlow(w, r, "account")
	if !ok {
		return
	}
	choice := r.PostFormValue("account")
	if choice != "current" && choice != "other" {
		s.renderError(w, r, http.StatusBadRequest, "invalid_request")
		return
	}
	sess, err := s.currentSession(r)
	if err != nil {
		s.storeFailed(w, r, err)
		return
	}
	if err := s.finishFlow(r.Context(), f); err != nil {
		s.flowFailed(w, r, err)
		return
	}
	if sess == nil || sess.UserID != f.UserID {
		// The browser's session ended, or became another account's, since
		// the page was shown: the request is taken again as it came.
		s.resume(w, r, f, nil)
		return
	}
	q, _ := url.ParseQuery(f.Authorize)
	f.Authorize = withoutPrompt(q, "select_account")
	if choice == "current" {
		s.resume(w, r, f, nil)
		return
	}
	r2 := requestFor(r, f.Authorize)
	if ar, ok := s.parseAuthorize(w, r2); ok {
		s.startLogin(w, r2, ar, f.RequestedAt)
	}
}

// withoutPrompt is the request q, encoded, without the prompt value v once
// the user has answered it (so it is not asked again for this request).
func withoutPrompt(q url.Values, v string) string {
	q.Set("prompt", strings.Join(slices.DeleteFunc(strings.Fields(q.Get("prompt")), func(p string) bool { return p == v }), " "))
	if q.Get("prompt") == "" {
		q.Del("prompt")
	}
	return q.Encode()
}

// resume continues the relying party's request kept in f, after a login or
// a consent; fresh is the session just started by a login, if any.
func (s *Server) resume(w http.ResponseWriter, r *http.Request, f *flow, fresh *store.Session) {
	r2 := requestFor(r, f.Authorize)
	ar, ok := s.parseAuthorize(w, r2)
	if !ok {
		return
	}
	s.decide(w, r2, ar, f.RequestedAt, fresh, f.user)
}

// askConsent shows the consent page, which asks the user userID (the
// account the page is for: consentSubmit); fresh, the session of a login
// for this request if any, is recorded (so that prompt=login is not asked
// again when the page is sent with that session: freshSession).
func (s *Server) askConsent(w http.ResponseWriter, r *http.Request, ar fosite.AuthorizeRequester, c *store.Client, requestedAt time.Time, userID string, fresh *store.Session) {
	f := s.requestFlow(r, ar, "consent", requestedAt, c)
	f.UserID = userID
	if fresh != nil {
		f.Stage = "after_login"
		f.bindSession(fresh)
	}
	s.startFlow(w, r, f, "/consent")
}

// bindSession records in f, a flow made by a login for the relying party's
// request it keeps (its consent page, or the few-backup-codes notice), the
// session that login started.
func (f *flow) bindSession(sess *store.Session) {
	f.Session, f.UserID = sess.ID, sess.UserID
}

// freshSession is sess, the browser's session when f's page was sent, if
// it is the one started by the login that made f (bindSession): then the
// request goes on as right after that login. Any other session (the
// browser logged in again, or out and in as someone else, in another tab
// meanwhile) is not that login's: nil, and the request is decided on the
// browser's session like any other (needsLogin).
func (f *flow) freshSession(sess *store.Session) *store.Session {
	if sess == nil || f.Session == "" || f.Session != sess.ID || f.UserID != sess.UserID {
		return nil
	}
	return sess
}

func (s *Server) consentPage(w http.ResponseWriter, r *http.Request) {
	f, ok := s.flowOrError(w, r, r.URL.Query().Get("flow"), "consent")
	if !ok {
		return
	}
	q, _ := url.ParseQuery(f.Authorize)
	s.render(w, r, http.StatusOK, templates.Consent(templates.ConsentPage{
		Page: s.page(w, r, f), Action: "/consent", Flow: f.id, ClientName: f.ClientName,
		Scopes: oidc.ConsentScopes(q),
	}))
}

func (s *Server) consentSubmit(w http.ResponseWriter, r *http.Request) {
	f, ok := s.postedFlow(w, r, "consent")
	if !ok {
		return
	}
	sess, err := s.currentSession(r)
	if err != nil {
		s.storeFailed(w, r, err)
		return
	}
	if sess == nil {
		s.renderError(w, r, http.StatusBadRequest, "flow_expired")
		return
	}
	if err := s.finishFlow(r.Context(), f); err != nil {
		s.flowFailed(w, r, err)
		return
	}
	if f.UserID != "" && f.UserID != sess.UserID {
		// The page was shown to another account (the browser logged out
		// and in as someone else meanwhile, in another tab): its answer is
		// not this account's. The request is decided again for the account
		// logged in now, which gets a consent page of its own if it needs
		// one.
		s.resume(w, r, f, nil)
		return
	}
	q, _ := url.ParseQuery(f.Authorize)
	if r.PostFormValue("consent") != "allow" {
		ar, ok := s.parseAuthorize(w, requestFor(r, f.Authorize))
		if ok {
			s.Provider.WriteAuthorizeError(r.Context(), w, ar, fosite.ErrAccessDenied.WithHint("The user declined."))
		}
		return
	}
	// What the user allowed before stays allowed: consents add up.
	if _, err := s.Store.AddConsent(r.Context(), sess.UserID, q.Get("client_id"), oidc.ConsentScopes(q), s.Now()); err != nil {
		s.storeFailed(w, r, err)
		return
	}
	f.Authorize = withoutPrompt(q, "consent")
	var fresh *store.Session
	if f.Stage == "after_login" {
		fresh = f.freshSession(sess)
	}
	s.resume(w, r, f, fresh)
}

// requestFor rebuilds a GET authorization request from its encoded form.
func requestFor(r *http.Request, encoded string) *http.Request {
	r2 := r.Clone(r.Context())
	r2.Method = http.MethodGet
	r2.URL = &url.URL{Path: oidc.PathAuthorize, RawQuery: encoded}
	r2.Body = http.NoBody
	r2.Form, r2.PostForm = nil, nil
	r2.Header = r.Header.Clone()
	r2.Header.Del("Content-Type")
	return r2
}

// postedFlow checks a form's CSRF token and loads its flow of the given
// kind, or answers (403, or the "expired" page).
func (s *Server) postedFlow(w http.ResponseWriter, r *http.Request, kind string) (*flow, bool) {
	if !s.requireCSRF(w, r) {
		return nil, false
	}
	return s.flowOrError(w, r, r.PostFormValue("flow"), kind)
}

// flowOrError loads a flow of the given kind or shows the "expired" page
// (for a login, starts it again where this browser can: loginGone).
func (s *Server) flowOrError(w http.ResponseWriter, r *http.Request, id, kind string) (*flow, bool) {
	if kind == "login" {
		f, err := s.openLogin(r, id)
		if err != nil {
			loginID := id // a login stored before logins were sealed: its restart is bound to its flow id
			if f != nil {
				loginID = f.loginID
			}
			s.loginGone(w, r, loginID, restartExpired)
			return nil, false
		}
		return f, true
	}
	f, err := s.loadFlow(r.Context(), r, id)
	if err == nil && f.Kind != kind {
		err = errFlowGone
	}
	switch {
	case err != nil:
		s.flowFailed(w, r, err)
		return nil, false
	}
	return f, true
}

// flowFailed answers a request whose flow is gone (errFlowGone) with the
// expired-flow page, which links to the login, and any other error as the
// store's.
func (s *Server) flowFailed(w http.ResponseWriter, r *http.Request, err error) {
	s.flowFailedBack(w, r, err, "/login")
}

// flowFailedBack is flowFailed with the expired-flow page linking to back.
func (s *Server) flowFailedBack(w http.ResponseWriter, r *http.Request, err error, back string) {
	if errors.Is(err, errFlowGone) {
		s.render(w, r, http.StatusBadRequest, templates.Error(templates.ErrorPage{
			Page: s.page(w, r, nil), Status: http.StatusBadRequest, Message: "flow_expired", BackURL: back,
		}))
		return
	}
	s.storeFailed(w, r, err)
}
