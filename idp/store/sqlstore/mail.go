package sqlstore

import (
	"context"
	"time"

	"github.com/kamera-id/idp/idp/store"
)

// Password reset tokens and the mail outbox.

// CreatePasswordReset stores a reset token's hash for an account that
// exists and is not disabled (ErrNotFound otherwise). The account is read in
// the insert itself: on PostgreSQL its row is locked FOR KEY SHARE, so an
// insert running while SetUserDisabled holds the row waits for it and then
// finds the account disabled, instead of adding a link after the disable
// voided the others. (SQLite runs one write transaction at a time.)
func (s *Store) CreatePasswordReset(ctx context.Context, r *store.PasswordReset) error {
	lock := ""
	if s.dialect.RowLocks {
		lock = ` FOR KEY SHARE`
	}
	n, err := affected(s.q(ctx).ExecContext(ctx, `INSERT INTO password_resets (token_hash, user_id, created_at, expires_at, used_at)
		SELECT $1, id, $3, $4, $5 FROM users WHERE id = $2 AND disabled_at = 0`+lock,
		blob(r.TokenHash), r.UserID, unix(r.CreatedAt), unix(r.ExpiresAt), unix(r.UsedAt)))
	if err == nil && n == 0 {
		err = store.ErrNotFound
	}
	return s.fail("create password reset", err)
}

// GetPasswordReset returns the unused, unexpired token with this hash.
func (s *Store) GetPasswordReset(ctx context.Context, tokenHash []byte, now time.Time) (*store.PasswordReset, error) {
	var r store.PasswordReset
	err := s.q(ctx).QueryRowContext(ctx, `SELECT token_hash, user_id, created_at, expires_at, used_at FROM password_resets
		WHERE token_hash = $1 AND used_at = 0 AND expires_at > $2`, blob(tokenHash), unix(now)).
		Scan(bytesCol{&r.TokenHash}, &r.UserID, timeCol{&r.CreatedAt}, timeCol{&r.ExpiresAt}, timeCol{&r.UsedAt})
	if err != nil {
		return nil, s.fail("get password reset", err)
	}
	return &r, nil
}

const consumeResetSQL = `UPDATE password_resets SET used_at = $2
		WHERE token_hash = $1 AND used_at = 0 AND expires_at > $2`

// consumeResetLockingSQL is consumeResetSQL after locking the row of the
// token's user FOR UPDATE: the uncorrelated EXISTS is an InitPlan that runs
// before the scan of password_resets (as in exchangeInOneStatement), so
// the user's row is locked before the token's. locked has one row whether
// or not a user was found: it orders, it decides nothing.
const consumeResetLockingSQL = `WITH locked AS (SELECT count(*) FROM (SELECT 1 FROM users
		WHERE id = (SELECT user_id FROM password_resets WHERE token_hash = $1) FOR UPDATE) AS u) ` +
	consumeResetSQL + ` AND EXISTS (SELECT 1 FROM locked)`

// ConsumePasswordReset uses the token with one conditional UPDATE: of two
// concurrent callers exactly one gets the user id.
//
// On PostgreSQL (Dialect.RowLocks) the statement first locks the user's
// row FOR UPDATE, as UpdatePassword does (its UPDATE of users) before it
// voids the user's unused tokens: a reset (this, then UpdatePassword, in
// one transaction) and a password change, or two resets of one user, lock
// users, then password_resets, in that order, and so wait for each other
// rather than deadlock. One that waited finds the token voided by the
// other's UpdatePassword: ErrConsumed.
func (s *Store) ConsumePasswordReset(ctx context.Context, tokenHash []byte, now time.Time) (string, error) {
	query := consumeResetSQL
	if s.dialect.RowLocks {
		query = consumeResetLockingSQL
	}
	var userID string
	err := s.q(ctx).QueryRowContext(ctx, query+` RETURNING user_id`, blob(tokenHash), unix(now)).Scan(&userID)
	if isNoRows(err) {
		err = store.ErrConsumed
	}
	return userID, s.fail("consume password reset", err)
}

const mailCols = `id, recipient, subject, body, attempts, next_attempt_at, claimed_until, sent_at, last_error, created_at, expires_at`

func scanMail(r scanner) (*store.Mail, error) {
	var m store.Mail
	err := r.Scan(&m.ID, &m.To, &m.Subject, &m.Body, &m.Attempts, timeCol{&m.NextAttemptAt}, timeCol{&m.ClaimedUntil},
		timeCol{&m.SentAt}, &m.LastError, timeCol{&m.CreatedAt}, timeCol{&m.ExpiresAt})
	if err != nil {
		return nil, err
	}
	return &m, nil
}

// EnqueueMail adds a mail to the outbox.
func (s *Store) EnqueueMail(ctx context.Context, m *store.Mail) error {
	err := s.q(ctx).QueryRowContext(ctx, `INSERT INTO mail_outbox
		(recipient, subject, body, attempts, next_attempt_at, claimed_until, sent_at, last_error, created_at, expires_at)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) RETURNING id`,
		m.To, m.Subject, m.Body, m.Attempts, unix(m.NextAttemptAt), unix(m.ClaimedUntil), unix(m.SentAt),
		m.LastError, unix(m.CreatedAt), unix(m.ExpiresAt)).Scan(&m.ID)
	return s.fail("enqueue mail", err)
}

// ClaimMail leases due mails with one conditional UPDATE ... RETURNING. The
// outer WHERE repeats the conditions: on PostgreSQL a concurrent claimer
// that waited for a row re-checks them against the winner's update and
// skips the row.
func (s *Store) ClaimMail(ctx context.Context, now, leaseUntil time.Time, limit int) ([]store.Mail, error) {
	rows, err := s.q(ctx).QueryContext(ctx, `UPDATE mail_outbox SET claimed_until = $2, attempts = attempts + 1
		WHERE id IN (SELECT id FROM mail_outbox
			WHERE sent_at = 0 AND next_attempt_at <= $1 AND claimed_until <= $1 ORDER BY id LIMIT $3)
		AND sent_at = 0 AND next_attempt_at <= $1 AND claimed_until <= $1
		RETURNING `+mailCols, unix(now), unix(leaseUntil), sqlLimit(limit))
	if err != nil {
		return nil, s.fail("claim mail", err)
	}
	defer rows.Close()
	var ms []store.Mail
	for rows.Next() {
		m, err := scanMail(rows)
		if err != nil {
			return nil, s.fail("claim mail", err)
		}
		ms = append(ms, *m)
	}
	return ms, s.fail("claim mail", rows.Err())
}

// MarkMailSent records the mail as sent.
func (s *Store) MarkMailSent(ctx context.Context, id int64, now time.Time) error {
	n, err := affected(s.q(ctx).ExecContext(ctx, `UPDATE mail_outbox SET sent_at = $2, claimed_until = 0, last_error = ''
		WHERE id = $1`, id, unix(now)))
	if err == nil && n == 0 {
		err = store.ErrNotFound
	}
	return s.fail("mark mail sent", err)
}

// RetryMail releases the claim and schedules another attempt. The error,
// often a mail server's reply, is kept as at most 500 bytes of valid UTF-8
// (store.ClipText).
func (s *Store) RetryMail(ctx context.Context, id int64, next time.Time, lastError string) error {
	n, err := affected(s.q(ctx).ExecContext(ctx, `UPDATE mail_outbox SET next_attempt_at = $2, claimed_until = 0,
		last_error = $3 WHERE id = $1 AND sent_at = 0`, id, unix(next), store.ClipText(lastError, 500)))
	if err == nil && n == 0 {
		err = store.ErrNotFound
	}
	return s.fail("retry mail", err)
}

// ReleaseMail implements store.Store. A lease is claimed for longer than
// a second and ends before the mail is claimed again, so claimed_until
// names the claim.
func (s *Store) ReleaseMail(ctx context.Context, id int64, claimedUntil time.Time) error {
	n, err := affected(s.q(ctx).ExecContext(ctx, `UPDATE mail_outbox SET claimed_until = 0, attempts = attempts - 1
		WHERE id = $1 AND sent_at = 0 AND claimed_until = $2 AND attempts > 0`, id, unix(claimedUntil)))
	if err == nil && n == 0 {
		err = store.ErrNotFound
	}
	return s.fail("release mail", err)
}

// GiveUpMail releases the claim and schedules no further attempt.
func (s *Store) GiveUpMail(ctx context.Context, id int64, lastError string) error {
	return s.RetryMail(ctx, id, store.MailNever, lastError)
}

// GetMail returns one mail.
func (s *Store) GetMail(ctx context.Context, id int64) (*store.Mail, error) {
	m, err := scanMail(s.q(ctx).QueryRowContext(ctx, `SELECT `+mailCols+` FROM mail_outbox WHERE id = $1`, id))
	return m, s.fail("get mail", err)
}

// DeleteMailBefore removes mails created before t, at most limit.
func (s *Store) DeleteMailBefore(ctx context.Context, t time.Time, limit int) (int, error) {
	n, err := affected(s.q(ctx).ExecContext(ctx, `DELETE FROM mail_outbox WHERE id IN (SELECT id FROM mail_outbox
		WHERE created_at < $1 LIMIT $2)`, unix(t), sqlLimit(limit)))
	return int(n), s.fail("delete old mail", err)
}
