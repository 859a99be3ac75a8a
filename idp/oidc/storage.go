package oidc

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"sync"
	"time"

	"github.com/ory/fosite"

	"github.com/kamera-id/idp/idp/store"
)

// SupportedScopes are the scopes every client may ask for.
var SupportedScopes = []string{"openid", "profile", "email", "address", "phone", "offline_access"}

// storedFormKeys are the only request parameters kept with a code or token:
// what fosite reads back at the token endpoint (redirect URI check, PKCE,
// nonce, prompt/max_age checks) and nothing secret.
var storedFormKeys = []string{
	"redirect_uri", "code_challenge", "code_challenge_method", "nonce",
	"max_age", "prompt", "acr_values", "grant_type", "response_type", "scope",
}

// client adapts a store.Client to fosite.Client.
type client struct{ *store.Client }

func (c client) GetID() string             { return c.ID }
func (c client) GetHashedSecret() []byte   { return c.SecretHash }
func (c client) GetRedirectURIs() []string { return c.RedirectURIs }
func (c client) GetGrantTypes() fosite.Arguments {
	return fosite.Arguments{"authorization_code", "refresh_token"}
}
func (c client) GetResponseTypes() fosite.Arguments { return fosite.Arguments{"code"} }
func (c client) GetScopes() fosite.Arguments        { return SupportedScopes }
func (c client) IsPublic() bool                     { return c.Public }
func (c client) GetAudience() fosite.Arguments      { return nil }

// Storage implements fosite's storage interfaces over store.Store. Requests
// are stored under token signatures (never the tokens), with a sanitised
// form, and clients are cached for a short time.
type Storage struct {
	Store    store.Store
	ClientTT time.Duration // how long a client stays cached

	mu      sync.Mutex
	clients map[string]cachedClient
}

type cachedClient struct {
	c       *store.Client
	fetched time.Time
}

// NewStorage returns the fosite storage adapter over s.
func NewStorage(s store.Store) *Storage {
	return &Storage{Store: s, ClientTT: 30 * time.Second, clients: map[string]cachedClient{}}
}

// Client returns the registered client, from the cache when fresh.
func (s *Storage) Client(ctx context.Context, id string) (*store.Client, error) {
	s.mu.Lock()
	cc, ok := s.clients[id]
	s.mu.Unlock()
	if ok && time.Since(cc.fetched) < s.ClientTT {
		return cc.c, nil
	}
	c, err := s.Store.GetClient(ctx, id)
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	s.clients[id] = cachedClient{c: c, fetched: time.Now()}
	s.mu.Unlock()
	return c, nil
}

// GetClient implements fosite.ClientManager.
func (s *Storage) GetClient(ctx context.Context, id string) (fosite.Client, error) {
	c, err := s.Client(ctx, id)
	if errors.Is(err, store.ErrNotFound) {
		return nil, fosite.ErrNotFound
	}
	if err != nil {
		return nil, err
	}
	return client{c}, nil
}

// ClientAssertionJWTValid implements fosite.ClientManager; JWT client
// assertions are not supported, so no jti is ever known.
func (s *Storage) ClientAssertionJWTValid(context.Context, string) error { return nil }

// SetClientAssertionJWT implements fosite.ClientManager (unused).
func (s *Storage) SetClientAssertionJWT(context.Context, string, time.Time) error { return nil }

// storedRequest is the JSON form of a fosite request in the store.
type storedRequest struct {
	ID              string          `json:"id"`
	RequestedAt     time.Time       `json:"requested_at"`
	ClientID        string          `json:"client_id"`
	Scopes          []string        `json:"scopes"`
	GrantedScopes   []string        `json:"granted_scopes"`
	Audience        []string        `json:"audience,omitempty"`
	GrantedAudience []string        `json:"granted_audience,omitempty"`
	Form            url.Values      `json:"form"`
	Session         json.RawMessage `json:"session"`
}

func (s *Storage) create(ctx context.Context, kind, signature string, r fosite.Requester) error {
	form := url.Values{}
	for _, k := range storedFormKeys {
		if v, ok := r.GetRequestForm()[k]; ok {
			form[k] = v
		}
	}
	sess, err := json.Marshal(r.GetSession())
	if err != nil {
		return fmt.Errorf("encode session: %w", err)
	}
	data, err := json.Marshal(storedRequest{
		ID: r.GetID(), RequestedAt: r.GetRequestedAt(), ClientID: r.GetClient().GetID(),
		Scopes: r.GetRequestedScopes(), GrantedScopes: r.GetGrantedScopes(),
		Audience: r.GetRequestedAudience(), GrantedAudience: r.GetGrantedAudience(),
		Form: form, Session: sess,
	})
	if err != nil {
		return fmt.Errorf("encode request: %w", err)
	}
	rec := &store.TokenRecord{
		Kind: kind, Signature: signature, RequestID: r.GetID(), ClientID: r.GetClient().GetID(),
		Data: data, Active: true, CreatedAt: time.Now().Truncate(time.Second),
		ExpiresAt: expiry(kind, r.GetSession()),
	}
	if ss, ok := r.GetSession().(*Session); ok {
		rec.Subject = ss.GetSubject()
		rec.SessionID = ss.SID
	}
	return s.Store.CreateToken(ctx, rec)
}

// expiry is when the record may be deleted: the token's own expiry, or the
// code's for the records that live only as long as the code.
func expiry(kind string, sess fosite.Session) time.Time {
	if sess == nil {
		return time.Time{}
	}
	switch kind {
	case store.KindAccessToken:
		return sess.GetExpiresAt(fosite.AccessToken)
	case store.KindRefreshToken:
		return sess.GetExpiresAt(fosite.RefreshToken)
	default:
		return sess.GetExpiresAt(fosite.AuthorizeCode)
	}
}

// get loads a request; inactive records come back with the request and
// errInactive so fosite can detect reuse.
func (s *Storage) get(ctx context.Context, kind, signature string, sess fosite.Session, errInactive error) (fosite.Requester, error) {
	rec, err := s.Store.GetToken(ctx, kind, signature)
	if errors.Is(err, store.ErrNotFound) {
		return nil, fosite.ErrNotFound
	}
	if err != nil {
		return nil, err
	}
	var sr storedRequest
	if err := json.Unmarshal(rec.Data, &sr); err != nil {
		return nil, fmt.Errorf("decode request: %w", err)
	}
	if sess == nil {
		sess = NewSession()
	}
	if err := json.Unmarshal(sr.Session, sess); err != nil {
		return nil, fmt.Errorf("decode session: %w", err)
	}
	c, err := s.GetClient(ctx, sr.ClientID)
	if err != nil {
		return nil, err
	}
	req := &fosite.Request{
		ID: sr.ID, RequestedAt: sr.RequestedAt, Client: c,
		RequestedScope: sr.Scopes, GrantedScope: sr.GrantedScopes,
		RequestedAudience: sr.Audience, GrantedAudience: sr.GrantedAudience,
		Form: sr.Form, Session: sess,
	}
	if !rec.Active {
		return req, errInactive
	}
	return req, nil
}

func (s *Storage) delete(ctx context.Context, kind, signature string) error {
	err := s.Store.DeleteToken(ctx, kind, signature)
	if errors.Is(err, store.ErrNotFound) {
		return nil
	}
	return err
}

// CreateAuthorizeCodeSession implements oauth2.AuthorizeCodeStorage.
func (s *Storage) CreateAuthorizeCodeSession(ctx context.Context, signature string, r fosite.Requester) error {
	return s.create(ctx, store.KindAuthorizeCode, signature, r)
}

// GetAuthorizeCodeSession implements oauth2.AuthorizeCodeStorage. A used
// code returns its request with fosite.ErrInvalidatedAuthorizeCode, so fosite
// revokes what the code issued.
func (s *Storage) GetAuthorizeCodeSession(ctx context.Context, signature string, sess fosite.Session) (fosite.Requester, error) {
	return s.get(ctx, store.KindAuthorizeCode, signature, sess, fosite.ErrInvalidatedAuthorizeCode)
}

// InvalidateAuthorizeCodeSession implements oauth2.AuthorizeCodeStorage:
// the one atomic step that decides which of two concurrent exchanges wins.
func (s *Storage) InvalidateAuthorizeCodeSession(ctx context.Context, signature string) error {
	return s.Store.DeactivateToken(ctx, store.KindAuthorizeCode, signature)
}

// CreateAccessTokenSession implements oauth2.AccessTokenStorage.
func (s *Storage) CreateAccessTokenSession(ctx context.Context, signature string, r fosite.Requester) error {
	return s.create(ctx, store.KindAccessToken, signature, r)
}

// GetAccessTokenSession implements oauth2.AccessTokenStorage.
func (s *Storage) GetAccessTokenSession(ctx context.Context, signature string, sess fosite.Session) (fosite.Requester, error) {
	return s.get(ctx, store.KindAccessToken, signature, sess, fosite.ErrInactiveToken)
}

// DeleteAccessTokenSession implements oauth2.AccessTokenStorage.
func (s *Storage) DeleteAccessTokenSession(ctx context.Context, signature string) error {
	return s.delete(ctx, store.KindAccessToken, signature)
}

// CreateRefreshTokenSession implements oauth2.RefreshTokenStorage.
func (s *Storage) CreateRefreshTokenSession(ctx context.Context, signature, _ string, r fosite.Requester) error {
	return s.create(ctx, store.KindRefreshToken, signature, r)
}

// GetRefreshTokenSession implements oauth2.RefreshTokenStorage. A
// rotated-out token returns fosite.ErrInactiveToken with its request, so
// fosite treats its reuse as theft and revokes the whole grant.
func (s *Storage) GetRefreshTokenSession(ctx context.Context, signature string, sess fosite.Session) (fosite.Requester, error) {
	return s.get(ctx, store.KindRefreshToken, signature, sess, fosite.ErrInactiveToken)
}

// DeleteRefreshTokenSession implements oauth2.RefreshTokenStorage.
func (s *Storage) DeleteRefreshTokenSession(ctx context.Context, signature string) error {
	return s.delete(ctx, store.KindRefreshToken, signature)
}

// RotateRefreshToken implements oauth2.RefreshTokenStorage: the used refresh
// token stops working (atomically: of two concurrent refreshes one wins) and
// so do the access tokens issued with it.
func (s *Storage) RotateRefreshToken(ctx context.Context, requestID, signature string) error {
	err := s.Store.DeactivateToken(ctx, store.KindRefreshToken, signature)
	if errors.Is(err, store.ErrConsumed) {
		return fosite.ErrInactiveToken
	}
	if errors.Is(err, store.ErrNotFound) {
		return fosite.ErrNotFound
	}
	if err != nil {
		return err
	}
	return s.Store.DeactivateTokensByRequest(ctx, store.KindAccessToken, requestID)
}

// RevokeRefreshToken implements oauth2.TokenRevocationStorage.
func (s *Storage) RevokeRefreshToken(ctx context.Context, requestID string) error {
	return s.Store.DeactivateTokensByRequest(ctx, store.KindRefreshToken, requestID)
}

// RevokeAccessToken implements oauth2.TokenRevocationStorage.
func (s *Storage) RevokeAccessToken(ctx context.Context, requestID string) error {
	return s.Store.DeactivateTokensByRequest(ctx, store.KindAccessToken, requestID)
}

// codeKey turns the authorization code fosite passes to the OpenID Connect
// storage (the code itself, not its signature) into a lookup key, so no
// usable code is ever written to the store.
func codeKey(code string) string {
	sum := sha256.Sum256([]byte(code))
	return hex.EncodeToString(sum[:])
}

// CreateOpenIDConnectSession implements openid.OpenIDConnectRequestStorage.
func (s *Storage) CreateOpenIDConnectSession(ctx context.Context, code string, r fosite.Requester) error {
	return s.create(ctx, store.KindOpenIDSession, codeKey(code), r)
}

// GetOpenIDConnectSession implements openid.OpenIDConnectRequestStorage.
func (s *Storage) GetOpenIDConnectSession(ctx context.Context, code string, r fosite.Requester) (fosite.Requester, error) {
	return s.get(ctx, store.KindOpenIDSession, codeKey(code), r.GetSession(), fosite.ErrNotFound)
}

// DeleteOpenIDConnectSession implements openid.OpenIDConnectRequestStorage.
func (s *Storage) DeleteOpenIDConnectSession(ctx context.Context, code string) error {
	return s.delete(ctx, store.KindOpenIDSession, codeKey(code))
}

// CreatePKCERequestSession implements pkce.PKCERequestStorage.
func (s *Storage) CreatePKCERequestSession(ctx context.Context, signature string, r fosite.Requester) error {
	return s.create(ctx, store.KindPKCE, signature, r)
}

// GetPKCERequestSession implements pkce.PKCERequestStorage.
func (s *Storage) GetPKCERequestSession(ctx context.Context, signature string, sess fosite.Session) (fosite.Requester, error) {
	return s.get(ctx, store.KindPKCE, signature, sess, fosite.ErrNotFound)
}

// DeletePKCERequestSession implements pkce.PKCERequestStorage.
func (s *Storage) DeletePKCERequestSession(ctx context.Context, signature string) error {
	return s.delete(ctx, store.KindPKCE, signature)
}

// BeginTX, Commit and Rollback implement fosite's storage.Transactional.
func (s *Storage) BeginTX(ctx context.Context) (context.Context, error) { return s.Store.BeginTx(ctx) }

// Commit implements storage.Transactional.
func (s *Storage) Commit(ctx context.Context) error { return s.Store.Commit(ctx) }

// Rollback implements storage.Transactional.
func (s *Storage) Rollback(ctx context.Context) error { return s.Store.Rollback(ctx) }
