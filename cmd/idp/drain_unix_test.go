//go:build unix

package main

import (
	"context"
	"io"
	"net/http"
	"os"
	"syscall"
	"testing"
	"time"
)

// serveEnv configures idp serve for a test (a store of its own, a free
// address, errors only in the log) and returns the address.
func serveEnv(t *testing.T) string {
	t.Helper()
	public := freeAddr(t)
	t.Setenv("IDP_DATABASE_URL", "sqlite://"+t.TempDir()+"/idp.db")
	t.Setenv("IDP_SECRET_KEY", "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=")
	t.Setenv("IDP_LISTEN", public)
	t.Setenv("IDP_LOG_LEVEL", "error")
	return public
}

// TestServeDrain runs `idp serve` with IDP_SHUTDOWN_DRAIN and real
// signals: after the first SIGTERM /readyz answers 503 while the server
// still serves new connections; the second ends the drain and the server
// stops.
func TestServeDrain(t *testing.T) {
	public := serveEnv(t)
	t.Setenv("IDP_SHUTDOWN_DRAIN", "5m")
	exitNow = func(code int) { t.Errorf("serve exited (%d): the second signal did not reach the drain", code) }
	t.Cleanup(func() { exitNow = os.Exit })
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done, draining := startServe(t, ctx, public)

	// serve has its signal handler: these signals do not end the test.
	if err := syscall.Kill(os.Getpid(), syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	waitServe(t, draining, done, "the drain")
	if code := fresh(t, "http://"+public+"/readyz"); code != http.StatusServiceUnavailable {
		t.Fatalf("/readyz while draining: %d, want 503", code)
	}
	if code := fresh(t, "http://"+public+"/.well-known/openid-configuration"); code != http.StatusOK {
		t.Fatalf("discovery on a new connection while draining: %d, want 200", code)
	}
	select {
	case err := <-done:
		t.Fatalf("serve stopped during the drain: %v", err)
	default:
	}
	if err := syscall.Kill(os.Getpid(), syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatalf("serve after the second signal: %v", err)
	}
	if code := fresh(t, "http://"+public+"/readyz"); code != 0 {
		t.Fatalf("still serving after the shutdown: %d", code)
	}
}

// TestServeSignalAgainExits: without a drain, a second SIGTERM while the
// shutdown is under way exits at once (it was ignored, and the shutdown
// went on for as long as its requests and mails took).
func TestServeSignalAgainExits(t *testing.T) {
	serveEnv(t)
	exited := make(chan int, 1)
	exitNow = func(code int) { exited <- code }
	t.Cleanup(func() { exitNow = os.Exit })
	// The shutdown waits in its draining hook until the second signal has
	// been dealt with, so it cannot end first.
	serving, shuttingDown, dealt := make(chan struct{}), make(chan struct{}), make(chan struct{})
	ctx := withServeHooks(context.Background(), serveHooks{
		serving:  func() { close(serving) },
		draining: func() { close(shuttingDown); <-dealt },
	})
	done := make(chan error, 1)
	go func() { done <- run(ctx, []string{"serve"}, nil, io.Discard) }()
	waitServe(t, serving, done, "its listeners to open")
	if err := syscall.Kill(os.Getpid(), syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	waitServe(t, shuttingDown, done, "the shutdown")
	if err := syscall.Kill(os.Getpid(), syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case code := <-exited:
		if code != 1 {
			t.Errorf("exit status %d, want 1", code)
		}
	case <-time.After(10 * time.Second): // a guard against a hang, not a sleep
		t.Error("the second signal did not exit")
	}
	close(dealt)
	<-done
}
