package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/kamera-id/idp/idp/store"
)

// OAuth requests, audit events and the expiry sweep.

const (
	tokenColumns   = `kind, signature, request_id, client_id, subject, session_id, data, active, created_at, expires_at`
	createTokenSQL = `INSERT INTO tokens (` + tokenColumns + `)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)`
	tokenExistsSQL     = `SELECT 1 FROM tokens WHERE kind = $1 AND signature = $2`
	deactivateTokenSQL = `UPDATE tokens SET active = FALSE
		WHERE kind = $1 AND signature = $2 AND active`
)

// deactivateByRequestSQL deactivates the tokens of n kinds ($2 on) issued
// for the request $1.
func deactivateByRequestSQL(n int) string {
	return `UPDATE tokens SET active = FALSE
		WHERE request_id = $1 AND kind IN (` + placeholders(2, n) + `) AND active`
}

// tokenArgs are t's values in the order of tokenColumns.
func tokenArgs(t *store.TokenRecord) []any {
	return []any{t.Kind, t.Signature, t.RequestID, t.ClientID, t.Subject, t.SessionID, blob(t.Data), t.Active,
		unix(t.CreatedAt), unix(t.ExpiresAt)}
}

// tokenReadColumns are tokenColumns and what only the store writes.
const tokenReadColumns = tokenColumns + `, successor`

// tokenDest are the scan destinations of tokenReadColumns in t.
func tokenDest(t *store.TokenRecord) []any {
	return []any{&t.Kind, &t.Signature, &t.RequestID, &t.ClientID, &t.Subject, &t.SessionID,
		bytesCol{&t.Data}, &t.Active, timeCol{&t.CreatedAt}, timeCol{&t.ExpiresAt}, &t.Successor}
}

// typedTokenValues selects the values of tokenColumns from the parameters
// after the first p, cast (PostgreSQL types a parameter in a SELECT list
// as text otherwise, which no BIGINT or BYTEA column takes).
func typedTokenValues(p int) string {
	return fmt.Sprintf(`SELECT $%d::text, $%d::text, $%d::text, $%d::text, $%d::text, $%d::text, $%d::bytea,
		$%d::boolean, $%d::bigint, $%d::bigint`, p+1, p+2, p+3, p+4, p+5, p+6, p+7, p+8, p+9, p+10)
}

// createCodeSQL stores a code (tokenArgs) only while its subject ($5) has
// the session it is issued in ($6), and, for a client that asks for
// consent (createConsented), the consent to the client ($4): on
// SQLite the one statement is its own transaction, which no other write
// interleaves with. On PostgreSQL (the locking variants) the rows are
// locked FOR KEY SHARE: a DELETE of either (endSessions, RevokeConsent)
// waits for this statement's transaction to end, or this statement waits
// for the DELETE's and then finds the row gone (READ COMMITTED skips a row
// deleted while it waited for it).
const (
	createCodeFrom  = ` FROM sessions WHERE id = $6 AND user_id = $5`
	consentExists   = ` AND EXISTS (SELECT 1 FROM consents WHERE user_id = $5 AND client_id = $4`
	createCodeSQL   = `INSERT INTO tokens (` + tokenColumns + `) SELECT $1, $2, $3, $4, $5, $6, $7, $8, $9, $10` + createCodeFrom
	createConsented = createCodeSQL + consentExists + `)`
)

// createCodeQueries are the statements above by dialect.RowLocks and
// TokenRecord.Consented.
var createCodeQueries = func() map[[2]bool]string {
	locking := `INSERT INTO tokens (` + tokenColumns + `) ` + typedTokenValues(0) + createCodeFrom
	return map[[2]bool]string{
		{false, false}: createCodeSQL, {false, true}: createConsented,
		{true, false}: locking + ` FOR KEY SHARE`, {true, true}: locking + consentExists + ` FOR KEY SHARE) FOR KEY SHARE`,
	}
}()

// CreateToken implements store.Store.
func (s *Store) CreateToken(ctx context.Context, t *store.TokenRecord) error {
	if t.Kind != store.KindAuthorizeCode || t.SessionID == "" {
		_, err := s.q(ctx).ExecContext(ctx, createTokenSQL, tokenArgs(t)...)
		return s.fail("create token", err)
	}
	query := createCodeQueries[[2]bool{s.dialect.RowLocks, t.Consented}]
	n, err := affected(s.q(ctx).ExecContext(ctx, query, tokenArgs(t)...))
	if err == nil && n == 0 {
		err = store.ErrNotFound
	}
	return s.fail("create token", err)
}

// GetToken returns the record, active or not (expiry is the caller's
// business); ErrNotFound when there is none.
func (s *Store) GetToken(ctx context.Context, kind, signature string) (*store.TokenRecord, error) {
	var t store.TokenRecord
	err := s.q(ctx).QueryRowContext(ctx, `SELECT `+tokenReadColumns+` FROM tokens WHERE kind = $1 AND signature = $2`,
		kind, signature).Scan(tokenDest(&t)...)
	if err != nil {
		return nil, s.fail("get token", err)
	}
	return &t, nil
}

// GetTokenWithUser implements store.Store: the record joined with its
// subject, who may be gone.
func (s *Store) GetTokenWithUser(ctx context.Context, kind, signature string) (*store.TokenRecord, *store.User, error) {
	var (
		t store.TokenRecord
		u maybeUser
	)
	err := s.q(ctx).QueryRowContext(ctx, `SELECT tk.*, `+maybeUserCols+`
		FROM (SELECT `+tokenReadColumns+` FROM tokens WHERE kind = $1 AND signature = $2) AS tk
		LEFT JOIN users u ON u.id = tk.subject`, kind, signature).
		Scan(append(tokenDest(&t), u.dest()...)...)
	if err != nil {
		return nil, nil, s.fail("get token with user", err)
	}
	return &t, u.user(), nil
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
	n, err := affected(q.ExecContext(ctx, deactivateTokenSQL, kind, signature))
	if err == nil && n == 0 {
		err = s.consumedOrNotFound(ctx, q, tokenExistsSQL, kind, signature)
	}
	return s.fail("deactivate token", err)
}

// lockGrantSubjectSQL locks FOR UPDATE the row of the user whose grant
// (the records of every kind issued for the request $1) it is: all of a
// grant's records have one subject (none for a client's own grant, and
// then nothing is locked). The lookup is the index tokens_request_id
// (kind, request_id), one probe per kind.
var lockGrantSubjectSQL = `SELECT 1 FROM users WHERE id IN (SELECT subject FROM tokens
	WHERE kind IN ('` + strings.Join([]string{store.KindAuthorizeCode, store.KindAccessToken, store.KindRefreshToken,
	store.KindOpenIDSession, store.KindPKCE}, "', '") + `') AND request_id = $1) ORDER BY id FOR UPDATE`

// DeactivateTokensByRequest clears Active on every record of the kind
// issued for requestID (none is not an error).
//
// On PostgreSQL (Dialect.RowLocks) it first locks the grant's user's row
// FOR UPDATE, as ending sessions does (lockUser), in one transaction (the
// caller's, when ctx carries one). An exchange of the same grant in
// flight (a refresh: exchangeInOneStatement) holds that row FOR KEY SHARE
// until it commits, so this waits for it, and the UPDATE, a later
// statement, runs on a snapshot that holds the tokens it issued. Without
// the lock the UPDATE would wait for the row of the refresh token being
// spent, find it inactive, and miss the new refresh token: the grant
// revoked (reuse detection, RFC 7009 revocation) would live on. An
// exchange that comes later waits for this transaction and finds what it
// would spend inactive. On SQLite writes run one at a time: the one
// statement.
func (s *Store) DeactivateTokensByRequest(ctx context.Context, requestID string, kinds ...string) error {
	if len(kinds) == 0 {
		return nil
	}
	args := []any{requestID}
	for _, k := range kinds {
		args = append(args, k)
	}
	deactivate := deactivateByRequestSQL(len(kinds))
	if !s.dialect.RowLocks {
		_, err := s.q(ctx).ExecContext(ctx, deactivate, args...)
		return s.fail("deactivate tokens by request", err)
	}
	return s.fail("deactivate tokens by request", s.inTx(ctx, func(q querier) error {
		if _, err := q.ExecContext(ctx, lockGrantSubjectSQL, requestID); err != nil {
			return err
		}
		_, err := q.ExecContext(ctx, deactivate, args...)
		return err
	}))
}

// ExchangeTokens implements store.Store. Where the dialect has
// data-modifying WITH clauses (PostgreSQL) it is one statement, so one
// round trip; elsewhere (SQLite, in process) one transaction of the same
// statements as DeactivateToken, DeactivateTokensByRequest and CreateToken,
// which no other write transaction interleaves with (so none ending the
// user's sessions: endSessions).
func (s *Store) ExchangeTokens(ctx context.Context, x *store.TokenExchange) error {
	subject, err := exchangeSubject(x)
	if err != nil {
		return s.fail("exchange tokens", err)
	}
	if err := checkRelink(x); err != nil {
		return s.fail("exchange tokens", err)
	}
	if s.dialect.WritableCTE {
		return s.fail("exchange tokens", s.exchangeInOneStatement(ctx, x, subject))
	}
	keep := exchangeKeep(x)
	return s.fail("exchange tokens", s.inTx(ctx, func(q querier) error {
		var a sqlArgs
		account := ""
		if len(x.Create) > 0 && subject != "" {
			account = ` AND EXISTS (` + activeAccountAt(a.add(subject)) + `)`
		}
		spend := spendSQL(&a, x, keep, account)
		n, err := affected(q.ExecContext(ctx, spend, a...))
		if err != nil {
			return err
		}
		if n == 0 {
			return s.spendRefused(ctx, q, x, subject)
		}
		if x.RevokeKind != "" {
			var r sqlArgs
			revoke := revokeSQL(&r, x)
			if _, err := q.ExecContext(ctx, revoke, r...); err != nil {
				return err
			}
		}
		for _, t := range x.Create {
			if _, err := q.ExecContext(ctx, createTokenSQL, tokenArgs(t)...); err != nil {
				return err
			}
		}
		return nil
	}))
}

// sqlArgs are a statement's arguments, collected as its text is written.
type sqlArgs []any

// add appends v and returns its placeholder.
func (a *sqlArgs) add(v any) string {
	*a = append(*a, v)
	return "$" + strconv.Itoa(len(*a))
}

// keepSpent is how an exchange keeps the code or refresh token it spends
// as long as the tokens it creates: its expiry is raised to the latest of
// those, keep (store.TokenExchange). SET clauses read the row as it was.
func keepSpent(keep string) string {
	return `expires_at = CASE WHEN expires_at <> 0 AND expires_at < ` + keep + ` THEN ` + keep + ` ELSE expires_at END`
}

// spendSQL deactivates the code or refresh token x spends while it is
// active, and, while account (a condition: "" for none) holds. It raises
// the token's expiry to keep (keepSpent; 0: not), and records the refresh
// token x creates as a spent refresh token's successor, unless x is a
// retry (x.Relink).
func spendSQL(a *sqlArgs, x *store.TokenExchange, keep int64, account string) string {
	q := `UPDATE tokens SET active = FALSE`
	if keep != 0 {
		q += `, ` + keepSpent(`CAST(`+a.add(keep)+` AS BIGINT)`)
	}
	if succ := successorOf(x); succ != "" && x.SpendKind == store.KindRefreshToken && x.Relink == "" {
		// A successor a retry spends gets none: whoever holds it (the
		// lost answer) may not take it again; only the retried token may.
		q += `, successor = ` + a.add(succ)
	}
	return q + ` WHERE kind = ` + a.add(x.SpendKind) + ` AND signature = ` + a.add(x.SpendSignature) + ` AND active` + account
}

// revokeSQL deactivates the active tokens of x.RevokeKind issued for the
// grant x.RevokeRequest, and, for a retry (x.Relink), records the refresh
// token x creates as the retried token's successor.
func revokeSQL(a *sqlArgs, x *store.TokenExchange) string {
	grant, kind := a.add(x.RevokeRequest), a.add(x.RevokeKind)
	if x.Relink == "" {
		return `UPDATE tokens SET active = FALSE WHERE request_id = ` + grant + ` AND kind = ` + kind + ` AND active`
	}
	retried := `kind = ` + a.add(store.KindRefreshToken) + ` AND signature = ` + a.add(x.Relink)
	return `UPDATE tokens SET active = FALSE, successor = CASE WHEN ` + retried + ` THEN ` + a.add(successorOf(x)) + ` ELSE successor END
		WHERE request_id = ` + grant + ` AND (kind = ` + kind + ` AND active OR ` + retried + `)`
}

// successorOf is the signature of the refresh token x creates ("": none).
func successorOf(x *store.TokenExchange) string {
	for _, t := range x.Create {
		if t.Kind == store.KindRefreshToken {
			return t.Signature
		}
	}
	return ""
}

// checkRelink refuses a retry (x.Relink) that is not a refresh creating a
// refresh token and revoking its grant's access tokens.
func checkRelink(x *store.TokenExchange) error {
	if x.Relink == "" {
		return nil
	}
	if x.SpendKind != store.KindRefreshToken || successorOf(x) == "" || x.RevokeRequest == "" {
		return errors.New("a retried refresh token relinked by an exchange that is no refresh")
	}
	return nil
}

// exchangeKeep is the expiry an exchange keeps what it spends until: the
// latest of the tokens it creates (0: it creates none, or one that never
// expires, and nothing is raised).
func exchangeKeep(x *store.TokenExchange) int64 {
	var keep int64
	for _, t := range x.Create {
		e := unix(t.ExpiresAt)
		if e == 0 {
			return 0
		}
		keep = max(keep, e)
	}
	return keep
}

// exchangeSubject is the one subject of the tokens x creates (none: "").
func exchangeSubject(x *store.TokenExchange) (string, error) {
	subject := ""
	for i, t := range x.Create {
		if i > 0 && t.Subject != subject {
			return "", errors.New("new tokens of several subjects")
		}
		subject = t.Subject
	}
	return subject, nil
}

// exchangeInOneStatement: the spend is a WITH clause whose one row (or
// none) every other part depends on; PostgreSQL runs every data-modifying
// clause to completion on one snapshot, so the new tokens are not among
// those revoked.
//
// When it creates tokens, the statement first locks the row of their
// subject FOR KEY SHARE (account), until it commits: ending the user's
// sessions locks that row FOR UPDATE before it deactivates their tokens,
// so it either waits for this statement and sees the tokens it created, or
// this statement waits for it and finds the code or refresh token it
// spends deactivated, if it was issued in a session that ended
// (endSessions). The spend's WHERE depends on account through an
// uncorrelated EXISTS, an InitPlan that runs before the scan of tokens
// (EXPLAIN shows it as the One-Time Filter above the scan), so the user's
// row is always locked before any token row. account has the row only
// while the user exists and is not disabled (activeAccount): without
// it nothing is spent (ErrAccountInactive). Disabling locks the row FOR
// UPDATE too, and this statement, waiting for it, then finds the row
// disabled. FOR KEY SHARE conflicts only with FOR UPDATE: exchanges do not
// wait for each other, nor for another UPDATE of the user.
func (s *Store) exchangeInOneStatement(ctx context.Context, x *store.TokenExchange, subject string) error {
	q := s.q(ctx)
	var (
		a sqlArgs
		b strings.Builder
	)
	account := ""
	if len(x.Create) > 0 && subject != "" {
		lock := ""
		if s.dialect.RowLocks {
			lock = ` FOR KEY SHARE`
		}
		b.WriteString(`WITH account AS (` + activeAccountAt(a.add(subject)) + lock + `), `)
		account = ` AND EXISTS (SELECT 1 FROM account)`
	} else {
		b.WriteString(`WITH `)
	}
	keep := exchangeKeep(x)
	b.WriteString(`spent AS (` + spendSQL(&a, x, keep, account) + ` RETURNING 1)`)
	if x.RevokeKind != "" {
		// The spent row is active on the statement's snapshot, so the
		// spend alone updates it; the retried one (x.Relink) is inactive,
		// and only this clause updates it.
		b.WriteString(`, revoked AS (` + revokeSQL(&a, x) + ` AND EXISTS (SELECT 1 FROM spent))`)
	}
	if len(x.Create) == 0 {
		b.WriteString(` SELECT count(*) FROM spent`)
		var n int
		if err := q.QueryRowContext(ctx, b.String(), a...).Scan(&n); err != nil {
			return err
		}
		if n == 0 {
			return s.consumedOrNotFound(ctx, q, tokenExistsSQL, x.SpendKind, x.SpendSignature)
		}
		return nil
	}
	b.WriteString(` INSERT INTO tokens (` + tokenColumns + `) `)
	for i, t := range x.Create {
		if i > 0 {
			b.WriteString(` UNION ALL `)
		}
		b.WriteString(typedTokenValues(len(a)) + ` FROM spent`)
		a = append(a, tokenArgs(t)...)
	}
	n, err := affected(q.ExecContext(ctx, b.String(), a...))
	if err != nil {
		return err
	}
	if n == 0 {
		return s.spendRefused(ctx, q, x, subject)
	}
	return nil
}

// activeAccountAt selects the row of the user at the placeholder ph while
// it exists and is not disabled: an exchange issues tokens only then.
func activeAccountAt(ph string) string {
	return `SELECT 1 FROM users WHERE id = ` + ph + ` AND disabled_at = 0`
}

// spendRefused says why the spend of the exchange x, issuing tokens to
// subject ("": to no account), changed nothing: the account is disabled or gone
// (ErrAccountInactive), or the code or refresh token was spent already
// (ErrConsumed) or is absent (ErrNotFound).
func (s *Store) spendRefused(ctx context.Context, q querier, x *store.TokenExchange, subject string) error {
	if len(x.Create) > 0 && subject != "" {
		var one int
		err := q.QueryRowContext(ctx, activeAccountAt("$1"), subject).Scan(&one)
		if errors.Is(err, sql.ErrNoRows) {
			return store.ErrAccountInactive
		}
		if err != nil {
			return err
		}
	}
	return s.consumedOrNotFound(ctx, q, tokenExistsSQL, x.SpendKind, x.SpendSignature)
}

// AddAuditEvent stores the event and sets e.ID; its detail and address are
// made valid UTF-8 (store.ValidText).
func (s *Store) AddAuditEvent(ctx context.Context, e *store.AuditEvent) error {
	err := s.q(ctx).QueryRowContext(ctx, `INSERT INTO audit_events (user_id, type, detail, ip, created_at)
		VALUES ($1, $2, $3, $4, $5) RETURNING id`, e.UserID, e.Type, store.ValidText(e.Detail), store.ValidText(e.IP),
		unix(e.CreatedAt)).
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
// expiry of 0 never expires): the rows whose key is among those a
// subquery selects, because neither dialect has DELETE ... LIMIT in its
// default build, and that still match when deleted. The condition is
// repeated on the DELETE for PostgreSQL, which, when a row the subquery
// chose was updated meanwhile (a failure recorded on a quiet throttle, a
// flow saved again), waits for it and then checks the DELETE's own WHERE
// on the new row, not the subquery's.
var expiredSweeps = func() []struct{ table, sql string } {
	sweeps := []struct{ table, key, cond string }{
		{"tokens", "(kind, signature)", `expires_at <> 0 AND expires_at <= $1`},
		{"flows", "key", `expires_at <> 0 AND expires_at <= $1`},
		{"spent_logins", "key", `expires_at <= $1`},
		{"sessions", "token_hash", `expires_at <> 0 AND expires_at <= $1`},
		{"pending_totp", "user_id", `expires_at <> 0 AND expires_at <= $1`},
		{"password_resets", "token_hash", `expires_at <= $1`},
		// A throttle is forgotten a day after its last failure, once it is
		// not locked (store.ThrottleQuiet): failures and lockouts decay, and
		// keys of addresses and IPs seen once do not pile up.
		{"throttles", "key", `updated_at <= CAST($1 AS BIGINT) - ` + strconv.Itoa(int(store.ThrottleQuiet/time.Second)) +
			` AND locked_until <= $1`},
	}
	out := make([]struct{ table, sql string }, len(sweeps))
	for i, sw := range sweeps {
		out[i].table = sw.table
		out[i].sql = `DELETE FROM ` + sw.table + ` WHERE ` + sw.key + ` IN (SELECT ` + strings.Trim(sw.key, "()") + ` FROM ` + sw.table +
			` WHERE ` + sw.cond + ` LIMIT $2) AND ` + sw.cond
	}
	return out
}()

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
