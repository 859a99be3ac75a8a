package web

import (
	"context"
	"log/slog"
	"net/http"
	"runtime/debug"
	"strings"
	"time"

	"github.com/kamera-id/idp/idp/crypt"
)

type ctxKey int

const requestIDKey ctxKey = iota

// RequestID returns the id of the request being served ("" outside one).
func RequestID(ctx context.Context) string {
	id, _ := ctx.Value(requestIDKey).(string)
	return id
}

// requestID gives every request an id, carried by the log lines (see
// WithRequestIDs) and shown on error pages, and logs the request when it
// ends: method, path (never the query, which can carry codes and flow ids),
// status and duration.
func (s *Server) requestID(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		id := crypt.RandomToken(9)
		w.Header().Set("X-Request-Id", id)
		ctx := context.WithValue(r.Context(), requestIDKey, id)
		sw := &statusWriter{ResponseWriter: w}
		defer func() {
			level := slog.LevelInfo
			if r.URL.Path == "/healthz" || r.URL.Path == "/readyz" || strings.HasPrefix(r.URL.Path, "/static/") {
				level = slog.LevelDebug
			}
			s.Logger.Log(ctx, level, "request", "method", r.Method, "path", r.URL.Path,
				"status", sw.code(), "duration_ms", time.Since(start).Milliseconds())
		}()
		next.ServeHTTP(sw, r.WithContext(ctx))
	})
}

// RequestTimeout bounds the work of one request: a database that hangs
// instead of refusing (a cut network, a locked table) ends the request's
// store calls at this deadline, and the customer gets the 503 page rather
// than a connection that never answers. It is under the server's write
// timeout (30 s), so that page still reaches the browser.
const RequestTimeout = 20 * time.Second

// deadline gives every request's context the deadline of s.timeout.
func (s *Server) deadline(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), s.timeout)
		defer cancel()
		next.ServeHTTP(w, r.WithContext(ctx))
	})
}

// statusWriter remembers the status a handler wrote, for the request log.
type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

func (w *statusWriter) code() int {
	if w.status == 0 {
		return http.StatusOK
	}
	return w.status
}

// Unwrap lets http.ResponseController reach the connection's writer.
func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// WithRequestIDs returns a logger whose records made with a request's
// context (InfoContext, ErrorContext, ...) carry its request_id, so every
// line about a request can be found from the id its error page shows.
func WithRequestIDs(l *slog.Logger) *slog.Logger {
	if _, ok := l.Handler().(requestIDHandler); ok {
		return l
	}
	return slog.New(requestIDHandler{l.Handler()})
}

type requestIDHandler struct{ slog.Handler }

func (h requestIDHandler) Handle(ctx context.Context, rec slog.Record) error {
	if id := RequestID(ctx); id != "" {
		rec.AddAttrs(slog.String("request_id", id))
	}
	return h.Handler.Handle(ctx, rec)
}

func (h requestIDHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return requestIDHandler{h.Handler.WithAttrs(as)}
}

func (h requestIDHandler) WithGroup(name string) slog.Handler {
	return requestIDHandler{h.Handler.WithGroup(name)}
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
				s.Logger.ErrorContext(r.Context(), "panic", "path", r.URL.Path,
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

// logAttrs are the attributes every log line of a request carries besides
// its request_id (which WithRequestIDs adds).
func logAttrs(r *http.Request) []any {
	return []any{slog.String("path", r.URL.Path)}
}
