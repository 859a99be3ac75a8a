package web

import (
	"encoding/json"
	"errors"
	"mime"
	"net/http"
	"strings"
	"unicode/utf8"
)

// Input rules applied to every request before any handler sees it: an
// OAuth 2.0 or form request that breaks them is refused with a 400 that
// says why, never a 500.
const maxFieldLen = 8 << 10

// fieldLimits are tighter limits for the hosted forms' own fields (the
// protocol endpoints have fields of the same names, e.g. the token
// endpoint's code, with the general limit).
var fieldLimits = map[string]int{
	"email": 254, "password": 1024, "code": 16, "backup_code": 64,
	"csrf": 128, "flow": 128, "remember": 8, "consent": 8,
}

// inputError is a request the provider refuses to read.
type inputError struct {
	status int
	msg    string
}

// checkInput refuses unknown content types, bodies over the limit, invalid
// UTF-8, over-long fields and repeated parameters (RFC 6749 section 3.1:
// parameters must not be included more than once).
func (s *Server) checkInput(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if e := validateInput(r); e != nil {
			s.Logger.InfoContext(r.Context(), "bad request", append(logAttrs(r), "why", e.msg)...)
			if isAPIPath(r.URL.Path) {
				w.Header().Set("Content-Type", "application/json;charset=UTF-8")
				w.Header().Set("Cache-Control", "no-store")
				w.WriteHeader(e.status)
				_ = json.NewEncoder(w).Encode(map[string]string{"error": "invalid_request", "error_description": e.msg})
				return
			}
			s.setPageHeaders(w.Header())
			s.renderErrorDetail(w, r, e.status, "invalid_request", e.msg)
			return
		}
		next.ServeHTTP(w, r)
	})
}

func validateInput(r *http.Request) *inputError {
	if r.Method == http.MethodPost || r.Method == http.MethodPut || r.Method == http.MethodPatch {
		ct := r.Header.Get("Content-Type")
		if ct == "" && r.ContentLength != 0 {
			return &inputError{http.StatusBadRequest, "a request body needs a Content-Type"}
		}
		if ct != "" {
			mt, params, err := mime.ParseMediaType(ct)
			if err != nil || mt != "application/x-www-form-urlencoded" {
				return &inputError{http.StatusUnsupportedMediaType, "send application/x-www-form-urlencoded"}
			}
			if cs, ok := params["charset"]; ok && !strings.EqualFold(cs, "utf-8") {
				return &inputError{http.StatusBadRequest, "the only charset accepted is UTF-8"}
			}
		}
	}
	query, api := r.URL.RawQuery, isAPIPath(r.URL.Path)
	if err := r.ParseForm(); err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			return &inputError{http.StatusRequestEntityTooLarge, "the request body is too large"}
		}
		return &inputError{http.StatusBadRequest, "the request is not a valid form"}
	}
	if !utf8.ValidString(query) {
		return &inputError{http.StatusBadRequest, "the query is not valid UTF-8"}
	}
	for name, values := range r.Form {
		if len(values) > 1 {
			return &inputError{http.StatusBadRequest, "parameter " + clip(name) + " is repeated"}
		}
		if !utf8.ValidString(name) || !utf8.ValidString(values[0]) || strings.ContainsRune(values[0], 0) {
			return &inputError{http.StatusBadRequest, "parameters must be valid UTF-8 text"}
		}
		limit, ok := fieldLimits[name]
		if !ok || api {
			limit = maxFieldLen
		}
		if len(values[0]) > limit {
			return &inputError{http.StatusBadRequest, "parameter " + clip(name) + " is too long"}
		}
	}
	return nil
}

func clip(s string) string {
	if !utf8.ValidString(s) {
		return "(invalid)"
	}
	if len(s) > 40 {
		return s[:40] + "..."
	}
	return s
}
