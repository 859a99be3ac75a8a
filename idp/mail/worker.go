package mail

import (
	"context"
	"encoding/base64"
	"errors"
	"log/slog"
	"math/rand/v2"
	"net/mail"
	"net/textproto"
	"strconv"
	"strings"
	"time"

	"github.com/kamera-id/idp/idp/crypt"
	"github.com/kamera-id/idp/idp/metrics"
	"github.com/kamera-id/idp/idp/store"
)

// Outbox queues mails in the store and nudges the worker. Bodies are
// sealed with the master key (they may hold a reset link), bound to the
// recipient.
type Outbox struct {
	Store store.Store
	Key   *crypt.Key // nil: bodies stored as they are (tests of other packages)
	Now   func() time.Time
	nudge chan struct{}
}

// NewOutbox returns an outbox on st.
func NewOutbox(st store.Store, key *crypt.Key, now func() time.Time) *Outbox {
	if now == nil {
		now = time.Now
	}
	return &Outbox{Store: st, Key: key, Now: now, nudge: make(chan struct{}, 1)}
}

const sealedPrefix = "sealed:v1:"

func (o *Outbox) seal(to, body string) string {
	if o.Key == nil {
		return body
	}
	return sealedPrefix + base64.RawStdEncoding.EncodeToString(o.Key.Seal([]byte(body), []byte("mail:"+to)))
}

func (o *Outbox) open(to, body string) (string, error) {
	rest, ok := strings.CutPrefix(body, sealedPrefix)
	if !ok {
		return body, nil
	}
	if o.Key == nil {
		return "", errors.New("sealed mail body and no key")
	}
	ct, err := base64.RawStdEncoding.DecodeString(rest)
	if err != nil {
		return "", errors.New("sealed mail body: bad encoding")
	}
	pt, err := o.Key.Open(ct, []byte("mail:"+to))
	if err != nil {
		return "", errors.New("sealed mail body: cannot open (another master key?)")
	}
	return string(pt), nil
}

// Enqueue stores the mail (in the transaction ctx carries, if any) and
// wakes the worker. Call Nudge after the commit when enqueuing inside a
// transaction.
func (o *Outbox) Enqueue(ctx context.Context, to string, m Message) error {
	now := o.Now()
	err := o.Store.EnqueueMail(ctx, &store.Mail{To: to, Subject: m.Subject, Body: o.seal(to, m.Body), CreatedAt: now, NextAttemptAt: now,
		ExpiresAt: m.ExpiresAt})
	if err == nil {
		o.Nudge()
	}
	return err
}

// Nudge wakes the worker to look at the outbox now.
func (o *Outbox) Nudge() {
	select {
	case o.nudge <- struct{}{}:
	default:
	}
}

// Worker sends the outbox's due mails.
//
// Delivery is at least once: a mail is marked sent after the server took
// it, so a worker that dies (or loses the database) between the two sends
// it again once its lease ends. What the worker rules out is sending a
// mail twice because its lease ran out while it was still alive: before
// each send it checks that the lease still covers the send's timeout plus
// recordMargin (recording the outcome, and some clock difference between
// instances), and otherwise stops and releases the rest of its batch for
// the next claim, by it or another instance. Each send is bounded by
// SendTimeout. The guarantee assumes the instances' clocks agree to within
// a few seconds and a pause of the whole process (a suspended VM) shorter
// than the margin.
type Worker struct {
	Outbox *Outbox
	Sender Sender
	From   string
	Logger *slog.Logger
	// Poll is how often the outbox is read without a nudge (other
	// instances' mails, retries); 0: 10 s.
	Poll time.Duration
	// RetryBase and RetryMax bound the backoff between attempts (doubling,
	// with jitter); 0: 30 s and 30 min.
	RetryBase, RetryMax time.Duration
	// Lease is how long a claimed mail is this worker's; 0: 2 min. It is
	// raised to at least twice the time one mail may take (SendTimeout
	// plus recordMargin), so that a claim leaves time for a send.
	Lease time.Duration
	// SendTimeout bounds one send (the worker gives the sender a context
	// with this deadline); 0: the Timeout of an *SMTP sender if set, else
	// 30 s.
	SendTimeout time.Duration
	// Metrics counts the attempts; nil counts nothing.
	Metrics metrics.Recorder
}

func (w *Worker) defaults() {
	if w.Poll <= 0 {
		w.Poll = 10 * time.Second
	}
	if w.RetryBase <= 0 {
		w.RetryBase = 30 * time.Second
	}
	if w.RetryMax <= 0 {
		w.RetryMax = 30 * time.Minute
	}
	if w.SendTimeout <= 0 {
		w.SendTimeout = defaultSendTimeout
		if s, ok := w.Sender.(*SMTP); ok && s.Timeout > 0 {
			w.SendTimeout = s.Timeout
		}
	}
	if w.Lease <= 0 {
		w.Lease = 2 * time.Minute
	}
	w.Lease = max(w.Lease, 2*(w.SendTimeout+recordMargin))
	if w.Logger == nil {
		w.Logger = slog.Default()
	}
	w.Metrics = metrics.OrNop(w.Metrics)
}

// Run sends mails until ctx ends.
func (w *Worker) Run(ctx context.Context) {
	w.defaults()
	t := time.NewTicker(w.Poll)
	defer t.Stop()
	for {
		if err := w.SendAllDue(ctx); err != nil && ctx.Err() == nil {
			w.Logger.Warn("mail outbox unavailable", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-w.Outbox.nudge:
		}
	}
}

// SendAllDue sends batches of due mails (SendDue) until none is left, ctx
// ends or the outbox cannot be read (that error).
func (w *Worker) SendAllDue(ctx context.Context) error {
	for {
		n, err := w.SendDue(ctx)
		if err != nil || n == 0 {
			return err
		}
	}
}

// batch is how many mails one claim takes.
const batch = 10

// recordTimeout bounds recording a send's outcome in the store.
const recordTimeout = 10 * time.Second

// recordMargin is the time a lease must have left beyond SendTimeout
// before a send starts: recording the outcome (recordTimeout) and 10 s for
// clocks that differ between instances (and the store's whole seconds).
const recordMargin = recordTimeout + 10*time.Second

// SendDue claims and sends one batch of due mails; it says how many it
// claimed. It sends a mail only while the lease covers the send and the
// record of its outcome (see Worker): when a slow server has used up the
// lease, it releases the rest of the batch, due at once, and the next
// claim takes them.
func (w *Worker) SendDue(ctx context.Context) (int, error) {
	w.defaults()
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	now := w.Outbox.Now()
	leaseUntil := now.Add(w.Lease)
	// A claim once begun is seen through, even when the worker is stopped
	// meanwhile: cut short, it could take the mails in the database without
	// the worker seeing them, which would leave them to the lease's end.
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), recordTimeout)
	ms, err := w.Outbox.Store.ClaimMail(cctx, now, leaseUntil, batch)
	cancel()
	if err != nil {
		return 0, err
	}
	for i, m := range ms {
		// Stopped (the instance shutting down), or the lease too short for
		// another send: the rest goes back, due at once, for the next claim
		// (a stopping instance's last send, or another instance's).
		if ctx.Err() != nil || leaseUntil.Sub(w.Outbox.Now()) < w.SendTimeout+recordMargin {
			w.release(ctx, ms[i:])
			break
		}
		w.send(ctx, m)
	}
	return len(ms), nil
}

// release gives up the claim on mails this worker will not send now, so
// that the next claim, of any instance, takes them without waiting for the
// lease to end, and uncounts the attempt the claim counted
// (store.ReleaseMail). A release that fails leaves the mails to the
// lease's end.
func (w *Worker) release(ctx context.Context, ms []store.Mail) {
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), recordTimeout)
	defer cancel()
	for _, m := range ms {
		if err := w.Outbox.Store.ReleaseMail(rctx, m.ID, m.ClaimedUntil); err != nil && !errors.Is(err, store.ErrNotFound) {
			w.Logger.Warn("mail not released: sent when its lease ends", "mail_id", m.ID, "err", err)
		}
	}
}

func (w *Worker) send(ctx context.Context, m store.Mail) {
	st := w.Outbox.Store
	if !m.ExpiresAt.IsZero() && !w.Outbox.Now().Before(m.ExpiresAt) {
		// Its link no longer works: delivered now, it would only mislead.
		w.Metrics.MailAttempt(metrics.MailExpired)
		w.Logger.Warn("mail expired before it could be sent; given up", "mail_id", m.ID, "attempt", m.Attempts)
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), recordTimeout)
		defer cancel()
		if err := st.GiveUpMail(rctx, m.ID, "expired before it could be sent"); err != nil && !errors.Is(err, store.ErrNotFound) {
			w.Logger.Error("expired mail not recorded: looked at again when its lease ends", "mail_id", m.ID, "err", err)
		}
		return
	}
	body, err := w.Outbox.open(m.To, m.Body)
	if err == nil {
		sctx, cancel := context.WithTimeout(ctx, w.SendTimeout)
		err = w.Sender.Send(sctx, envelope(w.From), m.To, Build(w.From, m.To, m.Subject, body, w.Outbox.Now()))
		cancel()
	}
	// Record the outcome even when ctx ends now: the mail went (or not).
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), recordTimeout)
	defer cancel()
	if err == nil {
		w.Metrics.MailAttempt(metrics.MailSent)
		if err := st.MarkMailSent(rctx, m.ID, w.Outbox.Now()); err != nil {
			w.Logger.Error("mail sent but not marked sent: it may be sent again", "mail_id", m.ID, "err", err)
		}
		return
	}
	if r := (*RefusedError)(nil); errors.As(err, &r) {
		w.Metrics.MailAttempt(metrics.MailRefused)
		w.Logger.Error("mail refused by the server; not retried", "mail_id", m.ID, "attempt", m.Attempts, "err", logged(err))
		if err := st.GiveUpMail(rctx, m.ID, err.Error()); err != nil && !errors.Is(err, store.ErrNotFound) {
			w.Logger.Error("refused mail not recorded: retried when its lease ends", "mail_id", m.ID, "err", err)
		}
		return
	}
	w.Metrics.MailAttempt(metrics.MailFailed)
	next := w.Outbox.Now().Add(w.backoff(m.Attempts))
	w.Logger.Warn("mail not sent; will retry", "mail_id", m.ID, "attempt", m.Attempts,
		"retry_at", next.UTC().Format(time.RFC3339), "err", logged(err))
	if err := st.RetryMail(rctx, m.ID, next, err.Error()); err != nil && !errors.Is(err, store.ErrNotFound) {
		w.Logger.Error("mail retry not recorded: retried when its lease ends", "mail_id", m.ID, "err", err)
	}
}

// backoff is RetryBase doubled per earlier attempt, capped at RetryMax,
// with up to 25% jitter so instances do not retry in step.
func (w *Worker) backoff(attempts int) time.Duration {
	d := w.RetryBase
	for i := 1; i < attempts && d < w.RetryMax; i++ {
		d *= 2
	}
	d = min(d, w.RetryMax)
	return d + time.Duration(rand.Int64N(int64(d)/4+1))
}

// logged is what the log says of a failed send: a mail server's reply by
// its codes only ("the mail server answered 550 5.1.1"), since its text
// often repeats the recipient's address, which the log never names. The
// whole reply is kept in the mail's record (LastError).
func logged(err error) string {
	var te *textproto.Error
	if !errors.As(err, &te) {
		return err.Error()
	}
	reply := strconv.Itoa(te.Code)
	if f := strings.Fields(te.Msg); len(f) > 0 && enhancedStatus(f[0]) {
		reply += " " + f[0]
	}
	return "the mail server answered " + reply
}

// enhancedStatus says whether s is an enhanced status code (RFC 3463:
// class.subject.detail, such as 5.1.1).
func enhancedStatus(s string) bool {
	parts := strings.Split(s, ".")
	if len(parts) != 3 || len(parts[0]) != 1 || !strings.Contains("245", parts[0]) {
		return false
	}
	for _, p := range parts[1:] {
		if len(p) == 0 || len(p) > 3 || strings.Trim(p, "0123456789") != "" {
			return false
		}
	}
	return true
}

// envelope is the bare address of a From header ("Name <a@b>" -> a@b).
func envelope(from string) string {
	if a, err := mail.ParseAddress(from); err == nil {
		return a.Address
	}
	return strings.TrimSpace(from)
}
