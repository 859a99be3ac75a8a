package oidc

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/kamera-id/idp/idp/store"
)

// gatedClients is a store whose ListClients says it began (entered), then
// waits for release or its context's end.
type gatedClients struct {
	store.Store
	entered, release chan struct{}
}

func (s *gatedClients) ListClients(ctx context.Context) ([]store.Client, error) {
	s.entered <- struct{}{}
	select {
	case <-s.release:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	return []store.Client{{ID: "spa", Public: true, RedirectURIs: []string{"https://spa.example/cb"}}}, nil
}

func gatedProvider() (*Provider, *gatedClients) {
	st := &gatedClients{entered: make(chan struct{}, 1), release: make(chan struct{})}
	return &Provider{Storage: &Storage{Store: st, ClientTT: 5 * time.Second}, log: slog.New(slog.DiscardHandler)}, st
}

// TestPublicOriginsReadBySomeoneElse: while another request reads the
// clients for the first time, a request does not queue behind it (the
// read may hang): no cross-origin read yet.
func TestPublicOriginsReadBySomeoneElse(t *testing.T) {
	p, st := gatedProvider()
	first := make(chan bool)
	go func() { first <- p.publicOrigin(context.Background(), "https://spa.example") }()
	<-st.entered
	done := make(chan bool)
	go func() { done <- p.publicOrigin(context.Background(), "https://spa.example") }()
	select {
	case got := <-done:
		if got {
			t.Error("an origin allowed before the clients were read")
		}
	case <-time.After(10 * time.Second): // a guard against a hang, not a sleep
		t.Error("a request queued behind another's read of the clients")
	}
	close(st.release)
	if !<-first {
		t.Error("the reading request: the public client's origin refused")
	}
}

// TestPublicOriginsReaderHangsUp: a request that hangs up while it reads
// the clients for everyone does not make that read fail (after which
// every request would go without for a second).
func TestPublicOriginsReaderHangsUp(t *testing.T) {
	p, st := gatedProvider()
	ctx, cancel := context.WithCancel(context.Background())
	first := make(chan bool)
	go func() { first <- p.publicOrigin(ctx, "https://evil.example") }()
	<-st.entered
	cancel()
	close(st.release)
	<-first
	if !p.publicOrigin(context.Background(), "https://spa.example") {
		t.Error("after the reading request hung up, the public client's origin is refused")
	}
}
