package storetest

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/kamera-id/idp/idp/store"
)

func testPasswordResets(t *testing.T, s store.Store) {
	ctx := t.Context()
	newUser(t, s, "u1")
	r := &store.PasswordReset{TokenHash: []byte("reset-1"), UserID: "u1", CreatedAt: t0, ExpiresAt: at(30 * time.Minute)}
	must(t, s.CreatePasswordReset(ctx, r))
	wantErr(t, "unknown user", s.CreatePasswordReset(ctx, &store.PasswordReset{TokenHash: []byte("x"), UserID: "nobody",
		CreatedAt: t0, ExpiresAt: at(time.Minute)}), store.ErrNotFound)
	wantErr(t, "duplicate hash", s.CreatePasswordReset(ctx, r), store.ErrDuplicate)
	// A disabled account gets no link (it is read in the insert: a link made
	// while it is being disabled cannot outlive the disable's voiding).
	newUser(t, s, "u3")
	must(t, changed(t, true)(s.SetUserDisabled(ctx, "u3", t0)))
	rd := &store.PasswordReset{TokenHash: []byte("reset-d"), UserID: "u3", CreatedAt: t0, ExpiresAt: at(time.Minute)}
	wantErr(t, "disabled user", s.CreatePasswordReset(ctx, rd), store.ErrNotFound)
	_, err := s.GetPasswordReset(ctx, rd.TokenHash, t0)
	wantErr(t, "a disabled user's link", err, store.ErrNotFound)
	must(t, changed(t, true)(s.SetUserDisabled(ctx, "u3", time.Time{})))
	must(t, s.CreatePasswordReset(ctx, rd))

	got, err := s.GetPasswordReset(ctx, r.TokenHash, t0)
	must(t, err)
	same(t, "GetPasswordReset", got, r)
	_, err = s.GetPasswordReset(ctx, r.TokenHash, at(30*time.Minute))
	wantErr(t, "get at expiry", err, store.ErrNotFound)
	_, err = s.GetPasswordReset(ctx, []byte("other"), t0)
	wantErr(t, "get unknown", err, store.ErrNotFound)

	// Expired: refused.
	_, err = s.ConsumePasswordReset(ctx, r.TokenHash, at(30*time.Minute))
	wantErr(t, "consume at expiry", err, store.ErrConsumed)
	// Unknown: refused.
	_, err = s.ConsumePasswordReset(ctx, []byte("other"), t0)
	wantErr(t, "consume unknown", err, store.ErrConsumed)
	// Once, then never again.
	uid, err := s.ConsumePasswordReset(ctx, r.TokenHash, at(time.Minute))
	must(t, err)
	same(t, "consumed user", uid, "u1")
	_, err = s.ConsumePasswordReset(ctx, r.TokenHash, at(2*time.Minute))
	wantErr(t, "consume twice", err, store.ErrConsumed)
	_, err = s.GetPasswordReset(ctx, r.TokenHash, at(2*time.Minute))
	wantErr(t, "get after use", err, store.ErrNotFound)

	// A new password voids the user's unused links (and only theirs).
	newUser(t, s, "u2")
	for _, x := range []struct{ hash, user string }{{"void-1", "u1"}, {"void-2", "u1"}, {"keep", "u2"}} {
		must(t, s.CreatePasswordReset(ctx, &store.PasswordReset{TokenHash: []byte(x.hash), UserID: x.user,
			CreatedAt: t0, ExpiresAt: at(30 * time.Minute)}))
	}
	for _, u := range []string{"u1", "u2"} { // a 2FA setup in progress: dropped with the old password
		must(t, s.PutPendingTOTP(ctx, &store.PendingTOTP{UserID: u, SecretEnc: []byte("pending"), CreatedAt: t0, ExpiresAt: at(time.Hour)}))
	}
	must(t, s.UpdatePassword(ctx, "u1", "changed", at(time.Minute)))
	_, err = s.GetPendingTOTP(ctx, "u1", at(time.Minute))
	wantErr(t, "a 2FA setup of the old password after UpdatePassword", err, store.ErrNotFound)
	if _, err = s.GetPendingTOTP(ctx, "u2", at(time.Minute)); err != nil {
		t.Fatalf("another user's 2FA setup after UpdatePassword: %v", err)
	}
	for _, h := range []string{"void-1", "void-2"} {
		_, err = s.ConsumePasswordReset(ctx, []byte(h), at(2*time.Minute))
		wantErr(t, "consume "+h+" after the password changed", err, store.ErrConsumed)
	}
	_, err = s.ConsumePasswordReset(ctx, []byte("keep"), at(2*time.Minute))
	must(t, err)
	wantErr(t, "UpdatePassword(unknown user)", s.UpdatePassword(ctx, "nobody", "x", t0), store.ErrNotFound)

	// The cleanup removes it once expired, not before.
	r2 := &store.PasswordReset{TokenHash: []byte("reset-2"), UserID: "u1", CreatedAt: t0, ExpiresAt: at(time.Hour)}
	must(t, s.CreatePasswordReset(ctx, r2))
	_, err = s.DeleteExpired(ctx, at(45*time.Minute), 0)
	must(t, err)
	_, err = s.GetPasswordReset(ctx, r2.TokenHash, at(45*time.Minute))
	must(t, err)
	// Deleted rows cannot be consumed either (and a re-insert of the same
	// hash is possible again).
	must(t, s.CreatePasswordReset(ctx, &store.PasswordReset{TokenHash: []byte("reset-1"), UserID: "u1",
		CreatedAt: at(50 * time.Minute), ExpiresAt: at(80 * time.Minute)}))
}

// testPasswordResetInTx: a consumption rolled back leaves the token usable;
// committed, it is used.
func testPasswordResetInTx(t *testing.T, s store.Store) {
	ctx := t.Context()
	newUser(t, s, "u1")
	r := &store.PasswordReset{TokenHash: []byte("reset-tx"), UserID: "u1", CreatedAt: t0, ExpiresAt: at(time.Hour)}
	must(t, s.CreatePasswordReset(ctx, r))
	tx, err := s.BeginTx(ctx)
	must(t, err)
	_, err = s.ConsumePasswordReset(tx, r.TokenHash, t0)
	must(t, err)
	must(t, s.UpdatePassword(tx, "u1", "new-hash", t0))
	must(t, s.Rollback(tx))
	u, err := s.GetUser(ctx, "u1")
	must(t, err)
	same(t, "hash after rollback", u.PasswordHash, "hash-u1")

	tx, err = s.BeginTx(ctx)
	must(t, err)
	_, err = s.ConsumePasswordReset(tx, r.TokenHash, t0)
	must(t, err)
	must(t, s.UpdatePassword(tx, "u1", "new-hash", t0))
	must(t, s.EnqueueMail(tx, &store.Mail{To: "u1@example.com", Subject: "changed", Body: "b", CreatedAt: t0}))
	must(t, s.Commit(tx))
	u, err = s.GetUser(ctx, "u1")
	must(t, err)
	same(t, "hash after commit", u.PasswordHash, "new-hash")
	_, err = s.ConsumePasswordReset(ctx, r.TokenHash, t0)
	wantErr(t, "consume after commit", err, store.ErrConsumed)
	ms, err := s.ClaimMail(ctx, t0, at(time.Minute), 10)
	must(t, err)
	same(t, "mails enqueued in the transaction", len(ms), 1)
}

func testRaceConsumePasswordReset(t *testing.T, s store.Store) {
	newUser(t, s, "u1")
	hash := []byte("reset-race")
	must(t, s.CreatePasswordReset(t.Context(), &store.PasswordReset{TokenHash: hash, UserID: "u1", CreatedAt: t0,
		ExpiresAt: at(time.Hour)}))
	wins := race(t, store.ErrConsumed, func(ctx context.Context, _ int) error {
		_, err := s.ConsumePasswordReset(ctx, hash, t0)
		return err
	})
	same(t, "ConsumePasswordReset winners", wins, 1)
}

func testMailOutbox(t *testing.T, s store.Store) {
	ctx := t.Context()
	m1 := &store.Mail{To: "a@example.com", Subject: "件名", Body: "本文", CreatedAt: t0, NextAttemptAt: t0}
	must(t, s.EnqueueMail(ctx, m1))
	m2 := &store.Mail{To: "b@example.com", Subject: "later", Body: "b", CreatedAt: t0, NextAttemptAt: at(time.Minute),
		ExpiresAt: at(30 * time.Minute)}
	must(t, s.EnqueueMail(ctx, m2))
	if m1.ID == 0 || m2.ID == 0 || m1.ID == m2.ID {
		t.Fatalf("ids: %d, %d", m1.ID, m2.ID)
	}
	got, err := s.GetMail(ctx, m1.ID)
	must(t, err)
	same(t, "GetMail", got, m1)
	got, err = s.GetMail(ctx, m2.ID)
	must(t, err)
	same(t, "GetMail with an expiry", got, m2)
	_, err = s.GetMail(ctx, 999999)
	wantErr(t, "GetMail unknown", err, store.ErrNotFound)

	// Only the due one is claimed, with an attempt counted and the lease set.
	ms, err := s.ClaimMail(ctx, t0, at(time.Minute), 10)
	must(t, err)
	same(t, "claimed", len(ms), 1)
	same(t, "claimed id", ms[0].ID, m1.ID)
	same(t, "attempts", ms[0].Attempts, 1)
	same(t, "lease", ms[0].ClaimedUntil, at(time.Minute))
	same(t, "body", ms[0].Body, "本文")
	// Claimed: not claimable again while the lease lasts.
	ms, err = s.ClaimMail(ctx, at(30*time.Second), at(2*time.Minute), 10)
	must(t, err)
	same(t, "claimed during lease", len(ms), 0)
	// The lease ran out (the sender died): claimable again, along with m2.
	ms, err = s.ClaimMail(ctx, at(time.Minute), at(2*time.Minute), 10)
	must(t, err)
	same(t, "claimed after lease", len(ms), 2)
	same(t, "attempts after lease", ms[0].Attempts+ms[1].Attempts, 3)

	// A failure reschedules with the error and releases the claim.
	must(t, s.RetryMail(ctx, m1.ID, at(5*time.Minute), "dial tcp: connection refused"))
	got, err = s.GetMail(ctx, m1.ID)
	must(t, err)
	same(t, "last error", got.LastError, "dial tcp: connection refused")
	same(t, "next attempt", got.NextAttemptAt, at(5*time.Minute))
	same(t, "claim released", got.ClaimedUntil, time.Time{})
	// Sent: never claimed again.
	must(t, s.MarkMailSent(ctx, m2.ID, at(time.Minute)))
	ms, err = s.ClaimMail(ctx, at(4*time.Minute), at(6*time.Minute), 10)
	must(t, err)
	same(t, "claimed before the retry time", len(ms), 0)
	got, err = s.GetMail(ctx, m2.ID)
	must(t, err)
	same(t, "sent at", got.SentAt, at(time.Minute))
	wantErr(t, "retry a sent mail", s.RetryMail(ctx, m2.ID, at(time.Hour), "x"), store.ErrNotFound)
	ms, err = s.ClaimMail(ctx, at(time.Hour), at(2*time.Hour), 10)
	must(t, err)
	same(t, "claimed later", len(ms), 1)
	same(t, "claimed later id", ms[0].ID, m1.ID)

	// The limit holds, and the cleanup removes old mails in batches.
	for i := range 5 {
		must(t, s.EnqueueMail(ctx, &store.Mail{To: fmt.Sprint(i, "@example.com"), CreatedAt: at(time.Duration(i) * time.Second)}))
	}
	ms, err = s.ClaimMail(ctx, at(2*time.Hour), at(3*time.Hour), 3)
	must(t, err)
	same(t, "claim limit", len(ms), 3)
	n, err := s.DeleteMailBefore(ctx, at(3*time.Second), 2)
	must(t, err)
	same(t, "deleted (limit)", n, 2)
	n, err = s.DeleteMailBefore(ctx, at(3*time.Second), 100)
	must(t, err)
	same(t, "deleted (rest)", n, 3) // m1, m2 and the third at t0+2s
	_, err = s.GetMail(ctx, m1.ID)
	wantErr(t, "deleted mail", err, store.ErrNotFound)
}

// claimedMail queues a mail to addr, due at t0, and claims it until t0+1m:
// the mail as the claim returned it.
func claimedMail(t *testing.T, s store.Store, addr string) store.Mail {
	t.Helper()
	m := &store.Mail{To: addr, Subject: "s", Body: "b", CreatedAt: t0, NextAttemptAt: t0}
	must(t, s.EnqueueMail(t.Context(), m))
	ms, err := s.ClaimMail(t.Context(), t0, at(time.Minute), 10)
	must(t, err)
	if len(ms) != 1 || ms[0].ID != m.ID {
		t.Fatalf("claimed %+v, want the mail to %s alone", ms, addr)
	}
	return ms[0]
}

// testReleaseMail: a claim given back untried is due at once with its
// attempt uncounted; only the claim that made it gives it back, once, and
// never a sent mail.
func testReleaseMail(t *testing.T, s store.Store) {
	ctx := t.Context()
	m := claimedMail(t, s, "a@example.com")
	wantErr(t, "release by another lease", s.ReleaseMail(ctx, m.ID, at(2*time.Minute)), store.ErrNotFound)
	must(t, s.ReleaseMail(ctx, m.ID, m.ClaimedUntil))
	wantErr(t, "release twice", s.ReleaseMail(ctx, m.ID, m.ClaimedUntil), store.ErrNotFound)
	got, err := s.GetMail(ctx, m.ID)
	must(t, err)
	same(t, "released: attempts", got.Attempts, 0)
	same(t, "released: claim", got.ClaimedUntil, time.Time{})
	ms, err := s.ClaimMail(ctx, at(time.Second), at(2*time.Minute), 10)
	must(t, err)
	same(t, "claimed again at once", len(ms), 1)
	same(t, "attempts after release and claim", ms[0].Attempts, 1)
	must(t, s.MarkMailSent(ctx, m.ID, at(time.Second)))
	wantErr(t, "release a sent mail", s.ReleaseMail(ctx, m.ID, ms[0].ClaimedUntil), store.ErrNotFound)
}

// testGiveUpMail: a mail given up on keeps its error, is never claimed
// again, and goes with the cleanup; a sent one cannot be given up on.
func testGiveUpMail(t *testing.T, s store.Store) {
	ctx := t.Context()
	m := claimedMail(t, s, "gone@example.com")
	must(t, s.GiveUpMail(ctx, m.ID, "550 5.1.1 no such user"))
	got, err := s.GetMail(ctx, m.ID)
	must(t, err)
	same(t, "last error", got.LastError, "550 5.1.1 no such user")
	same(t, "next attempt", got.NextAttemptAt, store.MailNever)
	same(t, "claim released", got.ClaimedUntil, time.Time{})
	ms, err := s.ClaimMail(ctx, at(24*365*time.Hour), at(24*365*time.Hour+time.Minute), 10)
	must(t, err)
	same(t, "claimed a year later", len(ms), 0)
	sent := &store.Mail{To: "ok@example.com", CreatedAt: t0, NextAttemptAt: t0}
	must(t, s.EnqueueMail(ctx, sent))
	must(t, s.MarkMailSent(ctx, sent.ID, at(time.Second)))
	wantErr(t, "give up a sent mail", s.GiveUpMail(ctx, sent.ID, "x"), store.ErrNotFound)
	n, err := s.DeleteMailBefore(ctx, at(time.Hour), 10)
	must(t, err)
	same(t, "deleted", n, 2)
}

// testRaceClaimMail: claimers running at once never get the same mail.
func testRaceClaimMail(t *testing.T, s store.Store) {
	ctx := t.Context()
	const mails = 30
	for i := range mails {
		must(t, s.EnqueueMail(ctx, &store.Mail{To: fmt.Sprint(i, "@example.com"), CreatedAt: t0}))
	}
	var mu sync.Mutex
	seen := map[int64]int{}
	race(t, store.ErrUnavailable, func(ctx context.Context, _ int) error {
		ms, err := s.ClaimMail(ctx, t0, at(time.Minute), 5)
		if err != nil {
			return err
		}
		mu.Lock()
		defer mu.Unlock()
		for _, m := range ms {
			seen[m.ID]++
		}
		return nil
	})
	for id, n := range seen {
		if n != 1 {
			t.Errorf("mail %d claimed %d times", id, n)
		}
	}
	if len(seen) == 0 {
		t.Fatal("no mail claimed")
	}
}
