package app

import (
	"bytes"
	"context"
	"encoding/base64"
	"io"
	"log/slog"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/kamera-id/idp/idp/config"
	"github.com/kamera-id/idp/idp/mail"
)

// stuckSender blocks every send until its context ends (an SMTP server
// that stopped answering), after telling entered; later sends are recorded.
type stuckSender struct {
	entered chan struct{}
	once    sync.Once
	mu      sync.Mutex
	sent    []string
}

func (s *stuckSender) Send(ctx context.Context, _, to string, _ []byte) error {
	first := false
	s.once.Do(func() { first = true })
	if first {
		close(s.entered)
		<-ctx.Done()
		return ctx.Err()
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.sent = append(s.sent, to)
	return nil
}

// TestStopJobs: stopping the jobs waits for the mail sender to return, so
// the outcome of a send it had in flight is recorded while the store is
// still open; and a mail queued as the jobs stop is sent before stop
// returns.
func TestStopJobs(t *testing.T) {
	cfg := config.Defaults()
	cfg.DatabaseURL = "sqlite://" + filepath.Join(t.TempDir(), "idp.db")
	cfg.SecretKey = base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{5}, 32))
	cfg.ArgonMemoryKiB, cfg.ArgonIterations = 8192, 1
	ctx := context.Background()
	a, err := Open(ctx, cfg, Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	sender := &stuckSender{entered: make(chan struct{})}
	a.MailWorker.Sender = sender
	a.MailWorker.SendTimeout = time.Hour // only the stop ends the stuck send

	stop := a.StartJobs(time.Hour)
	if err := a.Outbox.Enqueue(ctx, "stuck@example.com", mail.Message{Subject: "s", Body: "b"}); err != nil {
		t.Fatal(err)
	}
	<-sender.entered
	if err := a.Outbox.Enqueue(ctx, "late@example.com", mail.Message{Subject: "s", Body: "b"}); err != nil {
		t.Fatal(err)
	}
	stop()

	stuck, err := a.Store.GetMail(ctx, 1)
	if err != nil {
		t.Fatal(err)
	}
	if stuck.Attempts != 1 || stuck.LastError == "" || !stuck.SentAt.IsZero() || !stuck.ClaimedUntil.IsZero() {
		t.Errorf("the send in flight at the stop: %+v, want its failure recorded and its claim released", *stuck)
	}
	late, err := a.Store.GetMail(ctx, 2)
	if err != nil {
		t.Fatal(err)
	}
	if late.SentAt.IsZero() || len(sender.sent) != 1 || sender.sent[0] != "late@example.com" {
		t.Errorf("the mail queued as the jobs stopped: %+v, sent %q; want it sent before stop returned", *late, sender.sent)
	}
	stop() // a second stop is harmless
}
