// Package web serves the hosted pages and routes the protocol endpoints:
// middleware (request ids, security headers, CSRF, body limits, panic
// recovery), the login state machine's form handlers (password, TOTP code,
// backup code), consent, logout and My Page.
package web

import (
	"cmp"
	"context"
	"errors"
	"io/fs"
	"log/slog"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"sync/atomic"
	"time"

	"github.com/kamera-id/idp/idp/config"
	"github.com/kamera-id/idp/idp/crypt"
	"github.com/kamera-id/idp/idp/mail"
	"github.com/kamera-id/idp/idp/metrics"
	"github.com/kamera-id/idp/idp/oidc"
	"github.com/kamera-id/idp/idp/password"
	"github.com/kamera-id/idp/idp/store"
	"github.com/kamera-id/idp/templates"
)

// Deps is everything the web layer calls down into.
type Deps struct {
	Config   config.Config
	Store    store.Store
	Key      *crypt.Key
	Hasher   *password.Hasher
	Provider *oidc.Provider
	Logger   *slog.Logger
	// Metrics receives the counters and timings; nil records nothing.
	Metrics metrics.Recorder
	// Now is the clock; nil means time.Now. Tests move it.
	Now func() time.Time
	// Outbox queues the e-mails (security notices, reset links).
	Outbox *mail.Outbox
}

// Server is the HTTP side of the provider.
type Server struct {
	Deps
	handler http.Handler
	static  http.Handler
	// staticFS holds the pages' assets (templates/static).
	staticFS fs.FS
	trusted  []netip.Prefix // proxies whose X-Forwarded-For is believed
	// brand is the provider's own look (IDP_BRAND_*); brands are the relying
	// party families' (IDP_BRANDS_FILE) by brand id, and clientBrand by
	// client id. Each has its style sheet, generated once.
	brand       *look
	brands      map[string]*look
	clientBrand map[string]*look
	timeout     time.Duration // RequestTimeout; tests shorten it
	attempts    keyedSlots    // one password or code attempt per account at a time (limits.go)
	addresses   keyedSlots    // password attempts in flight per client address (limits.go)
	draining    atomic.Bool   // set by Drain: /readyz fails from then on
	after       afterWork     // work left for after an answer (afterAnswer)
}

// New builds the server and its routes.
func New(d Deps) *Server {
	if d.Now == nil {
		d.Now = time.Now
	}
	if d.Logger == nil {
		d.Logger = slog.Default()
	}
	d.Logger = WithRequestIDs(d.Logger)
	d.Metrics = metrics.OrNop(d.Metrics)
	if d.Outbox == nil {
		d.Outbox = mail.NewOutbox(d.Store, d.Key, d.Now)
	}
	s := &Server{Deps: d, timeout: RequestTimeout}
	if d.Hasher != nil {
		s.addresses.size = min(d.Hasher.Concurrency(), maxAddressSlots)
	}
	s.trusted, _ = d.Config.TrustedProxyPrefixes() // checked by Config.Validate
	s.brand = newLook(templates.Brand{ProductName: d.Config.BrandName, LogoURL: d.Config.BrandLogoURL, PrimaryColor: d.Config.BrandColor})
	s.brands, s.clientBrand = map[string]*look{}, map[string]*look{}
	for _, b := range d.Config.Brands {
		l := newLook(templates.Brand{ID: b.ID, ProductName: b.Name,
			LogoURL: cmp.Or(b.LogoURL, d.Config.BrandLogoURL), PrimaryColor: cmp.Or(b.Color, d.Config.BrandColor)})
		s.brands[b.ID] = l
		for _, c := range b.Clients {
			s.clientBrand[c] = l
		}
	}
	staticFS, err := fs.Sub(templates.Static, "static")
	if err != nil {
		panic(err) // the embedded folder is part of the binary
	}
	s.staticFS = staticFS
	s.static = http.StripPrefix("/static/", http.FileServerFS(staticFS))
	s.handler = s.routes()
	return s
}

// ServeHTTP implements http.Handler.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.handler.ServeHTTP(w, r) }

func (s *Server) routes() http.Handler {
	p := s.Provider
	api := http.NewServeMux()
	// Cross-origin reads for public clients' pages: oidc/cors.go.
	handle(api, "GET "+oidc.PathDiscovery, oidc.AnyOrigin(p.Discovery))
	handle(api, "GET "+oidc.PathJWKS, oidc.AnyOrigin(p.JWKS))
	handle(api, "POST "+oidc.PathToken, p.ClientOrigin(p.Token))
	handle(api, "OPTIONS "+oidc.PathToken, p.Preflight("POST"))
	handle(api, "POST "+oidc.PathRevoke, p.ClientOrigin(p.Revoke))
	handle(api, "OPTIONS "+oidc.PathRevoke, p.Preflight("POST"))
	handle(api, "POST "+oidc.PathIntrospect, p.Introspect)
	handle(api, "GET "+oidc.PathUserinfo, p.PublicOrigin(p.Userinfo))
	handle(api, "POST "+oidc.PathUserinfo, p.PublicOrigin(p.Userinfo))
	handle(api, "OPTIONS "+oidc.PathUserinfo, p.Preflight("GET, POST"))
	handle(api, "GET /healthz", func(w http.ResponseWriter, r *http.Request) { _, _ = w.Write([]byte("ok\n")) })
	handle(api, "GET /readyz", s.readyz)

	pages := http.NewServeMux()
	handle(pages, "GET "+oidc.PathAuthorize, s.authorize)
	handle(pages, "POST "+oidc.PathAuthorize, s.authorizePost)
	handle(pages, "GET /login", s.loginPage)
	handle(pages, "POST /login", s.loginSubmit)
	handle(pages, "GET /login/totp", s.totpPage)
	handle(pages, "POST /login/totp", s.totpSubmit)
	handle(pages, "GET /login/backup", s.backupPage)
	handle(pages, "POST /login/backup", s.backupSubmit)
	handle(pages, "GET /login/notice", s.lowCodesNotice)
	handle(pages, "GET /login/continue", s.continueLogin)
	handle(pages, "GET /login/account", s.accountChoicePage)
	handle(pages, "POST /login/account", s.accountChoiceSubmit)
	handle(pages, "GET /forgot-password", s.forgotPassword)
	handle(pages, "POST /forgot-password", s.forgotPasswordSubmit)
	handle(pages, "GET /reset-password", s.resetPasswordPage)
	handle(pages, "POST /reset-password", s.resetPasswordSubmit)
	handle(pages, "POST /account/locale", s.accountLocale)
	handle(pages, "GET /account/password", s.changePasswordPage)
	handle(pages, "POST /account/password", s.changePasswordSubmit)
	handle(pages, "GET /account/sessions", s.sessionsPage)
	handle(pages, "POST /account/sessions/revoke", s.sessionRevoke)
	handle(pages, "POST /account/sessions/revoke-others", s.sessionsRevokeOthers)
	handle(pages, "GET /account/apps", s.appsPage)
	handle(pages, "POST /account/apps/revoke", s.appRevoke)
	handle(pages, "GET /consent", s.consentPage)
	handle(pages, "POST /consent", s.consentSubmit)
	handle(pages, "GET "+oidc.PathEndSession, s.logoutStart)
	handle(pages, "POST "+oidc.PathEndSession, s.logoutSubmit)
	handle(pages, "GET /account", s.account)
	handle(pages, "GET /account/2fa", s.twoFA)
	handle(pages, "GET /account/2fa/setup", s.setupStart)
	handle(pages, "POST /account/2fa/setup", s.setupSubmit)
	handle(pages, "GET /account/2fa/disable", s.disablePage)
	handle(pages, "POST /account/2fa/disable", s.disableSubmit)
	handle(pages, "GET /account/2fa/backup-codes", s.backupCodesStart)
	handle(pages, "POST /account/2fa/backup-codes", s.backupCodesSubmit)
	handle(pages, "POST /account/2fa/backup-codes/replace", s.backupCodesReplace)
	handle(pages, "GET /static/brand.css", s.brandCSS)
	handle(pages, "GET /static/", s.staticFile)
	handle(pages, "/", func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/" && r.Method == http.MethodGet {
			http.Redirect(w, r, "/account", http.StatusSeeOther)
			return
		}
		s.renderError(w, r, http.StatusNotFound, "not_found")
	})

	// Hosted pages get the browser protections; protocol endpoints are
	// called by relying parties' servers (and browsers' fetch for public
	// clients), so they are not subject to cross-origin form checks.
	cop := http.NewCrossOriginProtection()
	// A relying party's page may post its authorization or logout request
	// here (both must work by POST); it is answered as the same request by
	// GET would be, which is not cross-origin protected either.
	cop.AddInsecureBypassPattern("POST " + oidc.PathAuthorize)
	cop.AddInsecureBypassPattern("POST " + oidc.PathEndSession)
	issuerOrigin := s.issuerOrigin()
	cop.SetDenyHandler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// Without Sec-Fetch-Site (an older browser, a script) the check
		// compares Origin with the request's Host, which is not the
		// issuer's behind a proxy that sets its own, or for a client that
		// reached the listen address (127.0.0.1) of a localhost issuer. An
		// Origin that is the issuer's own is same-origin all the same.
		if r.Header.Get("Sec-Fetch-Site") == "" && issuerOrigin != "" && r.Header.Get("Origin") == issuerOrigin {
			pages.ServeHTTP(w, r)
			return
		}
		s.renderError(w, r, http.StatusForbidden, "csrf")
	}))
	pagesH := s.pageHeaders(withLockNote(cop.Handler(pages))) // the deny handler's pages too

	mux := http.NewServeMux()
	mux.Handle("/", pagesH)
	for _, path := range apiPaths {
		mux.Handle(path, apiHeaders(api))
	}
	return metrics.Instrument(s.Metrics, s.requestID(s.recoverer(s.deadline(limitBody(s.checkInput(mux))))))
}

// issuerOrigin is the issuer's origin, scheme://host[:port], as a browser
// sends it in Origin ("" if the issuer does not parse).
func (s *Server) issuerOrigin() string {
	u, err := url.Parse(s.Config.Issuer)
	if err != nil || u.Scheme == "" || u.Host == "" {
		return ""
	}
	return u.Scheme + "://" + u.Host
}

// staticFile serves one of the pages' assets: files only (a folder, or
// a name that is none, gets the 404 page, not a listing), cacheable for an
// hour, since they change only with a release.
func (s *Server) staticFile(w http.ResponseWriter, r *http.Request) {
	st, err := fs.Stat(s.staticFS, strings.TrimPrefix(r.URL.Path, "/static/"))
	if err != nil || st.IsDir() {
		s.renderError(w, r, http.StatusNotFound, "not_found")
		return
	}
	w.Header().Set("Cache-Control", "public, max-age=3600")
	s.static.ServeHTTP(w, r)
}

// asGet answers a protocol request that a relying party's page posted
// (OIDC Core 3.1.2.1 and RP-Initiated Logout 2 ask for POST as well as GET)
// with a redirect to the same request by GET: a cross-site POST carries no
// SameSite=Lax cookie, the GET navigation that follows does, so the SSO
// session is seen. The query's and the body's parameters both go (checkInput
// has parsed and checked them).
func asGet(path string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, path+"?"+r.Form.Encode(), http.StatusSeeOther)
	}
}

// authorizePost serves an authorization request by POST: from another
// site (a relying party's page) as asGet, from this one as a GET would be.
func (s *Server) authorizePost(w http.ResponseWriter, r *http.Request) {
	if crossSite(r) {
		asGet(oidc.PathAuthorize)(w, r)
		return
	}
	s.authorize(w, r)
}

// crossSite reports a request that a browser sent from another origin, by
// the headers http.CrossOriginProtection reads (none: not a browser's).
func crossSite(r *http.Request) bool {
	if site := r.Header.Get("Sec-Fetch-Site"); site != "" {
		return site != "same-origin" && site != "none"
	}
	origin := r.Header.Get("Origin")
	if origin == "" {
		return false
	}
	u, err := url.Parse(origin)
	return err != nil || u.Host != r.Host
}

// handle registers h for pattern and names the route for the request
// metrics (the pattern, never the raw path, so the labels stay few).
func handle(mux *http.ServeMux, pattern string, h http.HandlerFunc) {
	mux.HandleFunc(pattern, func(w http.ResponseWriter, r *http.Request) {
		metrics.SetRoute(r, pattern)
		h(w, r)
	})
}

// apiPaths are the protocol endpoints called by relying parties' servers.
var apiPaths = []string{oidc.PathDiscovery, oidc.PathJWKS, oidc.PathToken, oidc.PathRevoke,
	oidc.PathIntrospect, oidc.PathUserinfo, "/healthz", "/readyz"}

func isAPIPath(p string) bool {
	for _, a := range apiPaths {
		if p == a {
			return true
		}
	}
	return false
}

// Drain makes /readyz answer 503 from now on, whatever the store's state:
// the process is shutting down, and load balancers should stop sending it
// requests while it still serves them (IDP_SHUTDOWN_DRAIN).
func (s *Server) Drain() { s.draining.Store(true) }

func (s *Server) readyz(w http.ResponseWriter, r *http.Request) {
	if s.draining.Load() {
		http.Error(w, "shutting down\n", http.StatusServiceUnavailable)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
	defer cancel()
	if err := s.Store.Ping(ctx); err != nil {
		s.Logger.WarnContext(r.Context(), "not ready: store unavailable", "err", err)
		w.Header().Set("Retry-After", retryAfter)
		http.Error(w, "store unavailable\n", http.StatusServiceUnavailable)
		return
	}
	_, _ = w.Write([]byte("ok\n"))
}

// retryAfter is the Retry-After of a 503 while the database is away: the
// pool reconnects by itself within seconds of its return.
const retryAfter = "5"

// storeFailed reports a store error: 503 with a friendly page when the
// database is unreachable, 500 otherwise; internals only go to the log.
func (s *Server) storeFailed(w http.ResponseWriter, r *http.Request, err error) {
	if errors.Is(err, context.Canceled) && r.Context().Err() != nil {
		// The client left while the request waited (for the store, the
		// hasher or an attempt lock): no fault of ours, and nobody reads
		// the answer.
		s.Logger.InfoContext(r.Context(), "request abandoned by the client", "path", r.URL.Path)
		s.renderError(w, r, http.StatusServiceUnavailable, "unavailable")
		return
	}
	if oidc.Unavailable(err) {
		s.Logger.WarnContext(r.Context(), "store unavailable", "path", r.URL.Path, "err", err)
		s.renderError(w, r, http.StatusServiceUnavailable, "unavailable")
		return
	}
	s.Logger.ErrorContext(r.Context(), "internal error", "path", r.URL.Path, "err", err)
	s.renderError(w, r, http.StatusInternalServerError, "server_error")
}
