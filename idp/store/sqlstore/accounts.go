package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/kamera-id/idp/idp/crypt"
	"github.com/kamera-id/idp/idp/store"
)

// Users, clients and signing keys.

// emailKey is the case-insensitive form of an e-mail address, kept in
// users.email_lower under a unique index. It is computed here rather than
// with SQL's lower(), which folds only ASCII in SQLite but follows the
// locale in PostgreSQL.
func emailKey(email string) string { return strings.ToLower(email) }

// userFields are a user's own columns; userCols add MFAEnabled, derived.
// userDest scans either.
const (
	userFields = `u.id, u.email, u.name, u.locale, u.password_hash, u.created_at, u.updated_at,
	u.email_verified_at, u.security_stamp, u.disabled_at`
	userCols = userFields + `, EXISTS (SELECT 1 FROM totp t WHERE t.user_id = u.id)`
)

// userDest are the scan destinations of userCols' columns in u.
func userDest(u *store.User) []any {
	return []any{&u.ID, &u.Email, &u.Name, &u.Locale, &u.PasswordHash,
		timeCol{&u.CreatedAt}, timeCol{&u.UpdatedAt}, timeCol{&u.EmailVerifiedAt}, &u.SecurityStamp, timeCol{&u.DisabledAt},
		&u.MFAEnabled}
}

func scanUser(r scanner) (*store.User, error) {
	var u store.User
	if err := r.Scan(userDest(&u)...); err != nil {
		return nil, err
	}
	return &u, nil
}

// maybeUserCols are userCols for a user on the outer side of a LEFT JOIN,
// scanned by maybeUser.
const maybeUserCols = `u.id, COALESCE(u.email, ''), COALESCE(u.name, ''), COALESCE(u.locale, ''),
	COALESCE(u.password_hash, ''), COALESCE(u.created_at, 0), COALESCE(u.updated_at, 0),
	COALESCE(u.email_verified_at, 0), COALESCE(u.security_stamp, ''), COALESCE(u.disabled_at, 0),
	EXISTS (SELECT 1 FROM totp WHERE totp.user_id = u.id)`

// maybeUser scans maybeUserCols: a user, or none.
type maybeUser struct {
	id sql.NullString
	u  store.User
}

func (m *maybeUser) dest() []any {
	d := userDest(&m.u)
	d[0] = &m.id
	return d
}

// user is the user scanned, nil when there was none.
func (m *maybeUser) user() *store.User {
	if !m.id.Valid {
		return nil
	}
	u := m.u
	u.ID = m.id.String
	return &u
}

// CreateUser stores a new user; ErrDuplicate when the id or the e-mail
// (case-insensitively) is taken. MFAEnabled is ignored: it is derived. An
// empty SecurityStamp is given a new one (set in u).
func (s *Store) CreateUser(ctx context.Context, u *store.User) error {
	if u.ID == "" {
		return errors.New("create user: empty id")
	}
	if u.SecurityStamp == "" {
		u.SecurityStamp = newStamp()
	}
	_, err := s.q(ctx).ExecContext(ctx, `INSERT INTO users
		(id, email, email_lower, name, locale, password_hash, created_at, updated_at, email_verified_at, security_stamp)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)`,
		u.ID, u.Email, emailKey(u.Email), u.Name, u.Locale, u.PasswordHash, unix(u.CreatedAt), unix(u.UpdatedAt),
		unix(u.EmailVerifiedAt), u.SecurityStamp)
	return s.fail("create user", err)
}

// newStamp is a new security stamp (store.User.SecurityStamp).
func newStamp() string { return crypt.RandomToken(16) }

// newCredentials replaces the user's security stamp in the transaction q,
// for a change of the account's credentials; ErrNotFound when there is no
// such user.
func newCredentials(ctx context.Context, q querier, userID string) error {
	n, err := affected(q.ExecContext(ctx, `UPDATE users SET security_stamp = $2 WHERE id = $1`, userID, newStamp()))
	if err == nil && n == 0 {
		err = store.ErrNotFound
	}
	return err
}

// GetUser returns the user; ErrNotFound when there is none.
func (s *Store) GetUser(ctx context.Context, id string) (*store.User, error) {
	u, err := scanUser(s.q(ctx).QueryRowContext(ctx, `SELECT `+userCols+` FROM users u WHERE u.id = $1`, id))
	return u, s.fail("get user", err)
}

// GetUserByEmail returns the user with this e-mail, compared
// case-insensitively; ErrNotFound when there is none.
func (s *Store) GetUserByEmail(ctx context.Context, email string) (*store.User, error) {
	u, err := scanUser(s.q(ctx).QueryRowContext(ctx,
		`SELECT `+userCols+` FROM users u WHERE u.email_lower = $1`, emailKey(email)))
	return u, s.fail("get user by e-mail", err)
}

// UpdatePassword implements store.Store: the hash and the security stamp
// replaced, the user's unused reset links voided and a 2FA setup in
// progress (its secret, made after the old password was entered) dropped,
// in one transaction.
func (s *Store) UpdatePassword(ctx context.Context, userID, passwordHash string, now time.Time) error {
	return s.fail("update password", s.inTx(ctx, func(q querier) error {
		n, err := affected(q.ExecContext(ctx, `UPDATE users SET password_hash = $2, updated_at = $3, security_stamp = $4
			WHERE id = $1`, userID, passwordHash, unix(now), newStamp()))
		if err == nil && n == 0 {
			err = store.ErrNotFound
		}
		if err != nil {
			return err
		}
		if _, err = q.ExecContext(ctx, `UPDATE password_resets SET used_at = $2 WHERE user_id = $1 AND used_at = 0`, userID, unix(now)); err != nil {
			return err
		}
		_, err = q.ExecContext(ctx, `DELETE FROM pending_totp WHERE user_id = $1`, userID)
		return err
	}))
}

// UpgradePasswordHash implements store.Store with one conditional UPDATE:
// a hash that is no longer oldHash is left alone.
func (s *Store) UpgradePasswordHash(ctx context.Context, userID, oldHash, newHash string) error {
	_, err := s.q(ctx).ExecContext(ctx,
		`UPDATE users SET password_hash = $3 WHERE id = $1 AND password_hash = $2`, userID, oldHash, newHash)
	return s.fail("upgrade password hash", err)
}

// MarkEmailVerified implements store.Store: the first verification's time
// is kept.
func (s *Store) MarkEmailVerified(ctx context.Context, userID string, now time.Time) error {
	n, err := affected(s.q(ctx).ExecContext(ctx,
		`UPDATE users SET email_verified_at = $2 WHERE id = $1 AND email_verified_at = 0`, userID, unix(now)))
	if err == nil && n == 0 {
		err = s.q(ctx).QueryRowContext(ctx, `SELECT 1 FROM users WHERE id = $1`, userID).Scan(new(int))
	}
	return s.fail("mark e-mail verified", err)
}

// DeleteUser implements store.Store.
func (s *Store) DeleteUser(ctx context.Context, userID string) error {
	err := s.inTx(ctx, func(q querier) error {
		if err := s.lockUser(ctx, q, userID); err != nil {
			return err
		}
		var email string
		if err := q.QueryRowContext(ctx, `SELECT email FROM users WHERE id = $1`, userID).Scan(&email); err != nil {
			return err // sql.ErrNoRows: ErrNotFound
		}
		// The sessions before the tokens, as endSessions does: a code being
		// issued in a session locks the session's row (not the user's), so
		// one stored before the DELETE of the sessions ends is found by the
		// DELETE of the tokens, and one after it finds no session.
		for _, del := range []string{
			`DELETE FROM sessions WHERE user_id = $1`,
			`DELETE FROM tokens WHERE subject = $1`,
			`DELETE FROM audit_events WHERE user_id = $1`,
			`DELETE FROM users WHERE id = $1`, // and, by their foreign keys, the rows that name it
		} {
			if _, err := q.ExecContext(ctx, del, userID); err != nil {
				return err
			}
		}
		_, err := q.ExecContext(ctx, `DELETE FROM mail_outbox WHERE recipient = $1`, email)
		return err
	})
	return s.fail("delete user", err)
}

// SetUserDisabled implements store.Store.
func (s *Store) SetUserDisabled(ctx context.Context, userID string, at time.Time) (bool, error) {
	changed := false
	err := s.inTx(ctx, func(q querier) error {
		if err := s.lockUser(ctx, q, userID); err != nil {
			return err
		}
		var n int64
		var err error
		if at.IsZero() {
			n, err = affected(q.ExecContext(ctx, `UPDATE users SET disabled_at = 0 WHERE id = $1 AND disabled_at <> 0`, userID))
		} else {
			n, err = affected(q.ExecContext(ctx, `UPDATE users SET disabled_at = $2, security_stamp = $3, updated_at = $2
				WHERE id = $1 AND disabled_at = 0`, userID, unix(at), newStamp()))
		}
		if err != nil {
			return err
		}
		if n == 0 { // already as asked, or no such user
			var one int
			return q.QueryRowContext(ctx, `SELECT 1 FROM users WHERE id = $1`, userID).Scan(&one)
		}
		changed = true
		if at.IsZero() {
			return nil
		}
		// Its reset links are voided, as by a new password: a reset in
		// flight (ConsumePasswordReset locks the user's row first too)
		// finds its link used, and none works again once enabled (a link
		// being made waits for the row, then finds the account disabled:
		// CreatePasswordReset). Then every session ends and every token
		// issued to the user is deactivated (endSessions, for all of them).
		if _, err := q.ExecContext(ctx, `UPDATE password_resets SET used_at = $2 WHERE user_id = $1 AND used_at = 0`,
			userID, unix(at)); err != nil {
			return err
		}
		_, err = s.endSessionsIn(ctx, q, userID, "<>", "")
		return err
	})
	if err != nil {
		return false, s.fail("set user disabled", err)
	}
	return changed, nil
}

// UpdateLocale implements store.Store.
func (s *Store) UpdateLocale(ctx context.Context, userID, locale string, now time.Time) error {
	n, err := affected(s.q(ctx).ExecContext(ctx,
		`UPDATE users SET locale = $2, updated_at = $3 WHERE id = $1`, userID, locale, unix(now)))
	if err == nil && n == 0 {
		err = store.ErrNotFound
	}
	return s.fail("update locale", err)
}

// CreateClient stores a new client; ErrDuplicate when the id is taken.
// Tokens left under its id by a deleted client of that id (written by a
// server whose cache still held it, after DeleteClient's scan) are deleted
// with it, so that they do not come back to life under the new client.
func (s *Store) CreateClient(ctx context.Context, c *store.Client) error {
	err := s.inTx(ctx, func(q querier) error {
		if _, err := q.ExecContext(ctx, `INSERT INTO clients
			(id, name, secret_hash, redirect_uris, post_logout_redirect_uris, public, first_party, created_at)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8)`,
			c.ID, c.Name, blob(c.SecretHash), list(c.RedirectURIs), list(c.PostLogoutRedirectURIs),
			c.Public, c.FirstParty, unix(c.CreatedAt)); err != nil {
			return err
		}
		_, err := q.ExecContext(ctx, `DELETE FROM tokens WHERE client_id = $1`, c.ID)
		return err
	})
	return s.fail("create client", err)
}

// GetClient returns the client; ErrNotFound when there is none.
func (s *Store) GetClient(ctx context.Context, id string) (*store.Client, error) {
	var c store.Client
	err := s.q(ctx).QueryRowContext(ctx, `SELECT `+clientColumns+` FROM clients WHERE id = $1`, id).Scan(clientDest(&c)...)
	if err != nil {
		return nil, s.fail("get client", err)
	}
	return &c, nil
}

const clientColumns = `id, name, secret_hash, redirect_uris, post_logout_redirect_uris, public, first_party, created_at,
	rotated_secret_hash, rotated_until`

func clientDest(c *store.Client) []any {
	return []any{&c.ID, &c.Name, bytesCol{&c.SecretHash}, listCol{&c.RedirectURIs}, listCol{&c.PostLogoutRedirectURIs},
		&c.Public, &c.FirstParty, timeCol{&c.CreatedAt}, bytesCol{&c.RotatedSecretHash}, timeCol{&c.RotatedUntil}}
}

// ListClients implements store.Store.
func (s *Store) ListClients(ctx context.Context) ([]store.Client, error) {
	rows, err := s.q(ctx).QueryContext(ctx, `SELECT `+clientColumns+` FROM clients ORDER BY id`)
	if err != nil {
		return nil, s.fail("list clients", err)
	}
	defer rows.Close()
	var cs []store.Client
	for rows.Next() {
		var c store.Client
		if err := rows.Scan(clientDest(&c)...); err != nil {
			return nil, s.fail("list clients", err)
		}
		cs = append(cs, c)
	}
	return cs, s.fail("list clients", rows.Err())
}

// UpdateClient implements store.Store.
func (s *Store) UpdateClient(ctx context.Context, c *store.Client) error {
	n, err := affected(s.q(ctx).ExecContext(ctx, `UPDATE clients SET name = $2, redirect_uris = $3,
		post_logout_redirect_uris = $4, first_party = $5 WHERE id = $1`,
		c.ID, c.Name, list(c.RedirectURIs), list(c.PostLogoutRedirectURIs), c.FirstParty))
	if err == nil && n == 0 {
		err = store.ErrNotFound
	}
	return s.fail("update client", err)
}

// SetClientSecret implements store.Store. The SET clauses read the row as
// it was: the rotated-out secret is the one this statement replaces.
func (s *Store) SetClientSecret(ctx context.Context, id string, secretHash []byte, keepOldUntil time.Time) error {
	n, err := affected(s.q(ctx).ExecContext(ctx, `UPDATE clients SET secret_hash = $2,
		rotated_secret_hash = CASE WHEN CAST($3 AS BIGINT) > 0 THEN secret_hash ELSE $4 END, rotated_until = $3
		WHERE id = $1 AND NOT public`, id, blob(secretHash), unix(keepOldUntil), []byte{}))
	if err == nil && n == 0 {
		err = store.ErrNotFound
	}
	return s.fail("set client secret", err)
}

// DeleteClient implements store.Store. Its tokens are found by a scan (no
// index serves client_id): deleting a client is rare. A token that a
// server whose cache still holds the client writes after the scan is
// refused, since using a token reads its client, and is deleted if a client
// of that id is created again (CreateClient).
func (s *Store) DeleteClient(ctx context.Context, id string) error {
	err := s.inTx(ctx, func(q querier) error {
		n, err := affected(q.ExecContext(ctx, `DELETE FROM clients WHERE id = $1`, id))
		if err != nil {
			return err
		}
		if n == 0 {
			return store.ErrNotFound
		}
		_, err = q.ExecContext(ctx, `DELETE FROM tokens WHERE client_id = $1`, id)
		return err
	})
	return s.fail("delete client", err)
}

// ListSigningKeys returns every key, newest first: the current key, then the
// retired ones by creation (and retirement) time.
func (s *Store) ListSigningKeys(ctx context.Context) ([]store.SigningKey, error) {
	rows, err := s.q(ctx).QueryContext(ctx, `SELECT id, algorithm, private_enc, public_jwk, created_at, retired_at
		FROM signing_keys ORDER BY (retired_at = 0) DESC, created_at DESC, retired_at DESC, id DESC`)
	if err != nil {
		return nil, s.fail("list signing keys", err)
	}
	defer rows.Close()
	var ks []store.SigningKey
	for rows.Next() {
		var k store.SigningKey
		if err := rows.Scan(&k.ID, &k.Algorithm, bytesCol{&k.PrivateEnc}, bytesCol{&k.PublicJWK},
			timeCol{&k.CreatedAt}, timeCol{&k.RetiredAt}); err != nil {
			return nil, s.fail("list signing keys", err)
		}
		ks = append(ks, k)
	}
	return ks, s.fail("list signing keys", rows.Err())
}

// MasterKeyCheck implements store.Store.
func (s *Store) MasterKeyCheck(ctx context.Context) ([]byte, error) {
	var check []byte
	err := s.q(ctx).QueryRowContext(ctx, `SELECT check_value FROM master_key_check WHERE id = 1`).Scan(bytesCol{&check})
	return check, s.fail("master key check", err)
}

// RecordMasterKeyCheck implements store.Store: one conditional insert, then
// the row as it is.
func (s *Store) RecordMasterKeyCheck(ctx context.Context, check []byte, now time.Time) ([]byte, error) {
	if _, err := s.q(ctx).ExecContext(ctx, `INSERT INTO master_key_check (id, check_value, created_at) VALUES (1, $1, $2)
		ON CONFLICT (id) DO NOTHING`, blob(check), unix(now)); err != nil {
		return nil, s.fail("record master key check", err)
	}
	return s.MasterKeyCheck(ctx)
}

// CurrentSigningKeyID implements store.Store.
func (s *Store) CurrentSigningKeyID(ctx context.Context) (string, error) {
	var id string
	err := s.q(ctx).QueryRowContext(ctx, `SELECT id FROM signing_keys WHERE retired_at = 0
		ORDER BY created_at DESC, id DESC LIMIT 1`).Scan(&id)
	return id, s.fail("current signing key", err)
}

// AddSigningKey stores k as the current key (whatever its RetiredAt) and
// retires every key that was current at now, in one transaction. Where
// write transactions run side by side (PostgreSQL), it first takes the
// dialect's RotationLock: two rotations at once (instances starting
// together on an empty database, or after a change of algorithm) would
// otherwise each retire only the keys committed before it began, and
// leave both new keys current; the second now waits for the first, and
// its UPDATE, a later statement, sees the first's key. The algorithm
// check (sameAlgorithm) is read after that lock for the same reason.
func (s *Store) AddSigningKey(ctx context.Context, k *store.SigningKey, now time.Time, sameAlgorithm bool) error {
	err := s.inTx(ctx, func(q querier) error {
		if s.dialect.RotationLock != "" {
			if _, err := q.ExecContext(ctx, s.dialect.RotationLock); err != nil {
				return err
			}
		}
		if sameAlgorithm {
			var alg string
			err := q.QueryRowContext(ctx, `SELECT algorithm FROM signing_keys WHERE retired_at = 0
				ORDER BY created_at DESC, id DESC LIMIT 1`).Scan(&alg)
			switch {
			case err == nil && alg != k.Algorithm:
				return fmt.Errorf("%w (%s, not %s)", store.ErrOtherAlgorithm, alg, k.Algorithm)
			case err != nil && !errors.Is(err, sql.ErrNoRows):
				return err
			}
		}
		if _, err := q.ExecContext(ctx, `UPDATE signing_keys SET retired_at = $1 WHERE retired_at = 0`, unix(now)); err != nil {
			return err
		}
		_, err := q.ExecContext(ctx, `INSERT INTO signing_keys (id, algorithm, private_enc, public_jwk, created_at, retired_at)
			VALUES ($1, $2, $3, $4, $5, 0)`, k.ID, k.Algorithm, blob(k.PrivateEnc), blob(k.PublicJWK), unix(k.CreatedAt))
		return err
	})
	return s.fail("add signing key", err)
}

// DeleteSigningKeysRetiredBefore removes the keys retired before t (never
// the current one) and says how many went.
func (s *Store) DeleteSigningKeysRetiredBefore(ctx context.Context, t time.Time) (int, error) {
	n, err := affected(s.q(ctx).ExecContext(ctx,
		`DELETE FROM signing_keys WHERE retired_at <> 0 AND retired_at < $1`, unix(t)))
	return int(n), s.fail("delete retired signing keys", err)
}
