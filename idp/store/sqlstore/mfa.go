package sqlstore

import (
	"context"
	"database/sql"
	"time"

	"github.com/kamera-id/idp/idp/store"
)

// TOTP authenticators, backup codes and throttles.

// PutPendingTOTP stores an enrollment, replacing any earlier pending one;
// ErrNotFound when the user does not exist.
func (s *Store) PutPendingTOTP(ctx context.Context, p *store.PendingTOTP) error {
	_, err := s.q(ctx).ExecContext(ctx, `INSERT INTO pending_totp (user_id, secret_enc, created_at, expires_at)
		VALUES ($1, $2, $3, $4)
		ON CONFLICT (user_id) DO UPDATE SET secret_enc = excluded.secret_enc, created_at = excluded.created_at,
			expires_at = excluded.expires_at`,
		p.UserID, blob(p.SecretEnc), unix(p.CreatedAt), unix(p.ExpiresAt))
	return s.fail("put pending totp", err)
}

// GetPendingTOTP returns the user's unexpired pending enrollment.
func (s *Store) GetPendingTOTP(ctx context.Context, userID string, now time.Time) (*store.PendingTOTP, error) {
	var p store.PendingTOTP
	err := s.q(ctx).QueryRowContext(ctx, `SELECT user_id, secret_enc, created_at, expires_at FROM pending_totp
		WHERE user_id = $1 AND (expires_at = 0 OR expires_at > $2)`, userID, unix(now)).
		Scan(&p.UserID, bytesCol{&p.SecretEnc}, timeCol{&p.CreatedAt}, timeCol{&p.ExpiresAt})
	if err != nil {
		return nil, s.fail("get pending totp", err)
	}
	return &p, nil
}

// ConfirmTOTP turns the pending enrollment with this secret into the user's
// authenticator and replaces the backup codes, in one transaction. The
// pending row is consumed by a DELETE conditional on its secret, so of two
// concurrent confirmations one wins and the other gets ErrNotFound, and a
// secret another setup put in its place is never installed (ErrConsumed).
func (s *Store) ConfirmTOTP(ctx context.Context, userID string, secretEnc []byte, step int64, codes []store.BackupCode, now time.Time) error {
	err := s.inTx(ctx, func(q querier) error {
		n, err := affected(q.ExecContext(ctx, `DELETE FROM pending_totp
			WHERE user_id = $1 AND secret_enc = $2 AND (expires_at = 0 OR expires_at > $3)`,
			userID, blob(secretEnc), unix(now)))
		if err != nil {
			return err
		}
		if n == 0 {
			return s.consumedOrNotFound(ctx, q, `SELECT 1 FROM pending_totp
				WHERE user_id = $1 AND (expires_at = 0 OR expires_at > $2)`, userID, unix(now))
		}
		if _, err := q.ExecContext(ctx, `INSERT INTO totp (user_id, secret_enc, last_step, confirmed_at)
			VALUES ($1, $2, $3, $4)
			ON CONFLICT (user_id) DO UPDATE SET secret_enc = excluded.secret_enc, last_step = excluded.last_step,
				confirmed_at = excluded.confirmed_at`,
			userID, blob(secretEnc), step, unix(now)); err != nil {
			return err
		}
		if err := newCredentials(ctx, q, userID); err != nil {
			return err
		}
		return s.replaceBackupCodes(ctx, q, userID, codes)
	})
	return s.fail("confirm totp", err)
}

// GetSecondStep implements store.Store: the user joined with the
// authenticator and the throttle, which may both be missing, and the
// login's record looked up by its key.
func (s *Store) GetSecondStep(ctx context.Context, userID, throttleKey string, loginKey []byte) (*store.SecondStep, error) {
	st := &store.SecondStep{User: new(store.User), TOTP: new(store.TOTP), Throttle: store.Throttle{Key: throttleKey}}
	a, th := st.TOTP, &st.Throttle
	err := s.q(ctx).QueryRowContext(ctx, `SELECT `+userFields+`, a.user_id IS NOT NULL,
		a.secret_enc, COALESCE(a.last_step, 0), COALESCE(a.confirmed_at, 0),
		COALESCE(th.failures, 0), COALESCE(th.lockouts, 0), COALESCE(th.locked_until, 0),
		COALESCE((SELECT session_id FROM spent_logins WHERE key = $3), '')
		FROM users u
		LEFT JOIN totp a ON a.user_id = u.id
		LEFT JOIN throttles th ON th.key = $2
		WHERE u.id = $1`, userID, throttleKey, blob(loginKey)).
		Scan(append(userDest(st.User), bytesCol{&a.SecretEnc}, &a.LastStep, timeCol{&a.ConfirmedAt},
			&th.Failures, &th.Lockouts, timeCol{&th.LockedUntil}, &st.LoginSession)...)
	if err != nil {
		return nil, s.fail("get second step", err)
	}
	if st.User.MFAEnabled { // the authenticator's row was there
		a.UserID = st.User.ID
	} else {
		st.TOTP = nil
	}
	return st, nil
}

// consumedOrNotFound tells why a conditional update changed nothing: the
// row exists (ErrConsumed) or not (ErrNotFound, or the query's error).
func (s *Store) consumedOrNotFound(ctx context.Context, q querier, exists string, args ...any) error {
	var one int
	if err := q.QueryRowContext(ctx, exists, args...).Scan(&one); err != nil {
		return err // sql.ErrNoRows: ErrNotFound
	}
	return store.ErrConsumed
}

// DeleteMFA removes the authenticator, any pending enrollment and the backup
// codes, in one transaction. ErrNotFound when there was no authenticator
// (the pending enrollment and codes are removed all the same).
func (s *Store) DeleteMFA(ctx context.Context, userID string) error {
	var n int64
	err := s.inTx(ctx, func(q querier) error {
		var err error
		if n, err = affected(q.ExecContext(ctx, `DELETE FROM totp WHERE user_id = $1`, userID)); err != nil {
			return err
		}
		if n > 0 {
			if err := newCredentials(ctx, q, userID); err != nil {
				return err
			}
		}
		if _, err := q.ExecContext(ctx, `DELETE FROM pending_totp WHERE user_id = $1`, userID); err != nil {
			return err
		}
		_, err = q.ExecContext(ctx, `DELETE FROM backup_codes WHERE user_id = $1`, userID)
		return err
	})
	if err == nil && n == 0 {
		err = store.ErrNotFound
	}
	return s.fail("delete mfa", err)
}

// ListBackupCodes returns the user's codes, used ones included, by Position.
func (s *Store) ListBackupCodes(ctx context.Context, userID string) ([]store.BackupCode, error) {
	rows, err := s.q(ctx).QueryContext(ctx, `SELECT position, hash, enc, used_at FROM backup_codes
		WHERE user_id = $1 ORDER BY position`, userID)
	if err != nil {
		return nil, s.fail("list backup codes", err)
	}
	defer rows.Close()
	var cs []store.BackupCode
	for rows.Next() {
		var c store.BackupCode
		if err := rows.Scan(&c.Position, bytesCol{&c.Hash}, bytesCol{&c.Enc}, timeCol{&c.UsedAt}); err != nil {
			return nil, s.fail("list backup codes", err)
		}
		cs = append(cs, c)
	}
	return cs, s.fail("list backup codes", rows.Err())
}

// ReplaceBackupCodes replaces the user's codes with codes, in one
// transaction; ErrDuplicate when two codes share a Position.
//
// It holds the user's row while it replaces the codes, so that concurrent
// replacements run one after the other: under READ COMMITTED the second
// one's DELETE would otherwise miss the rows the first inserted, and its
// INSERTs collide with them. With the row held, it checks that the user
// still has an authenticator: two-step verification turned off, or reset
// by the support desk, since the caller read the account is ErrNotFound,
// not codes left without an authenticator. (DeleteMFA deletes the
// authenticator, then changes the user's row: either it committed before
// the check, or it waits for this transaction there and its DELETE of the
// codes, a statement after, removes the ones written here.)
func (s *Store) ReplaceBackupCodes(ctx context.Context, userID string, codes []store.BackupCode) error {
	err := s.inTx(ctx, func(q querier) error {
		if err := s.lockUser(ctx, q, userID); err != nil {
			return err
		}
		var one int
		if err := q.QueryRowContext(ctx, `SELECT 1 FROM totp WHERE user_id = $1`, userID).Scan(&one); err != nil {
			return err // sql.ErrNoRows: ErrNotFound
		}
		return s.replaceBackupCodes(ctx, q, userID, codes)
	})
	return s.fail("replace backup codes", err)
}

// replaceBackupCodes replaces the user's codes in q, whose transaction
// holds the user's row (ReplaceBackupCodes locks it; ConfirmTOTP has
// updated it).
func (s *Store) replaceBackupCodes(ctx context.Context, q querier, userID string, codes []store.BackupCode) error {
	if _, err := q.ExecContext(ctx, `DELETE FROM backup_codes WHERE user_id = $1`, userID); err != nil {
		return err
	}
	for _, c := range codes {
		if _, err := q.ExecContext(ctx, `INSERT INTO backup_codes (user_id, position, hash, enc, used_at)
			VALUES ($1, $2, $3, $4, $5)`, userID, c.Position, blob(c.Hash), blob(c.Enc), unix(c.UsedAt)); err != nil {
			return err
		}
	}
	return nil
}

// UseBackupCode marks the unused code with this hash as used, in one
// conditional UPDATE (of concurrent callers exactly one wins), and counts
// the unused codes left; ErrConsumed when no unused code matches.
func (s *Store) UseBackupCode(ctx context.Context, userID string, hash []byte, now time.Time) (int, error) {
	q := s.q(ctx)
	// used_at = 0 means unused, so a zero now is recorded as 1 second.
	n, err := affected(q.ExecContext(ctx, `UPDATE backup_codes SET used_at = $3
		WHERE user_id = $1 AND hash = $2 AND used_at = 0`, userID, blob(hash), max(unix(now), 1)))
	if err != nil {
		return 0, s.fail("use backup code", err)
	}
	if n == 0 {
		return 0, s.fail("use backup code", store.ErrConsumed)
	}
	var remaining int
	err = q.QueryRowContext(ctx, `SELECT count(*) FROM backup_codes WHERE user_id = $1 AND used_at = 0`, userID).
		Scan(&remaining)
	return remaining, s.fail("use backup code", err)
}

// GetThrottle returns the key's counters; a zero Throttle when there are none.
func (s *Store) GetThrottle(ctx context.Context, key string) (*store.Throttle, error) {
	t := store.Throttle{Key: key}
	err := s.q(ctx).QueryRowContext(ctx, `SELECT failures, lockouts, locked_until FROM throttles WHERE key = $1`, key).
		Scan(&t.Failures, &t.Lockouts, timeCol{&t.LockedUntil})
	if err != nil && !isNoRows(err) {
		return nil, s.fail("get throttle", err)
	}
	return &t, nil
}

// GetThrottles reads the keys in one statement, in the order given; a key
// with no row comes back as a zero Throttle.
func (s *Store) GetThrottles(ctx context.Context, keys ...string) ([]store.Throttle, error) {
	tk := newThrottleKeys(keys, 1)
	if len(keys) == 0 {
		return tk.out, nil
	}
	rows, err := s.q(ctx).QueryContext(ctx, `SELECT key, failures, lockouts, locked_until FROM throttles
		WHERE key IN (`+tk.in+`)`, tk.args...)
	if err != nil {
		return nil, s.fail("get throttles", err)
	}
	defer rows.Close()
	for rows.Next() {
		var t store.Throttle
		if err := rows.Scan(&t.Key, &t.Failures, &t.Lockouts, timeCol{&t.LockedUntil}); err != nil {
			return nil, s.fail("get throttles", err)
		}
		tk.put(t)
	}
	return tk.out, s.fail("get throttles", rows.Err())
}

// GetPasswordStep implements store.Store: the user, if any, joined with
// every throttle of keys on record (a row each, or one row without one).
func (s *Store) GetPasswordStep(ctx context.Context, email string, keys ...string) (*store.User, []store.Throttle, error) {
	tk := newThrottleKeys(keys, 2)
	on := "th.key IN (" + tk.in + ")"
	if len(keys) == 0 {
		on = "1 = 0"
	}
	rows, err := s.q(ctx).QueryContext(ctx, `SELECT `+maybeUserCols+`, th.key, COALESCE(th.failures, 0),
		COALESCE(th.lockouts, 0), COALESCE(th.locked_until, 0)
		FROM (SELECT 1 AS one) AS x
		LEFT JOIN users u ON u.email_lower = $1
		LEFT JOIN throttles th ON `+on, append([]any{emailKey(email)}, tk.args...)...)
	if err != nil {
		return nil, nil, s.fail("get password step", err)
	}
	defer rows.Close()
	var u maybeUser
	for rows.Next() {
		var (
			t   store.Throttle
			key sql.NullString
		)
		if err := rows.Scan(append(u.dest(), &key, &t.Failures, &t.Lockouts, timeCol{&t.LockedUntil})...); err != nil {
			return nil, nil, s.fail("get password step", err)
		}
		if key.Valid {
			t.Key = key.String
			tk.put(t)
		}
	}
	if err := rows.Err(); err != nil {
		return nil, nil, s.fail("get password step", err)
	}
	return u.user(), tk.out, nil
}

// throttleKeys places the throttles of a statement's rows in the order of
// the keys asked for.
type throttleKeys struct {
	out  []store.Throttle // zero (but for the key) until put
	at   map[string][]int
	args []any  // the keys, as the statement's arguments
	in   string // their placeholders, from $first on
}

func newThrottleKeys(keys []string, first int) *throttleKeys {
	tk := &throttleKeys{out: make([]store.Throttle, len(keys)), at: make(map[string][]int, len(keys)),
		args: make([]any, len(keys))}
	for i, k := range keys {
		tk.out[i].Key = k
		tk.at[k] = append(tk.at[k], i)
		tk.args[i] = k
	}
	tk.in = placeholders(first, len(keys))
	return tk
}

func (tk *throttleKeys) put(t store.Throttle) {
	for _, i := range tk.at[t.Key] {
		tk.out[i] = t
	}
}

// uncappedLockout bounds a lockout when the policy sets no MaxLockout.
const uncappedLockout = 100 * 365 * 24 * time.Hour

// RecordFailure counts one failure against key and returns the new state.
//
// The whole computation is one upsert: the first failure's row inserted,
// or, when the key has a row, that row updated. So it is atomic without an
// explicit lock: concurrent updates of one row are serialised by the
// database, PostgreSQL re-evaluates the SET expressions on the row the
// earlier update left, and its ON CONFLICT DO UPDATE guarantees an insert
// or an update even while the row is being deleted (ResetThrottle, the
// sweep), where an INSERT of a zero row, then an UPDATE, could find no row
// to update. The row inserted is the update applied to a zero row (the
// same expressions, throttleStep), with updated_at set, so the sweep
// (DeleteExpired) does not take it for a quiet one.
// The lockout length base*2^lockouts is computed with a shift; shifts are
// only taken below capAt, the first exponent reaching the cap, so they
// never overflow.
func (s *Store) RecordFailure(ctx context.Context, key string, p store.ThrottlePolicy, now time.Time) (*store.Throttle, error) {
	maxFailures := max(p.MaxFailures, 1)
	base, limit := seconds(p.BaseLockout), seconds(p.MaxLockout)
	if limit <= 0 {
		limit = seconds(uncappedLockout)
	}
	base = min(base, limit)
	if base <= 0 {
		limit = 0 // no lockout at all
	}
	capAt := 0
	for base > 0 && base<<capAt < limit {
		capAt++
	}

	t := store.Throttle{Key: key}
	err := s.q(ctx).QueryRowContext(ctx, recordFailureSQL, key, maxFailures, unix(now), base, capAt, limit, seconds(p.Forgive)).
		Scan(&t.Failures, &t.Lockouts, timeCol{&t.LockedUntil})
	if err != nil {
		return nil, s.fail("record failure", err)
	}
	return &t, nil
}

// throttleStep is one failure counted on a row whose counters are
// failures, lockouts and lockedUntil (SQL expressions): the new values of
// the three columns. The parameters are RecordFailure's: $2 the failures
// that lock, $3 now, $4 the base lockout, $5 capAt, $6 the longest lockout,
// $7 the policy's Forgive (all in seconds).
func throttleStep(failures, lockouts, lockedUntil string) [3]string {
	reached := failures + ` + 1 >= $2`
	return [3]string{
		`CASE WHEN ` + reached + ` THEN 0 ELSE ` + failures + ` + 1 END`,
		`CASE WHEN ` + reached + ` THEN ` + lockouts + ` + 1 ELSE ` + lockouts + ` END`,
		`CASE WHEN NOT (` + reached + `) THEN ` + lockedUntil + `
			WHEN ` + lockouts + ` >= $5 THEN CAST($3 AS BIGINT) + CAST($6 AS BIGINT)
			ELSE CAST($3 AS BIGINT) + CAST($4 AS BIGINT) * (CAST(1 AS BIGINT) << ` + lockouts + `)
		END`,
	}
}

// forgivenFailures are the failures of the existing row as a policy with
// Forgive ($7) counts them at $3: with the row not locked, one taken off
// for each whole Forgive since its last failure (updated_at). Its lockouts
// are not forgiven: a lockout served is itself a quiet time, and
// forgetting them would let an address that fails whenever it may start
// again from the shortest lockout each time (the sweep forgets them a day
// after the last failure, as for every key). NULLIF keeps the division
// defined where Forgive is zero; a last failure in the future, another
// instance's clock ahead, forgives nothing.
func forgivenFailures() string {
	const (
		forgive = `CAST($7 AS BIGINT)`
		quiet   = `(CAST($3 AS BIGINT) - throttles.updated_at)`
		leaked  = `(CASE WHEN ` + quiet + ` > 0 THEN ` + quiet + ` / NULLIF(` + forgive + `, 0) ELSE 0 END)`
		open    = `(` + forgive + ` > 0 AND throttles.locked_until <= CAST($3 AS BIGINT))`
	)
	return `(CASE WHEN NOT ` + open + ` THEN throttles.failures
		WHEN throttles.failures > ` + leaked + ` THEN throttles.failures - ` + leaked + ` ELSE 0 END)`
}

// recordFailureSQL is RecordFailure's upsert: the first failure (one step
// from a zero row) or one more on the existing row, after what its policy
// forgives.
var recordFailureSQL = func() string {
	first := throttleStep("0", "0", "0")
	next := throttleStep(forgivenFailures(), "throttles.lockouts", "throttles.locked_until")
	return `INSERT INTO throttles (key, failures, lockouts, locked_until, updated_at)
		VALUES ($1, ` + first[0] + `, ` + first[1] + `, ` + first[2] + `, $3)
		ON CONFLICT (key) DO UPDATE SET failures = ` + next[0] + `, lockouts = ` + next[1] + `,
			locked_until = ` + next[2] + `, updated_at = $3
		RETURNING failures, lockouts, locked_until`
}()

// seconds is d in whole seconds, rounded up (a lockout is never shortened).
func seconds(d time.Duration) int64 {
	if d <= 0 {
		return 0
	}
	return int64((d + time.Second - 1) / time.Second)
}

// ResetThrottle forgets the key's failures and lockouts.
func (s *Store) ResetThrottle(ctx context.Context, key string) error {
	_, err := s.q(ctx).ExecContext(ctx, `DELETE FROM throttles WHERE key = $1`, key)
	return s.fail("reset throttle", err)
}
