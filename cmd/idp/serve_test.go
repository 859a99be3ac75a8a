package main

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// TestGracefulShutdown: when the server is told to stop (SIGTERM cancels
// the context), it stops accepting connections at once but a request
// already in flight still completes with its whole answer.
func TestGracefulShutdown(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
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

	// The listener closes: new connections are refused (polled, bounded).
	deadline := time.Now().Add(5 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err != nil {
			break
		}
		c.Close()
		if time.Now().After(deadline) {
			t.Fatal("still accepting connections after shutdown began")
		}
		time.Sleep(10 * time.Millisecond)
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

// waitStatus polls u (bounded) until it answers with status want; serve
// stopping (done) meanwhile fails the test.
func waitStatus(t *testing.T, u string, want int, done <-chan error) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		if fresh(t, u) == want {
			return
		}
		select {
		case err := <-done:
			t.Fatalf("serve stopped: %v", err)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s did not answer %d", u, want)
		}
		time.Sleep(20 * time.Millisecond)
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
	done := make(chan error, 1)
	go func() { done <- run(ctx, []string{"serve"}, nil, io.Discard) }()

	get := func(u string) (int, string) {
		resp, err := http.Get(u)
		if err != nil {
			return 0, err.Error()
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	waitStatus(t, "http://"+public+"/readyz", http.StatusOK, done)
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
