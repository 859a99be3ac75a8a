package web

import (
	"encoding/json"
	"errors"
	"mime"
	"net/http"
	"strings"
	"unicode/utf8"

	"github.com/kamera-id/idp/templates"
)

// Input rules applied to every request before any handler sees it: an
// OAuth 2.0 or form request that breaks them is refused with a 400 that
// says why, never a 500.
const maxFieldLen = 8 << 10

// fieldLimits are tighter limits for the hosted forms' own fields (the
// protocol endpoints have fields of the same names, e.g. the token
// endpoint's code, with the general limit). A flow (a sealed login: up to
// a few KiB) has the general limit.
var fieldLimits = map[string]int{
	"email": 254, "password": 1024, "code": 64, "backup_code": 64,
	"csrf": 128, "remember": 8, "consent": 8,
}

// inputError is a request the provider refuses to read: its status, and
// why as a message key with its arguments (the parameter it names).
type inputError struct {
	status int
	key    string
	args   []any
}

// text is why in lang (for the API's error_description and the log:
// English).
func (e *inputError) text(lang string) string { return templates.Tf(lang, e.key, e.args...) }

// checkInput refuses unknown content types, bodies over the limit, invalid
// UTF-8, over-long fields and repeated parameters (RFC 6749 section 3.1:
// parameters must not be included more than once).
func (s *Server) checkInput(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if e := validateInput(r); e != nil {
			msg := e.text(templates.LangEN)
			s.Logger.InfoContext(r.Context(), "bad request", append(logAttrs(r), "why", msg)...)
			if isAPIPath(r.URL.Path) {
				if s.Provider != nil {
					s.Provider.RefusedInput(w, r)
				}
				w.Header().Set("Content-Type", "application/json;charset=UTF-8")
				w.Header().Set("Cache-Control", "no-store")
				w.WriteHeader(e.status)
				_ = json.NewEncoder(w).Encode(map[string]string{"error": "invalid_request", "error_description": msg})
				return
			}
			s.setPageHeaders(w.Header())
			s.renderErrorDetail(w, r, e.status, "invalid_request", e.key, e.args...)
			return
		}
		next.ServeHTTP(w, r)
	})
}

func validateInput(r *http.Request) *inputError {
	if r.Method == http.MethodPost || r.Method == http.MethodPut || r.Method == http.MethodPatch {
		ct := r.Header.Get("Content-Type")
		if ct == "" && r.ContentLength != 0 {
			return &inputError{status: http.StatusBadRequest, key: "input_no_content_type"}
		}
		if ct != "" {
			mt, params, err := mime.ParseMediaType(ct)
			if err != nil || mt != "application/x-www-form-urlencoded" {
				return &inputError{status: http.StatusUnsupportedMediaType, key: "input_media_type"}
			}
			if cs, ok := params["charset"]; ok && !strings.EqualFold(cs, "utf-8") {
				return &inputError{status: http.StatusBadRequest, key: "input_charset"}
			}
		}
	}
	query, api := r.URL.RawQuery, isAPIPath(r.URL.Path)
	if err := r.ParseForm(); err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			return &inputError{status: http.StatusRequestEntityTooLarge, key: "input_too_large"}
		}
		return &inputError{status: http.StatusBadRequest, key: "input_not_form"}
	}
	if !utf8.ValidString(query) {
		return &inputError{status: http.StatusBadRequest, key: "input_query_utf8"}
	}
	for name, values := range r.Form {
		if len(values) > 1 {
			return named("input_repeated", name)
		}
		if !utf8.ValidString(name) || !utf8.ValidString(values[0]) || strings.ContainsRune(values[0], 0) {
			return &inputError{status: http.StatusBadRequest, key: "input_utf8"}
		}
		limit, ok := fieldLimits[name]
		if !ok || api {
			limit = maxFieldLen
		}
		if len(values[0]) > limit {
			return named("input_too_long", name)
		}
	}
	return nil
}

// named is the 400 of key about the parameter name. The page says which
// parameter only when the provider reads one of that name (knownParams):
// any other name is the requester's text, and the provider's own page
// must not carry whatever a link's author chose to write there
// ("expired_call_0120_444_444").
func named(key, name string) *inputError {
	if knownParams[name] {
		return &inputError{status: http.StatusBadRequest, key: key, args: []any{name}}
	}
	return &inputError{status: http.StatusBadRequest, key: key + "_unnamed"}
}

// knownParams are the parameters the provider reads: its forms' and
// pages', and those of OAuth 2.0 and OpenID Connect requests (fosite's).
var knownParams = func() map[string]bool {
	m := map[string]bool{}
	for _, p := range strings.Fields(`account b backup_code client consent continue csrf email flow lang locale
		new_password new_password_confirm notice others password remember return_to session
		access_token acr_values audience claims client_assertion client_assertion_type client_id client_secret
		code code_challenge code_challenge_method code_verifier display grant_type id_token_hint login_hint
		max_age nonce post_logout_redirect_uri prompt redirect_uri refresh_token registration request
		request_uri response_mode response_type scope state token token_type_hint ui_locales`) {
		m[p] = true
	}
	for p := range fieldLimits {
		m[p] = true
	}
	return m
}()
