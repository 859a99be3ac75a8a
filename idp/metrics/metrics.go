// Package metrics is what the provider counts and times, behind a small
// interface so that the web, protocol and store layers do not import the
// Prometheus client: Nop when metrics are off, Prometheus (served on its
// own listener, IDP_METRICS_LISTEN) when they are on.
//
// Labels are always from small fixed sets (a route pattern, never a raw
// path; a step name, never a user), and nothing secret is ever a label.
package metrics

import (
	"context"
	"net/http"
	"time"
)

// Login steps and results.
const (
	StepPassword = "password"
	StepTOTP     = "totp"
	StepBackup   = "backup"

	ResultSuccess = "success"
	ResultFailure = "failure"
	ResultLocked  = "locked" // refused because of a lockout
	// ResultDisabled: the right password of an account the support desk
	// disabled.
	ResultDisabled = "disabled"
)

// Lockout kinds.
const (
	LockoutMFA     = "mfa"     // second-step failures of an account
	LockoutAccount = "account" // password failures of an account
	LockoutIP      = "ip"      // password failures from one client IP
	LockoutDevice  = "device"  // password failures of a browser with a device cookie for the account
)

// Recorder receives the provider's events. Every method must be cheap and
// safe for concurrent use.
type Recorder interface {
	// Login counts one attempt at a login step (StepPassword, StepTOTP,
	// StepBackup) with its result (ResultSuccess, ResultFailure,
	// ResultLocked, ResultDisabled).
	Login(step, result string)
	// Lockout counts one lockout that a failure triggered.
	Lockout(kind string)
	// TokenIssued counts a successful token response by grant type.
	TokenIssued(grant string)
	// Request times one HTTP request by its route pattern.
	Request(route, method string, status int, d time.Duration)
	// StoreCall times one store operation; failed says it returned an error
	// other than "not found" or "already used".
	StoreCall(op string, d time.Duration, failed bool)
	// MailAttempt counts one attempt to send a queued mail by its result
	// (MailSent; MailFailed: it will be retried; MailRefused: the server
	// refused it for good, it is not retried; MailExpired: its content
	// stopped working before it could be sent, it was given up unsent).
	MailAttempt(result string)
}

// Results of a mail attempt.
const (
	MailSent    = "sent"
	MailFailed  = "failed"
	MailRefused = "refused"
	MailExpired = "expired"
)

// Nop records nothing.
type Nop struct{}

func (Nop) Login(string, string)                       {}
func (Nop) Lockout(string)                             {}
func (Nop) TokenIssued(string)                         {}
func (Nop) Request(string, string, int, time.Duration) {}
func (Nop) StoreCall(string, time.Duration, bool)      {}
func (Nop) MailAttempt(string)                         {}

var _ Recorder = Nop{}

// OrNop returns r, or Nop when r is nil.
func OrNop(r Recorder) Recorder {
	if r == nil {
		return Nop{}
	}
	return r
}

// statusWriter remembers the status a handler wrote.
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

// Unwrap lets http.ResponseController reach the connection's writer.
func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// Flush implements http.Flusher when the wrapped writer does.
func (w *statusWriter) Flush() {
	if f, ok := w.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

type routeKey struct{}

// routeHolder is where the matched route is written for Instrument to read.
type routeHolder struct{ pattern string }

// SetRoute names the route that serves the request (its pattern, such as
// "GET /login"), for the request-latency histogram. Handlers registered
// through a router call it; requests that match no route are "other".
func SetRoute(r *http.Request, pattern string) {
	if h, ok := r.Context().Value(routeKey{}).(*routeHolder); ok {
		h.pattern = pattern
	}
}

// Instrument times every request with rec, labelled by the route that
// SetRoute named while the request was served.
func Instrument(rec Recorder, next http.Handler) http.Handler {
	if _, ok := rec.(Nop); ok || rec == nil {
		return next
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		h := &routeHolder{pattern: "other"}
		sw := &statusWriter{ResponseWriter: w}
		defer func() {
			status := sw.status
			if status == 0 {
				status = http.StatusOK
			}
			rec.Request(h.pattern, methodLabel(r.Method), status, time.Since(start))
		}()
		next.ServeHTTP(sw, r.WithContext(context.WithValue(r.Context(), routeKey{}, h)))
	})
}

// methodLabel is the request's method as a metric label: one of the
// standard methods, or "other". A client can send any token as its method,
// and each would otherwise be a new series.
func methodLabel(m string) string {
	switch m {
	case http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch,
		http.MethodDelete, http.MethodOptions, http.MethodConnect, http.MethodTrace:
		return m
	}
	return "other"
}
