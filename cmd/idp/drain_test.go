package main

import (
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// drainServer runs runServers on a loopback listener with a handler whose
// /readyz fails once the drain has begun; began closes then.
func drainServer(t *testing.T, ctx context.Context, sd shutdown) (addr string, began chan struct{}, stopped chan error) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var draining atomic.Bool
	began, stopped = make(chan struct{}), make(chan error, 1)
	sd.draining = func() { draining.Store(true); close(began) }
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/readyz" && draining.Load() {
			http.Error(w, "shutting down", http.StatusServiceUnavailable)
			return
		}
		_, _ = io.WriteString(w, "ok")
	})
	go func() {
		stopped <- runServers(ctx, slog.New(slog.NewTextHandler(io.Discard, nil)), sd, served{name: "public", ln: ln, h: h})
	}()
	return ln.Addr().String(), began, stopped
}

// fresh fetches a URL on a new connection and says its status (0 when the
// connection fails).
func fresh(t *testing.T, u string) int {
	t.Helper()
	c := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := c.Get(u)
	if err != nil {
		return 0
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	return resp.StatusCode
}

// TestDrain: once told to stop, the server first drains: /readyz answers
// 503 at once while new connections are still accepted and served; a
// second signal ends the drain, and the listener then closes.
func TestDrain(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	hurry := make(chan os.Signal, 1)
	addr, began, stopped := drainServer(t, ctx, shutdown{drain: time.Hour, hurry: hurry, grace: 10 * time.Second})
	if code := fresh(t, "http://"+addr+"/readyz"); code != http.StatusOK {
		t.Fatalf("/readyz before the stop: %d", code)
	}
	cancel() // what the first SIGTERM does
	<-began
	if code := fresh(t, "http://"+addr+"/readyz"); code != http.StatusServiceUnavailable {
		t.Fatalf("/readyz while draining: %d, want 503", code)
	}
	if code := fresh(t, "http://"+addr+"/login"); code != http.StatusOK {
		t.Fatalf("a request on a new connection while draining: %d, want 200", code)
	}
	select {
	case err := <-stopped:
		t.Fatalf("runServers returned during the drain: %v", err)
	default:
	}
	hurry <- syscall.SIGTERM // the second signal
	if err := <-stopped; err != nil {
		t.Fatalf("runServers: %v", err)
	}
	if c, err := net.Dial("tcp", addr); err == nil {
		c.Close()
		t.Fatal("the listener still accepts after the shutdown")
	}
}

// TestDrainEnds: without a second signal the drain lasts its time, then
// the shutdown closes the listener and runServers returns.
func TestDrainEnds(t *testing.T) {
	const drain = 50 * time.Millisecond
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	addr, began, stopped := drainServer(t, ctx, shutdown{drain: drain, grace: 10 * time.Second})
	start := time.Now()
	cancel()
	<-began
	if err := <-stopped; err != nil {
		t.Fatalf("runServers: %v", err)
	}
	if d := time.Since(start); d < drain {
		t.Fatalf("runServers returned %v after the stop, before the %v drain ended", d, drain)
	}
	if c, err := net.Dial("tcp", addr); err == nil {
		c.Close()
		t.Fatal("the listener still accepts after the drain")
	}
}

// TestNoDrain: with no drain (IDP_SHUTDOWN_DRAIN=0, the default) the
// readiness check is still told, and the shutdown follows at once.
func TestNoDrain(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	addr, began, stopped := drainServer(t, ctx, shutdown{hurry: make(chan os.Signal), grace: 10 * time.Second})
	cancel()
	<-began
	if err := <-stopped; err != nil {
		t.Fatalf("runServers: %v", err)
	}
	if code := fresh(t, "http://"+addr+"/"); code != 0 {
		t.Fatalf("the listener still serves after the shutdown: %d", code)
	}
}
