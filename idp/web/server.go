// Package web serves the hosted pages and routes the protocol endpoints:
// middleware (request ids, security headers, CSRF, body limits, panic
// recovery), the login state machine's form handlers (password, TOTP code,
// backup code), consent, logout and My Page.
package web

import (
	"context"
	"errors"
	"io/fs"
	"log/slog"
	"net/http"
	"time"

	"github.com/kamera-id/idp/idp/config"
	"github.com/kamera-id/idp/idp/crypt"
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
	// Now is the clock; nil means time.Now. Tests move it.
	Now func() time.Time
}

// Server is the HTTP side of the provider.
type Server struct {
	Deps
	handler http.Handler
	static  http.Handler
	brand   templates.Brand
	// brandSheet is /static/brand.css, generated once from the brand colour.
	brandSheet []byte
	brandETag  string
}

// New builds the server and its routes.
func New(d Deps) *Server {
	if d.Now == nil {
		d.Now = time.Now
	}
	if d.Logger == nil {
		d.Logger = slog.Default()
	}
	s := &Server{Deps: d}
	s.brand = templates.Brand{ProductName: d.Config.BrandName, LogoURL: d.Config.BrandLogoURL, PrimaryColor: d.Config.BrandColor}
	s.brandSheet, s.brandETag = brandStyle(d.Config.BrandColor)
	staticFS, err := fs.Sub(templates.Static, "static")
	if err != nil {
		panic(err) // the embedded folder is part of the binary
	}
	s.static = http.StripPrefix("/static/", http.FileServerFS(staticFS))
	s.handler = s.routes()
	return s
}

// ServeHTTP implements http.Handler.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.handler.ServeHTTP(w, r) }

func (s *Server) routes() http.Handler {
	p := s.Provider
	api := http.NewServeMux()
	api.HandleFunc("GET "+oidc.PathDiscovery, p.Discovery)
	api.HandleFunc("GET "+oidc.PathJWKS, p.JWKS)
	api.HandleFunc("POST "+oidc.PathToken, p.Token)
	api.HandleFunc("POST "+oidc.PathRevoke, p.Revoke)
	api.HandleFunc("POST "+oidc.PathIntrospect, p.Introspect)
	api.HandleFunc("GET "+oidc.PathUserinfo, p.Userinfo)
	api.HandleFunc("POST "+oidc.PathUserinfo, p.Userinfo)
	api.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) { _, _ = w.Write([]byte("ok\n")) })
	api.HandleFunc("GET /readyz", s.readyz)

	pages := http.NewServeMux()
	pages.HandleFunc("GET "+oidc.PathAuthorize, s.authorize)
	pages.HandleFunc("POST "+oidc.PathAuthorize, s.authorize)
	pages.HandleFunc("GET /login", s.loginPage)
	pages.HandleFunc("POST /login", s.loginSubmit)
	pages.HandleFunc("GET /login/totp", s.totpPage)
	pages.HandleFunc("POST /login/totp", s.totpSubmit)
	pages.HandleFunc("GET /login/backup", s.backupPage)
	pages.HandleFunc("POST /login/backup", s.backupSubmit)
	pages.HandleFunc("GET /login/continue", s.continueLogin)
	pages.HandleFunc("GET /forgot-password", s.forgotPassword)
	pages.HandleFunc("GET /consent", s.consentPage)
	pages.HandleFunc("POST /consent", s.consentSubmit)
	pages.HandleFunc("GET "+oidc.PathEndSession, s.logoutStart)
	pages.HandleFunc("POST "+oidc.PathEndSession, s.logoutSubmit)
	pages.HandleFunc("GET /account", s.account)
	pages.HandleFunc("GET /account/2fa", s.twoFA)
	pages.HandleFunc("GET /account/2fa/setup", s.setupStart)
	pages.HandleFunc("POST /account/2fa/setup", s.setupSubmit)
	pages.HandleFunc("GET /account/2fa/disable", s.disablePage)
	pages.HandleFunc("POST /account/2fa/disable", s.disableSubmit)
	pages.HandleFunc("GET /account/2fa/backup-codes", s.backupCodesStart)
	pages.HandleFunc("POST /account/2fa/backup-codes", s.backupCodesSubmit)
	pages.HandleFunc("POST /account/2fa/backup-codes/replace", s.backupCodesReplace)
	pages.HandleFunc("GET /static/brand.css", s.brandCSS)
	pages.Handle("GET /static/", s.static)
	pages.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
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
	cop.SetDenyHandler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.renderError(w, r, http.StatusForbidden, "csrf")
	}))
	pagesH := s.pageHeaders(cop.Handler(pages))

	mux := http.NewServeMux()
	mux.Handle("/", pagesH)
	for _, path := range apiPaths {
		mux.Handle(path, apiHeaders(api))
	}
	return s.requestID(s.recoverer(limitBody(s.checkInput(mux))))
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

func (s *Server) readyz(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
	defer cancel()
	if err := s.Store.Ping(ctx); err != nil {
		http.Error(w, "store unavailable\n", http.StatusServiceUnavailable)
		return
	}
	_, _ = w.Write([]byte("ok\n"))
}

// storeFailed reports a store error: 503 with a friendly page when the
// database is unreachable, 500 otherwise; internals only go to the log.
func (s *Server) storeFailed(w http.ResponseWriter, r *http.Request, err error) {
	if errors.Is(err, store.ErrUnavailable) || errors.Is(err, context.DeadlineExceeded) {
		s.Logger.WarnContext(r.Context(), "store unavailable", "err", err)
		s.renderError(w, r, http.StatusServiceUnavailable, "unavailable")
		return
	}
	s.Logger.ErrorContext(r.Context(), "internal error", "err", err)
	s.renderError(w, r, http.StatusInternalServerError, "server_error")
}
