package mail

import (
	"context"
	"fmt"
	"log/slog"
	"testing"
	"time"

	"github.com/kamera-id/idp/idp/testenv"
)

// slowSender stands for a slow mail server: each send takes 25 s of the
// test clock. It counts the mails each recipient got, and calls after (if
// set) once each send is done.
type slowSender struct {
	now   *time.Time
	got   map[string]int
	after func()
}

func (s *slowSender) Send(_ context.Context, _, to string, _ []byte) error {
	*s.now = s.now.Add(25 * time.Second)
	s.got[to]++
	if s.after != nil {
		s.after()
	}
	return nil
}

// TestWorkersSlowServerNoDoubleSend: two instances share the outbox and
// the mail server is slow, so the first one's batch takes longer than its
// lease; the second instance polls after each of the first one's sends.
// Every mail still goes exactly once: the first worker does not send a
// mail its lease might not cover, and releases it to the next claim (due
// at once: the next poll takes it, before the first lease would end),
// with the release's claim not counted as an attempt.
func TestWorkersSlowServerNoDoubleSend(t *testing.T) {
	ctx := context.Background()
	st := testenv.SQLiteStore(t)
	now := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	out := NewOutbox(st, nil, func() time.Time { return now })
	const mails = batch
	for i := range mails {
		if err := out.Enqueue(ctx, fmt.Sprintf("u%d@example.com", i), Message{Subject: "s", Body: "b"}); err != nil {
			t.Fatal(err)
		}
	}
	got := map[string]int{}
	quiet := slog.New(slog.DiscardHandler)
	second := &Worker{Outbox: out, Sender: &slowSender{now: &now, got: got}, From: "a@example.com", Logger: quiet}
	polled := 0
	first := &Worker{Outbox: out, Sender: &slowSender{now: &now, got: got, after: func() {
		polled++
		if _, err := second.SendDue(ctx); err != nil {
			t.Errorf("second worker: %v", err)
		}
	}}, From: "a@example.com", Logger: quiet}

	if n, err := first.SendDue(ctx); n != mails || err != nil {
		t.Fatalf("first claim: SendDue = %d, %v; want the whole outbox, %d", n, err, mails)
	}
	if polled < 3 {
		t.Fatalf("the second worker polled %d times during the first one's batch; the test needs a few", polled)
	}
	// Whatever is left goes on later polls, by either worker.
	for round := 0; ; round++ {
		if round == 3*mails {
			t.Fatal("the outbox does not empty")
		}
		n1, err1 := first.SendDue(ctx)
		n2, err2 := second.SendDue(ctx)
		if err1 != nil || err2 != nil {
			t.Fatal(err1, err2)
		}
		if n1+n2 == 0 {
			break
		}
	}
	for i := range mails {
		to := fmt.Sprintf("u%d@example.com", i)
		if got[to] != 1 {
			t.Errorf("%s got the mail %d times, want once", to, got[to])
		}
		m, err := st.GetMail(ctx, int64(i+1))
		if err != nil || m.SentAt.IsZero() {
			t.Errorf("mail %d not marked sent: %+v, %v", i+1, m, err)
		}
		// A mail given back untried does not count that claim as an
		// attempt (the backoff of a later failure would grow for it).
		if err == nil && m.Attempts != 1 {
			t.Errorf("mail %d: %d attempts counted for one send", i+1, m.Attempts)
		}
	}
}
