package sqlstore

import (
	"context"
	"time"

	"github.com/kamera-id/idp/idp/store"
)

// OAuth requests, audit events and the expiry sweep.

// CreateToken stores a request under (kind, signature); ErrDuplicate when
// that pair is taken.
func (s *Store) CreateToken(ctx context.Context, t *store.TokenRecord) error {
	_, err := s.q(ctx).ExecContext(ctx, `INSERT INTO tokens
		(kind, signature, request_id, client_id, subject, session_id, data, active, created_at, expires_at)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)`,
		t.Kind, t.Signature, t.RequestID, t.ClientID, t.Subject, t.SessionID, blob(t.Data), t.Active,
		unix(t.CreatedAt), unix(t.ExpiresAt))
	return s.fail("create token", err)
}

// GetToken returns the record, active or not (expiry is the caller's
// business); ErrNotFound when there is none.
func (s *Store) GetToken(ctx context.Context, kind, signature string) (*store.TokenRecord, error) {
	var t store.TokenRecord
	err := s.q(ctx).QueryRowContext(ctx, `SELECT kind, signature, request_id, client_id, subject, session_id,
		data, active, created_at, expires_at FROM tokens WHERE kind = $1 AND signature = $2`, kind, signature).
		Scan(&t.Kind, &t.Signature, &t.RequestID, &t.ClientID, &t.Subject, &t.SessionID,
			bytesCol{&t.Data}, &t.Active, timeCol{&t.CreatedAt}, timeCol{&t.ExpiresAt})
	if err != nil {
		return nil, s.fail("get token", err)
	}
	return &t, nil
}

// DeleteToken removes the record; ErrNotFound when it was already gone.
func (s *Store) DeleteToken(ctx context.Context, kind, signature string) error {
	n, err := affected(s.q(ctx).ExecContext(ctx, `DELETE FROM tokens WHERE kind = $1 AND signature = $2`,
		kind, signature))
	if err == nil && n == 0 {
		err = store.ErrNotFound
	}
	return s.fail("delete token", err)
}

// DeactivateToken clears Active in one conditional UPDATE, so of concurrent
// callers exactly one gets nil; ErrConsumed when it was inactive already,
// ErrNotFound when there is no such record.
func (s *Store) DeactivateToken(ctx context.Context, kind, signature string) error {
	q := s.q(ctx)
	n, err := affected(q.ExecContext(ctx, `UPDATE tokens SET active = FALSE
		WHERE kind = $1 AND signature = $2 AND active`, kind, signature))
	if err == nil && n == 0 {
		err = s.consumedOrNotFound(ctx, q, `SELECT 1 FROM tokens WHERE kind = $1 AND signature = $2`, kind, signature)
	}
	return s.fail("deactivate token", err)
}

// DeactivateTokensByRequest clears Active on every record of the kind
// issued for requestID (none is not an error).
func (s *Store) DeactivateTokensByRequest(ctx context.Context, kind, requestID string) error {
	_, err := s.q(ctx).ExecContext(ctx, `UPDATE tokens SET active = FALSE
		WHERE kind = $1 AND request_id = $2 AND active`, kind, requestID)
	return s.fail("deactivate tokens by request", err)
}

// AddAuditEvent stores the event and sets e.ID.
func (s *Store) AddAuditEvent(ctx context.Context, e *store.AuditEvent) error {
	err := s.q(ctx).QueryRowContext(ctx, `INSERT INTO audit_events (user_id, type, detail, ip, created_at)
		VALUES ($1, $2, $3, $4, $5) RETURNING id`, e.UserID, e.Type, e.Detail, e.IP, unix(e.CreatedAt)).
		Scan(&e.ID)
	return s.fail("add audit event", err)
}

// noLimit stands for "no limit" in a LIMIT clause (both dialects take a
// bigint there, neither a NULL in SQLite).
const noLimit = int64(1) << 62

// ListAuditEvents returns the user's latest events, newest first; a limit
// <= 0 returns them all.
func (s *Store) ListAuditEvents(ctx context.Context, userID string, limit int) ([]store.AuditEvent, error) {
	rows, err := s.q(ctx).QueryContext(ctx, `SELECT id, user_id, type, detail, ip, created_at FROM audit_events
		WHERE user_id = $1 ORDER BY id DESC LIMIT $2`, userID, sqlLimit(limit))
	if err != nil {
		return nil, s.fail("list audit events", err)
	}
	defer rows.Close()
	var es []store.AuditEvent
	for rows.Next() {
		var e store.AuditEvent
		if err := rows.Scan(&e.ID, &e.UserID, &e.Type, &e.Detail, &e.IP, timeCol{&e.CreatedAt}); err != nil {
			return nil, s.fail("list audit events", err)
		}
		es = append(es, e)
	}
	return es, s.fail("list audit events", rows.Err())
}

func sqlLimit(limit int) int64 {
	if limit <= 0 {
		return noLimit
	}
	return int64(limit)
}

// expiredSweeps delete at most $2 rows of a table that expired by $1 (an
// expiry of 0 never expires). Each selects the keys first, because neither
// dialect has DELETE ... LIMIT in its default build.
var expiredSweeps = []struct{ table, sql string }{
	{"tokens", `DELETE FROM tokens WHERE (kind, signature) IN (SELECT kind, signature FROM tokens
		WHERE expires_at <> 0 AND expires_at <= $1 LIMIT $2)`},
	{"flows", `DELETE FROM flows WHERE key IN (SELECT key FROM flows
		WHERE expires_at <> 0 AND expires_at <= $1 LIMIT $2)`},
	{"sessions", `DELETE FROM sessions WHERE token_hash IN (SELECT token_hash FROM sessions
		WHERE expires_at <> 0 AND expires_at <= $1 LIMIT $2)`},
	{"pending_totp", `DELETE FROM pending_totp WHERE user_id IN (SELECT user_id FROM pending_totp
		WHERE expires_at <> 0 AND expires_at <= $1 LIMIT $2)`},
	{"password_resets", `DELETE FROM password_resets WHERE token_hash IN (SELECT token_hash FROM password_resets
		WHERE expires_at <= $1 LIMIT $2)`},
}

// DeleteExpired removes expired tokens, flows, sessions and pending
// enrollments, at most limit rows of each (limit <= 0: all of them), and
// says how many went. Each table is swept by its own statement.
func (s *Store) DeleteExpired(ctx context.Context, now time.Time, limit int) (int, error) {
	total := 0
	for _, sw := range expiredSweeps {
		n, err := affected(s.q(ctx).ExecContext(ctx, sw.sql, unix(now), sqlLimit(limit)))
		total += int(n)
		if err != nil {
			return total, s.fail("delete expired "+sw.table, err)
		}
	}
	return total, nil
}
