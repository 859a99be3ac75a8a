package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/kamera-id/idp/idp/store"
)

// SSO sessions, flows and consents.
//
// An expiry of 0 (the zero time) never expires; anything else has expired
// once it is <= the caller's now.

const sessionCols = `token_hash, id, user_id, auth_time, amr, remember, created_at, last_seen, expires_at, user_agent, ip`

func scanSession(r scanner) (*store.Session, error) {
	var x store.Session
	err := r.Scan(bytesCol{&x.TokenHash}, &x.ID, &x.UserID, timeCol{&x.AuthTime}, listCol{&x.AMR}, &x.Remember,
		timeCol{&x.CreatedAt}, timeCol{&x.LastSeen}, timeCol{&x.ExpiresAt}, &x.UserAgent, &x.IP)
	if err != nil {
		return nil, err
	}
	return &x, nil
}

const (
	createSessionSQL = `INSERT INTO sessions (` + sessionCols + `)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)`
	deleteFlowSQL = `DELETE FROM flows WHERE key = $1`
)

// sessionArgs are x's values in the order of sessionCols. The user agent
// and the address come from the request: made valid UTF-8 (store.ValidText).
func sessionArgs(x *store.Session) []any {
	return []any{blob(x.TokenHash), x.ID, x.UserID, unix(x.AuthTime), list(x.AMR), x.Remember,
		unix(x.CreatedAt), unix(x.LastSeen), unix(x.ExpiresAt), store.ValidText(x.UserAgent), store.ValidText(x.IP)}
}

// CreateSession stores a new session; ErrDuplicate when its token hash or
// id is taken, ErrNotFound when its user does not exist.
func (s *Store) CreateSession(ctx context.Context, x *store.Session) error {
	_, err := s.q(ctx).ExecContext(ctx, createSessionSQL, sessionArgs(x)...)
	return s.fail("create session", err)
}

// StartSession implements store.Store. The login is recorded as spent
// only where the user's row still has the security stamp the login read.
// Where the dialect has data-modifying WITH clauses (PostgreSQL) it is one
// statement: the TOTP step recorded (when there is one), the user's row
// read FOR SHARE only if it was, the login's key inserted only if that row
// matched (a concurrent insert of the same key waits for the first to
// commit, then inserts nothing), the session's row inserted only if the
// login's was. FOR SHARE, not the FOR KEY SHARE of a foreign key's check:
// a key share lock is granted beside an update that changed no key, and
// once a FOR UPDATE holder commits, on the row without checking it again,
// so the statement would go on with the old stamp (and a session would
// outlive a change that had already ended the user's sessions); a share
// lock waits for a change in flight, and the row's new version is then
// checked again (READ COMMITTED). Before the change reaches the row, the
// change waits for the login instead, and then ends its session. The
// authenticator's row is locked before the user's, as DeleteMFA locks
// them. Elsewhere (SQLite, in process, writes one at a time) one
// transaction of the same statements one after the other.
func (s *Store) StartSession(ctx context.Context, end store.LoginEnd, x *store.Session) error {
	var (
		stepped, started int64
		err              error
	)
	if s.dialect.WritableCTE {
		args := append(append([]any{blob(end.Key)}, sessionArgs(x)...), end.Stamp, unix(end.SpentUntil), end.TOTPStep)
		if end.Code != nil {
			args = append(args, tokenArgs(end.Code)...)
		}
		err = s.q(ctx).QueryRowContext(ctx, startSessionQueries[startSessionVariant(end)], args...).Scan(&stepped, &started)
	} else {
		err = s.inTx(ctx, func(q querier) error {
			var err error
			stepped, started, err = startSessionInTx(ctx, q, end, x)
			return err
		})
	}
	switch {
	case err != nil:
	case end.TOTPStep > 0 && stepped == 0:
		err = s.consumedOrNotFound(ctx, s.q(ctx), `SELECT 1 FROM totp WHERE user_id = $1`, x.UserID)
	case started == 0:
		err = store.ErrNotFound
	}
	return s.fail("start session", err)
}

// startSessionSQL is StartSession's one statement (dialect.WritableCTE):
// the step recorded, the account read (and locked), the login spent and the
// session created, each only after the one before. The first %s is where
// a code issued under a consent adds the consent's row (consentLocked),
// the second the name of the row the login is spent from (account, or
// consent), the third the code created with the session
// (codeWithSession).
const startSessionSQL = `WITH step AS (
		UPDATE totp SET last_step = $15 WHERE $15::bigint > 0 AND user_id = $4 AND last_step < $15 RETURNING 1),
	account AS (SELECT 1 FROM users WHERE id = $4 AND security_stamp = $13
		AND ($15::bigint = 0 OR EXISTS (SELECT 1 FROM step)) FOR SHARE),%s
	spent AS (INSERT INTO spent_logins (key, session_id, expires_at) SELECT $1, $3, $14 FROM %s
		ON CONFLICT (key) DO NOTHING RETURNING 1),
	started AS (INSERT INTO sessions (` + sessionCols + `) SELECT $2::bytea, $3::text, $4::text, $5::bigint,
		$6::text, $7::boolean, $8::bigint, $9::bigint, $10::bigint, $11::text, $12::text FROM spent RETURNING 1)%s
	SELECT (SELECT count(*) FROM step), (SELECT count(*) FROM started)`

// startSessionQueries are startSessionSQL without a code, with one, and
// with one issued under a consent.
var startSessionQueries = [3]string{
	fmt.Sprintf(startSessionSQL, "", "account", ""),
	fmt.Sprintf(startSessionSQL, "", "account", codeWithSession),
	fmt.Sprintf(startSessionSQL, consentLocked, "consent", codeWithSession),
}

// consentLocked is the consent ($19, the code's client) a code is issued
// under, locked FOR KEY SHARE as CreateToken's (createCodeQueries): its
// DELETE (RevokeConsent) waits for this statement, or this statement for
// the DELETE and then finds it gone. It is locked after the user's row
// (account, through the uncorrelated EXISTS, an InitPlan that runs before
// the scan of consents): RevokeConsent and DeleteUser lock the user's row
// first too, so the two cannot deadlock.
const consentLocked = `
	consent AS (SELECT 1 FROM consents WHERE user_id = $4 AND client_id = $19
		AND EXISTS (SELECT 1 FROM account) FOR KEY SHARE),`

// codeWithSession creates StartSession's code (tokenArgs from $16) with
// its session.
var codeWithSession = `,
	code AS (INSERT INTO tokens (` + tokenColumns + `) ` + typedTokenValues(15) + ` FROM started RETURNING 1)`

// startSessionVariant is the index of end's statement in
// startSessionQueries.
func startSessionVariant(end store.LoginEnd) int {
	switch {
	case end.Code == nil:
		return 0
	case !end.Code.Consented:
		return 1
	}
	return 2
}

// startSessionInTx is StartSession's statements one after the other, in
// a transaction: stepped and started count the step recorded and the
// session created. A step recorded stays so when the session is refused
// (the transaction commits), as with StartSession's one statement.
func startSessionInTx(ctx context.Context, q querier, end store.LoginEnd, x *store.Session) (stepped, started int64, err error) {
	if end.TOTPStep > 0 {
		stepped, err = affected(q.ExecContext(ctx, `UPDATE totp SET last_step = $2 WHERE user_id = $1 AND last_step < $2`,
			x.UserID, end.TOTPStep))
		if err != nil || stepped == 0 {
			return stepped, 0, err
		}
	}
	spend, args := spendLoginSQL, []any{blob(end.Key), x.ID, unix(end.SpentUntil), x.UserID, end.Stamp}
	if end.Code != nil && end.Code.Consented {
		spend, args = spendConsentedLoginSQL, append(args, end.Code.ClientID)
	}
	started, err = affected(q.ExecContext(ctx, spend, args...))
	if err != nil || started == 0 {
		return stepped, started, err
	}
	if _, err = q.ExecContext(ctx, createSessionSQL, sessionArgs(x)...); err != nil || end.Code == nil {
		return stepped, started, err
	}
	_, err = q.ExecContext(ctx, createTokenSQL, tokenArgs(end.Code)...)
	return stepped, started, err
}

// spendLoginSQL records a login as spent while its account is as it read
// it; spendConsentedLoginSQL also while the account's consent to the
// client ($6) exists.
const (
	spendLoginSQL          = spendLogin + spendLoginOnce
	spendConsentedLoginSQL = spendLogin + ` AND EXISTS (SELECT 1 FROM consents WHERE user_id = $4 AND client_id = $6)` + spendLoginOnce
	spendLogin             = `INSERT INTO spent_logins (key, session_id, expires_at)
		SELECT $1, $2, $3 WHERE EXISTS (SELECT 1 FROM users WHERE id = $4 AND security_stamp = $5)`
	spendLoginOnce = ` ON CONFLICT (key) DO NOTHING`
)

// LoginSession implements store.Store.
func (s *Store) LoginSession(ctx context.Context, loginKey []byte) (string, error) {
	var id string
	err := s.q(ctx).QueryRowContext(ctx, `SELECT session_id FROM spent_logins WHERE key = $1`, blob(loginKey)).Scan(&id)
	if errors.Is(err, sql.ErrNoRows) {
		return "", nil
	}
	return id, s.fail("login session", err)
}

// GetSession returns the unexpired session with this token hash.
func (s *Store) GetSession(ctx context.Context, tokenHash []byte, now time.Time) (*store.Session, error) {
	x, err := scanSession(s.q(ctx).QueryRowContext(ctx, `SELECT `+sessionCols+` FROM sessions
		WHERE token_hash = $1 AND (expires_at = 0 OR expires_at > $2)`, blob(tokenHash), unix(now)))
	return x, s.fail("get session", err)
}

// TouchSession records the session's last use and its expiry from then;
// ErrNotFound when it is gone.
func (s *Store) TouchSession(ctx context.Context, tokenHash []byte, lastSeen, expiresAt time.Time) error {
	n, err := affected(s.q(ctx).ExecContext(ctx,
		`UPDATE sessions SET last_seen = $2, expires_at = $3 WHERE token_hash = $1`, blob(tokenHash), unix(lastSeen), unix(expiresAt)))
	if err == nil && n == 0 {
		err = store.ErrNotFound
	}
	return s.fail("touch session", err)
}

// DeleteSession ends the session; ErrNotFound when it was already gone.
func (s *Store) DeleteSession(ctx context.Context, tokenHash []byte) error {
	n, err := affected(s.q(ctx).ExecContext(ctx, `DELETE FROM sessions WHERE token_hash = $1`, blob(tokenHash)))
	if err == nil && n == 0 {
		err = store.ErrNotFound
	}
	return s.fail("delete session", err)
}

// RotateSession implements store.Store.
func (s *Store) RotateSession(ctx context.Context, oldHash, newHash []byte, userID string) (*store.Session, error) {
	x, err := scanSession(s.q(ctx).QueryRowContext(ctx, `UPDATE sessions SET token_hash = $2
		WHERE token_hash = $1 AND user_id = $3 RETURNING `+sessionCols, blob(oldHash), blob(newHash), userID))
	return x, s.fail("rotate session", err)
}

// EndSession implements store.Store: the session read by its cookie's
// hash, then ended by its id (endSessions, holding the user's row), with
// its access tokens and codes. By the id, which stays: a change of
// credentials holding the user's row may have given the session a new
// cookie meanwhile (RotateSession), and the logout is of the session, not
// of its cookie.
func (s *Store) EndSession(ctx context.Context, tokenHash []byte) error {
	var userID, id string
	err := s.q(ctx).QueryRowContext(ctx, `SELECT user_id, id FROM sessions WHERE token_hash = $1`, blob(tokenHash)).Scan(&userID, &id)
	if err == nil {
		_, err = s.endSessions(ctx, userID, "=", id, store.KindAccessToken, store.KindAuthorizeCode)
	}
	return s.fail("end session", err)
}

// DeleteUserSessions implements store.Store (session ids are never empty,
// so an empty exceptID spares none).
func (s *Store) DeleteUserSessions(ctx context.Context, userID, exceptID string) (int, error) {
	n, err := s.endSessions(ctx, userID, "<>", exceptID)
	return int(n), s.fail("delete user sessions", err)
}

// DeleteUserSession implements store.Store.
func (s *Store) DeleteUserSession(ctx context.Context, userID, id string) error {
	_, err := s.endSessions(ctx, userID, "=", id)
	return s.fail("delete user session", err)
}

// endSessions ends the user's sessions whose id is id (op "=": that one,
// ErrNotFound when the user has no such session) or is not id (op "<>":
// all but that one), and deactivates the tokens issued in them (only those
// of kinds, when given), in one transaction; it returns how many sessions
// ended.
//
// On PostgreSQL it first locks the user's row FOR UPDATE. Every exchange
// of a code or refresh token that creates tokens of the user holds FOR KEY
// SHARE on that row (from before it touches a token until it commits:
// exchangeInOneStatement), so this waits for those in progress, and those
// that come later wait for this transaction. The UPDATE of the tokens then
// runs on a snapshot taken once the lock is granted (READ COMMITTED,
// PostgreSQL's default: a snapshot per statement), which holds every token
// such an exchange created; an exchange that waited finds the code or
// refresh token it spends deactivated (when it was issued in a session
// ended here) and fails. Both lock the user's row before any token row, so
// they cannot deadlock. A code issued in a session locks the session's row
// FOR KEY SHARE, which the DELETE here waits for or makes it find gone
// (CreateToken). FOR UPDATE also holds off anything else that locks the
// user's row (an UPDATE of it, the foreign key check of a session being
// stored) for this short transaction; FOR KEY SHARE conflicts with FOR
// UPDATE alone, so exchanges wait neither for each other nor for an
// UPDATE of the user.
//
// On SQLite the transaction alone does it: write transactions run one at
// a time (Dialect.RowLocks).
func (s *Store) endSessions(ctx context.Context, userID, op, id string, kinds ...string) (int64, error) {
	var n int64
	err := s.inTx(ctx, func(q querier) error {
		if err := s.lockUser(ctx, q, userID); err != nil {
			return err
		}
		var err error
		n, err = s.endSessionsIn(ctx, q, userID, op, id, kinds...)
		return err
	})
	return n, err
}

// endSessionsIn is endSessions in the transaction q, which holds the
// user's row (lockUser; SetUserDisabled's).
func (s *Store) endSessionsIn(ctx context.Context, q querier, userID, op, id string, kinds ...string) (int64, error) {
	n, err := affected(q.ExecContext(ctx, `DELETE FROM sessions WHERE user_id = $1 AND id `+op+` $2`, userID, id))
	if err == nil && n == 0 && op == "=" {
		err = store.ErrNotFound
	}
	if err != nil {
		return 0, err
	}
	// Tokens issued in no session (SessionID "") go with all but one
	// session, and so with all of them too.
	issuedIn := `session_id = $2`
	if op == "<>" {
		issuedIn = `(session_id <> $2 OR $2 = '')`
	}
	args := []any{userID, id}
	ofKinds := ""
	if len(kinds) > 0 {
		ofKinds = ` AND kind IN (` + placeholders(3, len(kinds)) + `)`
		for _, k := range kinds {
			args = append(args, k)
		}
	}
	_, err = q.ExecContext(ctx, `UPDATE tokens SET active = FALSE
		WHERE subject = $1 AND `+issuedIn+ofKinds+` AND active`, args...)
	return n, err
}

// lockUser takes the user's row FOR UPDATE in the transaction q, before a
// change that deactivates the user's tokens (endSessions, RevokeConsent) or
// replaces their backup codes (replaceBackupCodes, one after the other):
// token exchanges hold the row FOR KEY SHARE until they commit, so the
// change waits for those in flight, and its statements then see what they
// issued, while those that come later wait for the change and find what
// they would spend inactive. Nothing where writes run one at a time
// (Dialect.RowLocks). A transaction that locks an authenticator's row
// (totp) as well locks it before the user's: StartSession and DeleteMFA
// do, and a change holding the user's row must not then wait for totp.
func (s *Store) lockUser(ctx context.Context, q querier, userID string) error {
	if !s.dialect.RowLocks {
		return nil
	}
	_, err := q.ExecContext(ctx, `SELECT 1 FROM users WHERE id = $1 FOR UPDATE`, userID)
	return err
}

// ListUserSessions returns the user's unexpired sessions, the most recently
// seen first.
func (s *Store) ListUserSessions(ctx context.Context, userID string, now time.Time) ([]store.Session, error) {
	rows, err := s.q(ctx).QueryContext(ctx, `SELECT `+sessionCols+` FROM sessions
		WHERE user_id = $1 AND (expires_at = 0 OR expires_at > $2)
		ORDER BY last_seen DESC, created_at DESC, id`, userID, unix(now))
	if err != nil {
		return nil, s.fail("list user sessions", err)
	}
	defer rows.Close()
	var xs []store.Session
	for rows.Next() {
		x, err := scanSession(rows)
		if err != nil {
			return nil, s.fail("list user sessions", err)
		}
		xs = append(xs, *x)
	}
	return xs, s.fail("list user sessions", rows.Err())
}

// PutFlow stores the flow, replacing one with the same key.
func (s *Store) PutFlow(ctx context.Context, f *store.Flow) error {
	_, err := s.q(ctx).ExecContext(ctx, `INSERT INTO flows (key, data, created_at, expires_at)
		VALUES ($1, $2, $3, $4)
		ON CONFLICT (key) DO UPDATE SET data = excluded.data, created_at = excluded.created_at,
			expires_at = excluded.expires_at`,
		blob(f.Key), blob(f.Data), unix(f.CreatedAt), unix(f.ExpiresAt))
	return s.fail("put flow", err)
}

// GetFlow returns the unexpired flow with this key.
func (s *Store) GetFlow(ctx context.Context, key []byte, now time.Time) (*store.Flow, error) {
	var f store.Flow
	err := s.q(ctx).QueryRowContext(ctx, `SELECT key, data, created_at, expires_at FROM flows
		WHERE key = $1 AND (expires_at = 0 OR expires_at > $2)`, blob(key), unix(now)).
		Scan(bytesCol{&f.Key}, bytesCol{&f.Data}, timeCol{&f.CreatedAt}, timeCol{&f.ExpiresAt})
	if err != nil {
		return nil, s.fail("get flow", err)
	}
	return &f, nil
}

// DeleteFlow removes the flow in one statement: of concurrent callers
// exactly one deletes it, the others get ErrNotFound.
func (s *Store) DeleteFlow(ctx context.Context, key []byte) error {
	n, err := affected(s.q(ctx).ExecContext(ctx, deleteFlowSQL, blob(key)))
	if err == nil && n == 0 {
		err = store.ErrNotFound
	}
	return s.fail("delete flow", err)
}

// GetConsent returns the scopes the user granted the client; none: nil.
func (s *Store) GetConsent(ctx context.Context, userID, clientID string) ([]string, error) {
	var scopes []string
	err := s.q(ctx).QueryRowContext(ctx, `SELECT scopes FROM consents WHERE user_id = $1 AND client_id = $2`,
		userID, clientID).Scan(listCol{&scopes})
	if errors.Is(err, sql.ErrNoRows) {
		return nil, nil
	}
	return scopes, s.fail("get consent", err)
}

// AddConsent implements store.Store: in one transaction, which on
// PostgreSQL first holds the user's row (as RevokeConsent does, lockUser),
// the scopes granted are read and the union written.
func (s *Store) AddConsent(ctx context.Context, userID, clientID string, scopes []string, now time.Time) ([]string, error) {
	var granted []string
	err := s.inTx(ctx, func(q querier) error {
		if err := s.lockUser(ctx, q, userID); err != nil {
			return err
		}
		err := q.QueryRowContext(ctx, `SELECT scopes FROM consents WHERE user_id = $1 AND client_id = $2`,
			userID, clientID).Scan(listCol{&granted})
		if err != nil && !errors.Is(err, sql.ErrNoRows) {
			return err
		}
		for _, sc := range scopes {
			if !slices.Contains(granted, sc) {
				granted = append(granted, sc)
			}
		}
		_, err = q.ExecContext(ctx, putConsentSQL, userID, clientID, list(granted), unix(now))
		return err
	})
	if err != nil {
		return nil, s.fail("add consent", err)
	}
	return granted, nil
}

const putConsentSQL = `INSERT INTO consents (user_id, client_id, scopes, updated_at)
	VALUES ($1, $2, $3, $4)
	ON CONFLICT (user_id, client_id) DO UPDATE SET scopes = excluded.scopes, updated_at = excluded.updated_at`

// PutConsent records the scopes the user granted the client, replacing the
// earlier grant; ErrNotFound when the user or the client does not exist.
func (s *Store) PutConsent(ctx context.Context, userID, clientID string, scopes []string, now time.Time) error {
	_, err := s.q(ctx).ExecContext(ctx, putConsentSQL, userID, clientID, list(scopes), unix(now))
	return s.fail("put consent", err)
}
