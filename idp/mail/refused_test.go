package mail

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/kamera-id/idp/idp/crypt"
	"github.com/kamera-id/idp/idp/metrics"
	"github.com/kamera-id/idp/idp/store"
	"github.com/kamera-id/idp/idp/testenv"
)

// rcptServer answers every command with 250 but RCPT TO with reply.
func rcptServer(t *testing.T, reply string) string {
	return stubServer(t, map[string]string{"RCPT": reply})
}

// stubServer answers each command with the reply in replies under its verb
// ("" drops the connection instead), and otherwise with 250 (221 to QUIT).
func stubServer(t *testing.T, replies map[string]string) string {
	t.Helper()
	return stubServerWith(t, replies, nil)
}

// stubServerWith is stubServer calling onMessage, when set, once a message
// has come in, before it answers 250.
func stubServerWith(t *testing.T, replies map[string]string, onMessage func()) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				r := bufio.NewReader(c)
				io.WriteString(c, "220 test ESMTP\r\n")
				data := false
				for {
					l, err := r.ReadString('\n')
					if err != nil {
						return
					}
					if data { // the message, up to its lone dot
						if l == ".\r\n" {
							data = false
							if onMessage != nil {
								onMessage()
							}
							io.WriteString(c, "250 queued\r\n")
						}
						continue
					}
					verb, _, _ := strings.Cut(strings.ToUpper(strings.TrimSpace(l)), " ")
					if reply, ok := replies[verb]; ok {
						if reply == "" {
							return
						}
						io.WriteString(c, reply+"\r\n")
						continue
					}
					switch verb {
					case "EHLO":
						io.WriteString(c, "250 test\r\n")
					case "DATA":
						data = true
						io.WriteString(c, "354 go on\r\n")
					case "QUIT":
						io.WriteString(c, "221 bye\r\n")
						return
					default:
						io.WriteString(c, "250 ok\r\n")
					}
				}
			}()
		}
	}()
	return ln.Addr().String()
}

// TestQuitLost: a mail the server took (250 after its data) is sent, even
// when the server then drops the connection instead of answering QUIT:
// reported as failed, the worker would send it again at every retry.
func TestQuitLost(t *testing.T) {
	s, _ := ParseSMTPURL("smtp://" + stubServer(t, map[string]string{"QUIT": ""}))
	if err := s.Send(context.Background(), "a@example.com", "b@example.com", []byte("Subject: x\r\n\r\nx\r\n")); err != nil {
		t.Fatalf("Send = %v, want nil: the server took the mail", err)
	}
	s, _ = ParseSMTPURL("smtp://" + stubServer(t, map[string]string{"DATA": ""}))
	if err := s.Send(context.Background(), "a@example.com", "b@example.com", []byte("Subject: x\r\n\r\nx\r\n")); err == nil {
		t.Fatal("Send = nil for a server that dropped the connection at DATA")
	}
}

// TestRefusalLogged: the log line of a refused or failed send gives the
// server's reply by its codes, without its text, which names the
// recipient; the mail's record keeps the whole reply.
func TestRefusalLogged(t *testing.T) {
	ctx := context.Background()
	now := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	for reply, want := range map[string]string{
		"550 5.1.1 <hanako@example.com>: Recipient address rejected: User unknown": "the mail server answered 550 5.1.1",
		"451 <hanako@example.com>: try again later":                                "the mail server answered 451",
	} {
		st := testenv.SQLiteStore(t)
		out := NewOutbox(st, nil, func() time.Time { return now })
		if err := out.Enqueue(ctx, "hanako@example.com", Message{Subject: "s", Body: "b"}); err != nil {
			t.Fatal(err)
		}
		s, _ := ParseSMTPURL("smtp://" + rcptServer(t, reply))
		var log bytes.Buffer
		w := &Worker{Outbox: out, Sender: s, From: "a@example.com", Metrics: &countingMetrics{mail: map[string]int{}},
			Logger: slog.New(slog.NewJSONHandler(&log, nil))}
		if n, err := w.SendDue(ctx); n != 1 || err != nil {
			t.Fatalf("%q: SendDue = %d, %v", reply, n, err)
		}
		if strings.Contains(log.String(), "hanako") || !strings.Contains(log.String(), want) {
			t.Errorf("%q: the log names the recipient or lacks %q:\n%s", reply, want, log.String())
		}
		if got, err := st.GetMail(ctx, 1); err != nil || !strings.Contains(got.LastError, "Recipient address rejected") && !strings.Contains(got.LastError, "try again") {
			t.Errorf("%q: the mail's record: %+v, %v", reply, got, err)
		}
	}
}

// TestSendCancelled: a send to a server that took the connection and its
// EHLO, and then says nothing, ends when its context is cancelled, not at its timeout: an
// instance stopping waits for its worker's send.
func TestSendCancelled(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		// Greets, reads EHLO (the send is under way), then says nothing.
		io.WriteString(c, "220 test ESMTP\r\n")
		if _, err := bufio.NewReader(c).ReadString('\n'); err == nil {
			accepted <- c
		}
	}()
	s, _ := ParseSMTPURL("smtp://" + ln.Addr().String())
	s.Timeout, s.StopGrace = time.Hour, 10*time.Millisecond
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Send(ctx, "a@example.com", "b@example.com", []byte("Subject: x\r\n\r\nx\r\n")) }()
	c := <-accepted
	defer c.Close()
	cancel()
	select {
	case err := <-done:
		if err == nil {
			t.Fatal("Send = nil from a silent server")
		}
	case <-time.After(time.Minute): // a guard against hanging for the hour, not a speed check
		t.Fatal("Send went on after its context was cancelled")
	}
}

// TestSendFinishesAtStop: a send whose message has gone when the instance
// stops (its context cancelled) waits for the server's answer, within
// StopGrace: cut off, the mail the server took would be sent again.
func TestSendFinishesAtStop(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	s, _ := ParseSMTPURL("smtp://" + stubServerWith(t, nil, func() {
		cancel()                           // the instance stops as the message arrives,
		time.Sleep(100 * time.Millisecond) // and the server answers a moment later
	}))
	s.StopGrace = time.Minute
	if err := s.Send(ctx, "a@example.com", "b@example.com", []byte("Subject: x\r\n\r\nx\r\n")); err != nil {
		t.Fatalf("Send = %v: the server took the mail after the stop began", err)
	}
}

// TestRefusedReplies: a 5xx reply to the recipient is a permanent refusal
// of the message, except 530 and 5.7.x (this server's configuration:
// authentication, relaying), which are retried like 4xx replies.
func TestRefusedReplies(t *testing.T) {
	for reply, permanent := range map[string]bool{
		"550 5.1.1 <b@example.com>: no such user": true,
		"553 mailbox name not allowed":            true,
		"552 5.2.2 mailbox full":                  true,
		"451 4.3.0 try again later":               false,
		"550 5.7.1 relaying denied":               false,
		"530 5.7.0 authentication required":       false,
	} {
		s, _ := ParseSMTPURL("smtp://" + rcptServer(t, reply))
		err := s.Send(context.Background(), "a@example.com", "b@example.com", []byte("Subject: x\r\n\r\nx\r\n"))
		var r *RefusedError
		if err == nil || errors.As(err, &r) != permanent {
			t.Errorf("%q: error %v, permanent %v, want permanent %v", reply, err, errors.As(err, &r), permanent)
		}
	}
}

// failingSender fails every send with err.
type failingSender struct{ err error }

func (f failingSender) Send(context.Context, string, string, []byte) error { return f.err }

// countingMetrics counts mail attempts by result.
type countingMetrics struct {
	metrics.Nop
	mail map[string]int
}

func (c *countingMetrics) MailAttempt(result string) { c.mail[result]++ }

// TestWorkerGivesUpOnRefusal: a mail the server refused for good is not
// attempted again, even a year later, and keeps the refusal as its error;
// a temporary failure is retried.
func TestWorkerGivesUpOnRefusal(t *testing.T) {
	ctx := context.Background()
	st := testenv.SQLiteStore(t)
	key, err := crypt.NewKey(bytes.Repeat([]byte{7}, crypt.KeySize))
	if err != nil {
		t.Fatal(err)
	}
	now := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	clock := func() time.Time { return now }
	for _, c := range []struct {
		err     error
		retried bool
		result  string
	}{
		{&RefusedError{Err: errors.New("550 5.1.1 no such user")}, false, metrics.MailRefused},
		{errors.New("dial tcp: connection refused"), true, metrics.MailFailed},
	} {
		out := NewOutbox(st, key, clock)
		if err := out.Enqueue(ctx, "b@example.com", Message{Subject: "s", Body: "b"}); err != nil {
			t.Fatal(err)
		}
		m := &countingMetrics{mail: map[string]int{}}
		w := &Worker{Outbox: out, Sender: failingSender{c.err}, From: "a@example.com", Metrics: m, Logger: slog.New(slog.DiscardHandler)}
		if n, err := w.SendDue(ctx); n != 1 || err != nil {
			t.Fatalf("%v: SendDue = %d, %v", c.err, n, err)
		}
		if m.mail[c.result] != 1 {
			t.Errorf("%v: attempts by result %v, want one %s", c.err, m.mail, c.result)
		}
		now = now.Add(365 * 24 * time.Hour)
		n, err := w.SendDue(ctx)
		if err != nil || (n == 1) != c.retried {
			t.Errorf("%v: a year later SendDue = %d, %v; want retried %v", c.err, n, err, c.retried)
		}
		if !c.retried {
			got, err := st.GetMail(ctx, 1)
			if err != nil || got.NextAttemptAt != store.MailNever || !strings.Contains(got.LastError, "no such user") {
				t.Errorf("the refused mail: %+v, %v", got, err)
			}
		}
		if _, err := st.DeleteMailBefore(ctx, now.Add(time.Hour), 100); err != nil {
			t.Fatal(err)
		}
	}
}

// countingSender counts the mails it sent to each recipient.
type countingSender map[string]int

func (c countingSender) Send(_ context.Context, _, to string, _ []byte) error {
	c[to]++
	return nil
}

// TestWorkerGivesUpExpiredMail: a reset link's mail that could not be sent
// before the link expired (the mail server away for longer) is given up,
// not delivered dead; one still in time is sent.
func TestWorkerGivesUpExpiredMail(t *testing.T) {
	ctx := context.Background()
	st := testenv.SQLiteStore(t)
	now := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	out := NewOutbox(st, nil, func() time.Time { return now })
	reset := func(to string) {
		t.Helper()
		m := Compose(ResetRequested, Notice{When: now, Valid: 30 * time.Minute, Link: "https://id.example/reset-password?token=t"})
		if want := now.Add(30 * time.Minute); !m.ExpiresAt.Equal(want) {
			t.Fatalf("the reset mail's expiry %v, want %v", m.ExpiresAt, want)
		}
		if err := out.Enqueue(ctx, to, m); err != nil {
			t.Fatal(err)
		}
	}
	reset("late@example.com")
	if m := Compose(PasswordChanged, Notice{When: now}); !m.ExpiresAt.IsZero() {
		t.Fatalf("a notice's expiry %v, want none", m.ExpiresAt)
	}
	if err := out.Enqueue(ctx, "notice@example.com", Compose(PasswordChanged, Notice{When: now})); err != nil {
		t.Fatal(err)
	}
	now = now.Add(30 * time.Minute)
	reset("in-time@example.com")

	sent := countingSender{}
	m := &countingMetrics{mail: map[string]int{}}
	w := &Worker{Outbox: out, Sender: sent, From: "a@example.com", Metrics: m, Logger: slog.New(slog.DiscardHandler)}
	if n, err := w.SendDue(ctx); n != 3 || err != nil {
		t.Fatalf("SendDue = %d, %v; want 3 claimed", n, err)
	}
	if sent["late@example.com"] != 0 || sent["notice@example.com"] != 1 || sent["in-time@example.com"] != 1 {
		t.Errorf("sent %v, want the notice and the reset mail still in time, not the expired one", sent)
	}
	if m.mail[metrics.MailExpired] != 1 || m.mail[metrics.MailSent] != 2 {
		t.Errorf("attempts by result %v, want one expired and two sent", m.mail)
	}
	late, err := st.GetMail(ctx, 1)
	if err != nil || !late.SentAt.IsZero() || late.NextAttemptAt != store.MailNever || !strings.Contains(late.LastError, "expired") {
		t.Errorf("the expired mail: %+v, %v; want given up, unsent, with its reason", late, err)
	}
	now = now.Add(365 * 24 * time.Hour)
	if n, err := w.SendDue(ctx); n != 0 || err != nil {
		t.Errorf("a year later SendDue = %d, %v; want nothing", n, err)
	}
}
