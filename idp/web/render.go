package web

import (
	"bytes"
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/a-h/templ"

	"github.com/kamera-id/idp/idp/config"
	"github.com/kamera-id/idp/idp/store"
	"github.com/kamera-id/idp/templates"
)

// langCookie remembers the language chosen with the switch.
const langCookie = "idp_lang"

// lang picks the page language: the one chosen with the footer's switch
// (?lang=, then remembered in a cookie), the flow's (the relying party's
// ui_locales, or the browser's when the flow began), the query's
// ui_locales, then the browser's Accept-Language; Japanese by default.
func (s *Server) lang(r *http.Request, f *flow) string { return s.langOf(r, r.URL.Query(), f) }

// langOf is lang with the request's query already parsed.
func (s *Server) langOf(r *http.Request, q url.Values, f *flow) string {
	if v := q.Get("lang"); templates.IsLang(v) {
		return v
	}
	if v := s.cookie(r, langCookie); templates.IsLang(v) {
		return v
	}
	if f != nil && f.Lang != "" {
		return f.Lang
	}
	if v := q.Get("ui_locales"); v != "" {
		return templates.NormalizeLang(v)
	}
	return templates.NormalizeLang(r.Header.Get("Accept-Language"))
}

// page fills what every page shares, including a CSRF token for its forms
// and the language switch (remembering a choice made with it for a year):
// on a page fetched with GET, links to the same URL in each language; on a
// login step's page answering its form (a wrong password, say), links to
// that step's page of the same flow.
func (s *Server) page(w http.ResponseWriter, r *http.Request, f *flow) templates.Page {
	return s.pageAt(w, r, f, r.URL.Path)
}

// pageAt is page for the step of a flow shown at path, which answers a
// form posted to another path (the code form answers the password form):
// its language links go to path.
func (s *Server) pageAt(w http.ResponseWriter, r *http.Request, f *flow, path string) templates.Page {
	q := r.URL.Query()
	p := templates.Page{
		Lang:      s.langOf(r, q, f),
		CSRF:      s.csrfToken(w, r),
		Brand:     s.lookFor(f).brand,
		RequestID: RequestID(r.Context()),
	}
	var base string
	switch {
	case r.Method == http.MethodGet:
		s.keepLangChoice(w, r)
	case f != nil && f.id != "" && flowSteps[path]:
		base, q = path, url.Values{"flow": {f.id}}
		p.StepPath = path
	default:
		return p
	}
	for _, l := range templates.Langs {
		q.Set("lang", l.Tag)
		p.LangLinks = append(p.LangLinks, templates.LangLink{
			Lang: l.Tag, Label: l.Name, Href: base + "?" + q.Encode(), Current: l.Tag == p.Lang,
		})
	}
	return p
}

// keepLangChoice remembers a language chosen with ?lang= (the switch's
// links) in a cookie for a year.
func (s *Server) keepLangChoice(w http.ResponseWriter, r *http.Request) {
	if v := r.URL.Query().Get("lang"); templates.IsLang(v) && s.cookie(r, langCookie) != v {
		s.setCookie(w, langCookie, v, 365*24*time.Hour)
	}
}

// flowSteps are the pages whose form posts back to the same path, which
// also shows the step again with GET and the flow's id.
var flowSteps = map[string]bool{"/login": true, "/login/totp": true, "/login/backup": true, "/consent": true}

// accountPage is page() for the signed-in user u: in the account's
// language (chosen on My Page) unless this browser chose one (the switch,
// ?lang=), so My Page speaks it in a browser the user never used before.
func (s *Server) accountPage(w http.ResponseWriter, r *http.Request, u *store.User) templates.Page {
	return s.accountPageIn(w, r, u, "")
}

// accountPageIn is accountPage for a page of a settings flow begun in lang
// (the low-codes notice's link, in a relying party's ui_locales): the
// flow's pages answering its forms, whose URLs carry no language, speak
// it as its first page did, when the account has no language of its own.
func (s *Server) accountPageIn(w http.ResponseWriter, r *http.Request, u *store.User, lang string) templates.Page {
	f := inLocale(u)
	if f == nil && templates.IsLang(lang) {
		f = &flow{Lang: lang}
	}
	p := s.page(w, r, f)
	p.LoggedIn = true
	return p
}

// inLocale is a flow of no kind in the language of the account u (nil when
// it has none): page() with it speaks the account's language, unless this
// browser chose one. u may be nil.
func inLocale(u *store.User) *flow {
	if u == nil || !templates.IsLang(u.Locale) {
		return nil
	}
	return &flow{Lang: u.Locale}
}

func (s *Server) render(w http.ResponseWriter, r *http.Request, status int, c templ.Component) {
	if status == http.StatusTooManyRequests {
		if v := retryAfter429(r, s.Now()); v != "" {
			w.Header().Set("Retry-After", v) // when the lockout the request found ends
		}
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	// Without the request's deadline: the page that says the deadline
	// passed (503) must still be written.
	if err := c.Render(context.WithoutCancel(r.Context()), w); err != nil {
		s.Logger.ErrorContext(r.Context(), "render", append(logAttrs(r), "err", err)...)
	}
}

// renderComplete is render for a handler with work left after the answer:
// the page goes out whole (with its length) and is flushed, so the client
// has it before the handler returns.
func (s *Server) renderComplete(w http.ResponseWriter, r *http.Request, status int, c templ.Component) {
	var buf bytes.Buffer
	if err := c.Render(context.WithoutCancel(r.Context()), &buf); err != nil {
		s.Logger.ErrorContext(r.Context(), "render", append(logAttrs(r), "err", err)...)
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Content-Length", strconv.Itoa(buf.Len()))
	w.WriteHeader(status)
	_, _ = w.Write(buf.Bytes())
	_ = http.NewResponseController(w).Flush()
}

// renderError shows an error page; message is a message key.
func (s *Server) renderError(w http.ResponseWriter, r *http.Request, status int, message string) {
	s.renderErrorDetail(w, r, status, message, "")
}

// renderErrorDetail is renderError with a detail line (never internals):
// the message detail, with args for its verbs, in the page's language.
func (s *Server) renderErrorDetail(w http.ResponseWriter, r *http.Request, status int, message, detail string, args ...any) {
	p := templates.ErrorPage{Page: s.page(w, r, nil), Status: status, Message: message}
	if detail != "" {
		p.Detail = templates.Tf(p.Lang, detail, args...)
	}
	switch status {
	case http.StatusTooManyRequests:
		// Unless render finds a lockout of the request's own (too many
		// requests at once, say).
		w.Header().Set("Retry-After", "60")
	case http.StatusServiceUnavailable:
		w.Header().Set("Retry-After", retryAfter)
	}
	s.render(w, r, status, templates.Error(p))
}

// look is a brand with its generated style sheet.
type look struct {
	brand templates.Brand
	sheet []byte
	etag  string
}

func newLook(b templates.Brand) *look {
	l := &look{brand: b}
	l.sheet, l.etag = brandStyle(b.PrimaryColor)
	return l
}

// lookFor is the brand of the relying party a flow serves, or the
// provider's own (outside a relying party's login: My Page, password reset,
// errors).
func (s *Server) lookFor(f *flow) *look {
	if f != nil && f.ClientID != "" {
		if l, ok := s.clientBrand[f.ClientID]; ok {
			return l
		}
	}
	return s.brand
}

// brandCSS serves a brand's colour as a stylesheet (the CSP allows no
// inline styles): ?b= names a relying party family's brand, none or an
// unknown one the provider's. config.Validate admits only #rrggbb, so the
// value cannot break out of the declaration; anything else falls back to
// the default.
func (s *Server) brandCSS(w http.ResponseWriter, r *http.Request) {
	l := s.brand
	if b, ok := s.brands[r.URL.Query().Get("b")]; ok {
		l = b
	}
	w.Header().Set("Content-Type", "text/css; charset=utf-8")
	w.Header().Set("Cache-Control", "public, max-age=300")
	w.Header().Set("ETag", l.etag)
	if match := r.Header.Get("If-None-Match"); match != "" && (match == l.etag || match == "*") {
		w.WriteHeader(http.StatusNotModified)
		return
	}
	_, _ = w.Write(l.sheet)
}

// defaultBrandColor is the accent colour when none is configured.
const defaultBrandColor = "#0b5cad"

// brandStyle is the generated style sheet of the configured brand and its ETag.
func brandStyle(color string) (sheet []byte, etag string) {
	if _, _, _, ok := config.ParseHexColor(color); !ok {
		color = defaultBrandColor
	}
	sheet = []byte(":root{--brand:" + strings.ToLower(color) + "}\n")
	sum := sha256.Sum256(sheet)
	return sheet, `"` + hex.EncodeToString(sum[:8]) + `"`
}

// heldAnswer is an answer prepared but not yet sent (establish): its
// headers, status and body, written to the browser's response by writeTo.
type heldAnswer struct {
	header http.Header
	status int
	body   bytes.Buffer
}

func (a *heldAnswer) Header() http.Header { return a.header }

func (a *heldAnswer) WriteHeader(status int) {
	if a.status == 0 {
		a.status = status
	}
}

func (a *heldAnswer) Write(b []byte) (int, error) {
	a.WriteHeader(http.StatusOK)
	return a.body.Write(b)
}

// writeTo sends the answer on w, whose own cookies (the session's, set
// meanwhile) stay with those of the answer.
func (a *heldAnswer) writeTo(w http.ResponseWriter) {
	h := w.Header()
	for k, v := range a.header {
		if k == "Set-Cookie" {
			h[k] = append(h[k], v...)
		} else {
			h[k] = v
		}
	}
	w.WriteHeader(cmp.Or(a.status, http.StatusOK))
	_, _ = w.Write(a.body.Bytes())
}
