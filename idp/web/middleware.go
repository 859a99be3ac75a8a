package web

import (
	"context"
	"log/slog"
	"net/http"
	"runtime/debug"

	"github.com/kamera-id/idp/idp/crypt"
)

type ctxKey int

const requestIDKey ctxKey = iota

// RequestID returns the id of the request being served ("" outside one).
func RequestID(ctx context.Context) string {
	id, _ := ctx.Value(requestIDKey).(string)
	return id
}

// requestID gives every request an id, carried by the log lines and shown
// on error pages, and logs the request when it ends.
func (s *Server) requestID(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id := crypt.RandomToken(9)
		w.Header().Set("X-Request-Id", id)
		ctx := context.WithValue(r.Context(), requestIDKey, id)
		next.ServeHTTP(w, r.WithContext(ctx))
	})
}

// recoverer turns a panic into a 500 page with the request id; the stack
// goes to the log only.
func (s *Server) recoverer(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer func() {
			if v := recover(); v != nil {
				if v == http.ErrAbortHandler {
					panic(v)
				}
				s.Logger.ErrorContext(r.Context(), "panic", "request_id", RequestID(r.Context()),
					"panic", v, "stack", string(debug.Stack()))
				s.setPageHeaders(w.Header())
				s.renderError(w, r, http.StatusInternalServerError, "server_error")
			}
		}()
		next.ServeHTTP(w, r)
	})
}

// maxBody is the most a form or token request may send.
const maxBody = 64 << 10

func limitBody(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		r.Body = http.MaxBytesReader(w, r.Body, maxBody)
		next.ServeHTTP(w, r)
	})
}

const csp = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data: https:; " +
	"connect-src 'self'; base-uri 'none'; frame-ancestors 'none'"

// pageHeaders sets the security headers of every hosted page.
func (s *Server) pageHeaders(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.setPageHeaders(w.Header())
		next.ServeHTTP(w, r)
	})
}

// setPageHeaders sets the headers of an HTML page. Pages rendered outside
// the pages' routes (input errors, recovered panics) call it themselves.
func (s *Server) setPageHeaders(h http.Header) {
	h.Set("Content-Security-Policy", csp)
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Cache-Control", "no-store")
	if s.Config.Secure() {
		h.Set("Strict-Transport-Security", "max-age=63072000; includeSubDomains")
	}
}

// apiHeaders sets the headers of the protocol endpoints (fosite sets
// Cache-Control: no-store on token responses itself).
func apiHeaders(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Content-Type-Options", "nosniff")
		w.Header().Set("Referrer-Policy", "no-referrer")
		next.ServeHTTP(w, r)
	})
}

// logAttrs are the attributes every log line of a request carries.
func logAttrs(r *http.Request) []any {
	return []any{slog.String("request_id", RequestID(r.Context())), slog.String("path", r.URL.Path)}
}
