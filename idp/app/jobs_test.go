package app

import (
	"bytes"
	"context"
	"encoding/base64"
	"io"
	"log/slog"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/kamera-id/idp/idp/config"
	"github.com/kamera-id/idp/idp/mail"
)

// stuckSender blocks its first send until its context ends (an SMTP server
// that stopped answering), after telling entered; later sends are recorded,
// unless their context has ended (as a real sender fails them).
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
	if err := ctx.Err(); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.sent = append(s.sent, to)
	return nil
}

// TestStopJobs: stopping the jobs waits for the mail sender to return, so
// the outcome of a send it had in flight is recorded while the store is
// still open; and the mails claimed with it but not sent yet, and a mail
// queued as the jobs stop, are sent before stop returns.
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

	for _, to := range []string{"stuck@example.com", "batch@example.com"} { // one claim takes both
		if err := a.Outbox.Enqueue(ctx, to, mail.Message{Subject: "s", Body: "b"}); err != nil {
			t.Fatal(err)
		}
	}
	stop := a.StartJobs(time.Hour)
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
	for id := int64(2); id <= 3; id++ {
		m, err := a.Store.GetMail(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		if m.SentAt.IsZero() {
			t.Errorf("mail %d (claimed with the stuck one, or queued as the jobs stopped): %+v; want it sent before stop returned", id, *m)
		}
	}
	if !slices.Equal(sender.sent, []string{"batch@example.com", "late@example.com"}) {
		t.Errorf("sent at the stop: %q, want the rest of the stuck one's batch and the late mail", sender.sent)
	}
	stop() // a second stop is harmless
}
