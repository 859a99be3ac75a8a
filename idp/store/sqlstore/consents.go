package sqlstore

import (
	"context"

	"github.com/kamera-id/idp/idp/store"
)

// Consents as My Page shows them, and taking one back. (GetConsent and
// PutConsent, what the authorization endpoint needs, are in sessions.go.)

// ListConsents returns the user's consents to clients that ask for one,
// the most recently allowed first, with each client's name. A first-party
// client never asks, so it has none to list.
func (s *Store) ListConsents(ctx context.Context, userID string) ([]store.Consent, error) {
	rows, err := s.q(ctx).QueryContext(ctx, `SELECT c.client_id, cl.name, c.scopes, c.updated_at
		FROM consents c JOIN clients cl ON cl.id = c.client_id
		WHERE c.user_id = $1 AND cl.first_party = FALSE
		ORDER BY c.updated_at DESC, cl.name, c.client_id`, userID)
	if err != nil {
		return nil, s.fail("list consents", err)
	}
	defer rows.Close()
	var cs []store.Consent
	for rows.Next() {
		var c store.Consent
		if err := rows.Scan(&c.ClientID, &c.ClientName, listCol{&c.Scopes}, timeCol{&c.UpdatedAt}); err != nil {
			return nil, s.fail("list consents", err)
		}
		cs = append(cs, c)
	}
	return cs, s.fail("list consents", rows.Err())
}

// revokeClientTokensSQL deactivates every token, of every kind, that the
// client holds for the user. The lookup by subject is the index
// tokens_subject (subject, session_id); the client is checked on the
// user's rows.
const revokeClientTokensSQL = `UPDATE tokens SET active = FALSE
	WHERE subject = $1 AND client_id = $2 AND active`

// RevokeConsent implements store.Store: the consent deleted, then the
// client's tokens for the user deactivated, in one transaction (the
// caller's, when ctx carries one) that first locks the user's row, as
// ending sessions does (lockUser): a token request of the client in flight
// is waited for and what it issued deactivated too, and one that comes
// later finds its code or refresh token inactive.
func (s *Store) RevokeConsent(ctx context.Context, userID, clientID string) error {
	err := s.inTx(ctx, func(q querier) error {
		if err := s.lockUser(ctx, q, userID); err != nil {
			return err
		}
		n, err := affected(q.ExecContext(ctx, `DELETE FROM consents WHERE user_id = $1 AND client_id = $2`,
			userID, clientID))
		if err != nil {
			return err
		}
		if n == 0 {
			return store.ErrNotFound
		}
		_, err = q.ExecContext(ctx, revokeClientTokensSQL, userID, clientID)
		return err
	})
	return s.fail("revoke consent", err)
}
