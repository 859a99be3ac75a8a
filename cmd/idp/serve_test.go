package main

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestGracefulShutdown: when the server is told to stop (SIGTERM cancels
// the context), it stops accepting connections at once but a request
// already in flight still completes with its whole answer.
func TestGracefulShutdown(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ln := &closeSignal{Listener: l, closed: make(chan struct{})}
	addr := ln.Addr().String()
	entered, release := make(chan struct{}), make(chan struct{})
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow" {
			close(entered)
			<-release
		}
		_, _ = io.WriteString(w, "done:"+r.URL.Path)
	})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	stopped := make(chan error, 1)
	go func() {
		stopped <- runServers(ctx, slog.New(slog.NewTextHandler(io.Discard, nil)), shutdown{grace: 10 * time.Second},
			served{name: "public", ln: ln, h: h})
	}()

	type result struct {
		body string
		err  error
	}
	inflight := make(chan result, 1)
	go func() {
		resp, err := http.Get("http://" + addr + "/slow")
		if err != nil {
			inflight <- result{err: err}
			return
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		inflight <- result{string(b), err}
	}()
	<-entered
	cancel() // what SIGTERM does

	// The listener closes at once: new connections are refused.
	select {
	case <-ln.closed:
	case <-time.After(5 * time.Second):
		t.Fatal("the listener still open 5 s after shutdown began")
	}
	if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
		c.Close()
		t.Fatal("a new connection accepted after the listener closed")
	}
	select {
	case err := <-stopped:
		t.Fatalf("returned before the request in flight finished: %v", err)
	default:
	}
	close(release)
	r := <-inflight
	if r.err != nil || r.body != "done:/slow" {
		t.Fatalf("request in flight: %q, %v", r.body, r.err)
	}
	if err := <-stopped; err != nil {
		t.Fatalf("runServers: %v", err)
	}
}

// TestShutdownGraceExpires: a request that outlives the grace period does
// not keep the process up for ever; the shutdown reports it.
func TestShutdownGraceExpires(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	entered, release := make(chan struct{}), make(chan struct{})
	defer close(release)
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		close(entered)
		<-release
	})
	ctx, cancel := context.WithCancel(context.Background())
	stopped := make(chan error, 1)
	go func() {
		stopped <- runServers(ctx, slog.New(slog.NewTextHandler(io.Discard, nil)), shutdown{grace: 100 * time.Millisecond},
			served{name: "public", ln: ln, h: h})
	}()
	go func() {
		if resp, err := http.Get("http://" + ln.Addr().String() + "/"); err == nil {
			resp.Body.Close()
		}
	}()
	<-entered
	cancel()
	if err := <-stopped; !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("runServers = %v, want the grace period's deadline", err)
	}
}

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// closeSignal is a listener that closes closed once it is closed.
type closeSignal struct {
	net.Listener
	once   sync.Once
	closed chan struct{}
}

func (l *closeSignal) Close() error {
	err := l.Listener.Close()
	l.once.Do(func() { close(l.closed) })
	return err
}

// startServe runs `idp serve` (configured by the environment) with ctx
// and waits until its listeners are open: it answers requests then, and
// /readyz must say 200. done gets what serve returns.
func startServe(t *testing.T, ctx context.Context, public string) (done chan error, draining chan struct{}) {
	t.Helper()
	serving, draining := make(chan struct{}), make(chan struct{})
	ctx = withServeHooks(ctx, serveHooks{serving: func() { close(serving) }, draining: func() { close(draining) }})
	done = make(chan error, 1)
	go func() { done <- run(ctx, []string{"serve"}, nil, io.Discard) }()
	waitServe(t, serving, done, "its listeners to open")
	if code := fresh(t, "http://"+public+"/readyz"); code != http.StatusOK {
		t.Fatalf("/readyz once serving: %d, want 200", code)
	}
	return done, draining
}

// waitServe waits for serve to close ch (what it is waiting for names it);
// serve stopping first, or 10 s without it, fails the test.
func waitServe(t *testing.T, ch <-chan struct{}, done <-chan error, what string) {
	t.Helper()
	select {
	case <-ch:
	case err := <-done:
		t.Fatalf("serve stopped while waiting for %s: %v", what, err)
	case <-time.After(10 * time.Second):
		t.Fatalf("serve: no sign of %s within 10 s", what)
	}
}

// TestServeMetricsListener runs `idp serve` with IDP_METRICS_LISTEN: the
// metrics are on that listener only, and the server stops cleanly when
// told to.
func TestServeMetricsListener(t *testing.T) {
	dir := t.TempDir()
	public, private := freeAddr(t), freeAddr(t)
	t.Setenv("IDP_DATABASE_URL", "sqlite://"+dir+"/idp.db")
	t.Setenv("IDP_SECRET_KEY", "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=")
	t.Setenv("IDP_LISTEN", public)
	t.Setenv("IDP_METRICS_LISTEN", private)
	t.Setenv("IDP_LOG_LEVEL", "error")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done, _ := startServe(t, ctx, public)

	get := func(u string) (int, string) {
		resp, err := http.Get(u)
		if err != nil {
			return 0, err.Error()
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, body := get("http://" + private + "/metrics"); code != http.StatusOK ||
		!strings.Contains(body, `idp_http_request_duration_seconds_count{code="200",method="GET",route="GET /readyz"}`) {
		t.Fatalf("metrics listener: %d\n%.500s", code, body)
	}
	if code, body := get("http://" + public + "/metrics"); code != http.StatusNotFound || strings.Contains(body, "idp_") {
		t.Fatalf("public /metrics: %d", code)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("serve after shutdown: %v", err)
	}
}
