package oidc

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"slices"
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
// (acr_values is not kept: fosite would answer it with acr "0" whatever
// the login was; no acr values are supported.)
var storedFormKeys = []string{
	"redirect_uri", "code_challenge", "code_challenge_method", "nonce",
	"max_age", "prompt", "grant_type", "response_type", "scope",
}

// codeFormKeys are the parameters fosite keeps with an authorization code:
// its own (redirect_uri), PKCE's and OpenID Connect's.
var codeFormKeys = []string{
	"redirect_uri", "code_challenge", "code_challenge_method", "nonce", "max_age", "prompt",
}

// client adapts a store.Client to fosite.Client.
type client struct {
	*store.Client
	st *Storage // where it was read from, to read it again (GetRotatedHashes); nil: not
}

// GetRotatedHashes implements fosite.ClientWithSecretRotation, which fosite
// asks only after the secret failed against GetHashedSecret: the secret
// the client had before its last rotation while it is still taken
// (RotatedUntil), and the client's secret read again (rereadSecret), so
// that a secret given by "idp client rotate-secret" in another process
// works at once on every server, not after the client cache's lifetime. At
// most one read a second per client, however many wrong secrets are sent.
func (c client) GetRotatedHashes() [][]byte {
	var hs [][]byte
	if len(c.RotatedSecretHash) > 0 && time.Now().Before(c.RotatedUntil) {
		hs = append(hs, c.RotatedSecretHash)
	}
	if c.st == nil {
		return hs
	}
	if h := c.st.rereadSecret(c.ID); len(h) > 0 && !bytes.Equal(h, c.SecretHash) {
		hs = append(hs, h)
	}
	return hs
}

func (c client) GetID() string             { return c.ID }
func (c client) GetHashedSecret() []byte   { return c.SecretHash }
func (c client) GetRedirectURIs() []string { return c.RedirectURIs }
func (c client) GetGrantTypes() fosite.Arguments {
	return fosite.Arguments{"authorization_code", "refresh_token"}
}
func (c client) GetResponseTypes() fosite.Arguments { return fosite.Arguments{"code"} }
func (c client) GetScopes() fosite.Arguments        { return SupportedScopes }
func (c client) IsPublic() bool                     { return c.Public }

// GetResponseModes implements fosite.ResponseModeClient: the query mode
// that discovery advertises may be asked for by name (fosite refuses any
// response_mode of a client without this method).
func (c client) GetResponseModes() []fosite.ResponseModeType {
	return []fosite.ResponseModeType{fosite.ResponseModeDefault, fosite.ResponseModeQuery}
}
func (c client) GetAudience() fosite.Arguments { return nil }

// Storage implements fosite's storage interfaces over store.Store. Requests
// are stored under token signatures (never the tokens), with a sanitised
// form, and clients are cached for a short time.
//
// The PKCE and OpenID Connect requests of an authorization code are the
// code's own request (fosite stores the same request three times, under the
// code's signature or the code itself): they are read from the code's
// record, so issuing a code writes one record and exchanging it deletes
// none.
type Storage struct {
	Store    store.Store
	ClientTT time.Duration // how long a client stays cached
	// RefreshGrace is how long after a refresh the refresh token it spent
	// may be used again (0: never), as the retry of a refresh whose answer
	// was lost (a dropped connection, a 503 for a commit that went
	// through): while the refresh token that refresh issued, its
	// successor, is unused, the retry spends the successor instead and
	// gets new tokens (the successor's access tokens are revoked, as at any
	// refresh). Otherwise, or later, a spent refresh token is a reuse, and
	// revokes the grant. Ory Hydra's and Okta's rotation grace periods.
	RefreshGrace time.Duration
	// Now is the clock of RefreshGrace (nil: time.Now).
	Now func() time.Time
	// CodeSignature is the signature fosite stores a code under (its
	// AuthorizeCodeSignature); set by New.
	CodeSignature func(ctx context.Context, code string) string

	codes *issuedCodes // the records of the codes this process issued lately

	mu          sync.Mutex
	clients     map[string]cachedClient
	rereads     map[string]time.Time   // when each client's last reread ended (rereadSecret)
	rereadLocks map[string]*sync.Mutex // each held by a reread of its client
	// changes counts what makes the cache newer than a read begun before
	// it (ForgetClient, rereadSecret): such a read does not fill it.
	changes uint64
}

type cachedClient struct {
	c       *store.Client
	fetched time.Time
}

// ClientCacheTTL is how long a client stays cached: a change made by
// another process (idp client update, rotate-secret, delete) holds on a
// running server within it. Reading a client this often costs nothing
// measurable.
const ClientCacheTTL = 5 * time.Second

// NewStorage returns the fosite storage adapter over s.
func NewStorage(s store.Store) *Storage {
	return &Storage{Store: s, ClientTT: ClientCacheTTL, codes: newIssuedCodes(), clients: map[string]cachedClient{},
		rereads: map[string]time.Time{}, rereadLocks: map[string]*sync.Mutex{}}
}

// Client returns the registered client, from the cache when fresh. A read
// that the cache has become newer than meanwhile (the client changed or
// deleted by this process, a secret read again) is not cached: it would
// bring back what the change replaced for ClientTT more.
func (s *Storage) Client(ctx context.Context, id string) (*store.Client, error) {
	s.mu.Lock()
	cc, ok := s.clients[id]
	changes := s.changes
	s.mu.Unlock()
	if ok && time.Since(cc.fetched) < s.ClientTT {
		return cc.c, nil
	}
	c, err := s.Store.GetClient(ctx, id)
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	if s.changes == changes {
		s.clients[id] = cachedClient{c: c, fetched: time.Now()}
	}
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
	return client{Client: c, st: s}, nil
}

// rereadSecret returns the client id's secret hash as stored at most a
// second ago: read again into the cache, unless a read of it ended less
// than a second ago, whose result the cache holds. A client's rereads run
// one at a time, so requests that need one at once wait for the first and
// take its result; those of other clients do not wait for them. nil when
// there is none (a deleted client leaves the cache, a read that failed
// leaves nothing to take).
func (s *Storage) rereadSecret(id string) []byte {
	s.mu.Lock()
	lock := s.rereadLocks[id] // only for clients found, so as many as there are
	if lock == nil {
		lock = new(sync.Mutex)
		s.rereadLocks[id] = lock
	}
	s.mu.Unlock()
	lock.Lock()
	defer lock.Unlock()
	s.mu.Lock()
	last, ok := s.rereads[id]
	cc := s.clients[id]
	changes := s.changes
	s.mu.Unlock()
	if ok && time.Since(last) < time.Second {
		if cc.c == nil || cc.fetched.Before(last) {
			return nil // gone, or that read failed
		}
		return cc.c.SecretHash
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := s.Store.GetClient(ctx, id)
	s.mu.Lock()
	defer s.mu.Unlock()
	fresh := s.changes == changes // nothing changed here during the read
	s.rereads[id] = time.Now()
	s.changes++
	switch {
	case errors.Is(err, store.ErrNotFound):
		delete(s.clients, id)
	case err == nil:
		if fresh {
			s.clients[id] = cachedClient{c: c, fetched: s.rereads[id]}
		} else {
			delete(s.clients, id) // and a reread within the second reads again
			delete(s.rereads, id)
		}
		return c.SecretHash
	}
	return nil
}

// ForgetClient drops the client id from the cache (after a change made by
// this process).
func (s *Storage) ForgetClient(id string) {
	s.mu.Lock()
	delete(s.clients, id)
	s.changes++
	s.mu.Unlock()
}

// ClientAssertionJWTValid implements fosite.ClientManager; JWT client
// assertions are not supported, so no jti is ever known.
func (s *Storage) ClientAssertionJWTValid(context.Context, string) error { return nil }

// SetClientAssertionJWT implements fosite.ClientManager (unused).
func (s *Storage) SetClientAssertionJWT(context.Context, string, time.Time) error { return nil }

// storedRequest is a fosite request as the store keeps it (codec.go); the
// JSON form is how an earlier release stored it.
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
	data, err := encodeRequest(r, form)
	if err != nil {
		return err
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
	if c, ok := r.GetClient().(client); ok && kind == store.KindAuthorizeCode {
		rec.Consented = !c.FirstParty // issued under the user's consent, which must still exist
	}
	if w := pendingWrites(ctx); w != nil && w.SpendKind != "" {
		w.Create = append(w.Create, rec)
		return nil
	}
	if h, _ := ctx.Value(heldCodeKey{}).(*HeldCode); h != nil && kind == store.KindAuthorizeCode && h.rec == nil {
		h.rec = rec
		return nil
	}
	if err := s.Store.CreateToken(ctx, rec); err != nil {
		return err
	}
	if kind == store.KindAuthorizeCode {
		s.codes.put(rec)
	}
	return nil
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

// codeMemo keeps the code's record as the token endpoint first read and
// decoded it. The request reads it four times (fosite's code handler twice,
// the PKCE and OpenID Connect requests as views of it); only the first read
// goes to the store and is decoded. That is safe because the read decides
// nothing: the one step that decides whether the code is spent is
// InvalidateAuthorizeCodeSession, a conditional update, and a reused code
// is caught by the first read of the request that reuses it.
type codeMemo struct {
	mu    sync.Mutex
	codes map[string]*decodedRecord
	// issued is the record this request took from issuedCodes (nil:
	// none), which says nothing of whether the code is still unused.
	issued *store.TokenRecord
	// retries are the refresh tokens this request presented that are
	// retries (Storage.RefreshGrace), with the successor each spends.
	retries map[string]string
}

// decodedRecord is a stored request, decoded, and (for a code read through
// the memo) the session it was last decoded into.
type decodedRecord struct {
	rec *store.TokenRecord
	req storedRequest
	// session is the session's encoding (nil for a record stored as JSON:
	// req.Session).
	session []byte
	// filled is the session the stored one was decoded into. fosite passes
	// the token request's own session to every read, and between them
	// changes only what the stored session does not hold (the new tokens'
	// expiry), so decoding it again into the same session would write the
	// same values. (A token request reads from one goroutine.)
	filled fosite.Session
}

type codeMemoKey struct{}

// memoOf is the token request's memo in ctx (nil: ctx is no token
// request's).
func memoOf(ctx context.Context) *codeMemo {
	m, _ := ctx.Value(codeMemoKey{}).(*codeMemo)
	return m
}

// withCodeMemo gives one token request its memo.
func withCodeMemo(ctx context.Context) context.Context {
	return context.WithValue(ctx, codeMemoKey{}, &codeMemo{codes: map[string]*decodedRecord{}})
}

// code reads and decodes the code's record, or takes it from the request's
// memo when this request has read it already, or, for the first request
// to exchange a code this process issued, from issuedCodes.
func (s *Storage) code(ctx context.Context, signature string) (*decodedRecord, error) {
	m := memoOf(ctx)
	if m != nil {
		m.mu.Lock()
		dc := m.codes[signature]
		m.mu.Unlock()
		if dc != nil {
			return dc, nil
		}
	}
	var (
		dc  *decodedRecord
		err error
	)
	if rec, ok := s.takeIssued(m, signature); ok {
		dc, err = decodeTokenRecord(rec)
	} else {
		dc, err = s.read(ctx, store.KindAuthorizeCode, signature)
	}
	if err == nil && m != nil {
		m.mu.Lock()
		m.codes[signature] = dc
		m.mu.Unlock()
	}
	return dc, err
}

// takeIssued takes the code's record from issuedCodes for a token request
// (m, its memo, non-nil): the one kind of request whose spend at Commit
// decides on the code's state in the store.
func (s *Storage) takeIssued(m *codeMemo, signature string) (*store.TokenRecord, bool) {
	if m == nil {
		return nil, false
	}
	rec, ok := s.codes.take(signature, time.Now())
	if ok {
		m.mu.Lock()
		m.issued = rec
		m.mu.Unlock()
	}
	return rec, ok
}

// issuedCodeSpent reports, for a token request that took its code's
// record from issuedCodes and failed before its spend (a wrong PKCE
// verifier or redirect URI, say), whether the store has the code spent,
// and the ID of the authorization request it was issued for: fosite, which
// revokes what a spent code issued when its read finds it so, before any
// other check, never saw the code's state. ok is false when the request
// read the code from the store, or the code is unused, gone or unread.
func (s *Storage) issuedCodeSpent(ctx context.Context) (requestID string, ok bool) {
	m := memoOf(ctx)
	if m == nil {
		return "", false
	}
	m.mu.Lock()
	issued := m.issued
	m.mu.Unlock()
	if issued == nil {
		return "", false
	}
	rec, err := s.Store.GetToken(ctx, store.KindAuthorizeCode, issued.Signature)
	if err != nil || rec.Active {
		return "", false
	}
	return rec.RequestID, true
}

// userMemo is where a userinfo request finds the user read with its
// access token (nil: not read, or gone): the record and its subject come
// from the store in one statement.
type userMemo struct{ user *store.User }

type userMemoKey struct{}

// withUserMemo gives one userinfo request its memo.
func withUserMemo(ctx context.Context) (context.Context, *userMemo) {
	m := &userMemo{}
	return context.WithValue(ctx, userMemoKey{}, m), m
}

// read loads and decodes a record.
func (s *Storage) read(ctx context.Context, kind, signature string) (*decodedRecord, error) {
	var (
		rec *store.TokenRecord
		err error
	)
	if m, _ := ctx.Value(userMemoKey{}).(*userMemo); m != nil && kind == store.KindAccessToken {
		rec, m.user, err = s.Store.GetTokenWithUser(ctx, kind, signature)
	} else {
		rec, err = s.Store.GetToken(ctx, kind, signature)
	}
	if err != nil {
		return nil, err
	}
	return decodeTokenRecord(rec)
}

// decodeTokenRecord decodes a record's request.
func decodeTokenRecord(rec *store.TokenRecord) (*decodedRecord, error) {
	dc := &decodedRecord{rec: rec}
	var err error
	if dc.session, err = parseRequest(rec.Data, &dc.req); err != nil {
		return nil, err
	}
	return dc, nil
}

// get loads a request; inactive records come back with the request and
// errInactive (nil: no error) so fosite can detect reuse.
func (s *Storage) get(ctx context.Context, kind, signature string, sess fosite.Session, errInactive error) (fosite.Requester, error) {
	req, _, err := s.getRecord(ctx, kind, signature, sess, errInactive)
	return req, err
}

// getRecord is get, with the record the request was read from (nil when
// none was found).
func (s *Storage) getRecord(ctx context.Context, kind, signature string, sess fosite.Session, errInactive error) (fosite.Requester, *store.TokenRecord, error) {
	var (
		dc  *decodedRecord
		err error
	)
	if kind == store.KindAuthorizeCode {
		dc, err = s.code(ctx, signature)
	} else {
		dc, err = s.read(ctx, kind, signature)
	}
	if errors.Is(err, store.ErrNotFound) {
		return nil, nil, fosite.ErrNotFound
	}
	if err != nil {
		return nil, nil, err
	}
	if sess == nil {
		sess = NewSession()
	}
	if dc.filled != sess {
		if err := dc.fill(sess); err != nil {
			return nil, nil, err
		}
		dc.filled = sess
	}
	sr := &dc.req
	c, err := s.GetClient(ctx, sr.ClientID)
	if err != nil {
		return nil, nil, err
	}
	// Each request gets its own slices: fosite appends to them.
	req := &fosite.Request{
		ID: sr.ID, RequestedAt: sr.RequestedAt, Client: c,
		RequestedScope: slices.Clone(sr.Scopes), GrantedScope: slices.Clone(sr.GrantedScopes),
		RequestedAudience: slices.Clone(sr.Audience), GrantedAudience: slices.Clone(sr.GrantedAudience),
		Form: cloneForm(sr.Form), Session: sess,
	}
	if !dc.rec.Active && errInactive != nil {
		return req, dc.rec, errInactive
	}
	return req, dc.rec, nil
}

// fill decodes the stored session into sess.
func (dc *decodedRecord) fill(sess fosite.Session) error {
	if dc.session == nil {
		if err := json.Unmarshal(dc.req.Session, sess); err != nil {
			return fmt.Errorf("decode session: %w", err)
		}
		return nil
	}
	s, ok := sess.(*Session)
	if !ok {
		return fmt.Errorf("decode session: into a %T", sess)
	}
	return decodeSession(dc.session, s)
}

func cloneForm(f url.Values) url.Values {
	c := make(url.Values, len(f))
	for k, v := range f {
		c[k] = slices.Clone(v)
	}
	return c
}

func (s *Storage) delete(ctx context.Context, kind, signature string) error {
	err := s.Store.DeleteToken(ctx, kind, signature)
	if errors.Is(err, store.ErrNotFound) {
		return nil
	}
	return err
}

// ErrWithdrawn: what a code was to be issued under, the SSO session or
// the user's consent to a client that asks for one, has ended since the
// authorize endpoint read it (a password reset, My Page, a logout, the
// app's access taken back); no code was stored (store.Store's CreateToken).
var ErrWithdrawn = errors.New("oidc: the session or the consent ended before the code was issued")

// CreateAuthorizeCodeSession implements oauth2.AuthorizeCodeStorage.
func (s *Storage) CreateAuthorizeCodeSession(ctx context.Context, signature string, r fosite.Requester) error {
	err := s.create(ctx, store.KindAuthorizeCode, signature, r)
	if errors.Is(err, store.ErrNotFound) {
		return fmt.Errorf("%w: %w", ErrWithdrawn, err)
	}
	return err
}

// GetAuthorizeCodeSession implements oauth2.AuthorizeCodeStorage. A used
// code returns its request with fosite.ErrInvalidatedAuthorizeCode, so fosite
// revokes what the code issued.
func (s *Storage) GetAuthorizeCodeSession(ctx context.Context, signature string, sess fosite.Session) (fosite.Requester, error) {
	return s.get(ctx, store.KindAuthorizeCode, signature, sess, fosite.ErrInvalidatedAuthorizeCode)
}

// InvalidateAuthorizeCodeSession implements oauth2.AuthorizeCodeStorage:
// the one atomic step that decides which of two concurrent exchanges wins
// (at Commit, inside fosite's transaction).
func (s *Storage) InvalidateAuthorizeCodeSession(ctx context.Context, signature string) error {
	if w := pendingWrites(ctx); w != nil && w.SpendKind == "" {
		w.SpendKind, w.SpendSignature = store.KindAuthorizeCode, signature
		return nil
	}
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

// CreateRefreshTokenSession implements oauth2.RefreshTokenStorage. A
// refresh request narrowed to fewer scopes stores its new refresh token with
// the grant's (see narrowRefreshScope).
func (s *Storage) CreateRefreshTokenSession(ctx context.Context, signature, _ string, r fosite.Requester) error {
	return s.create(ctx, store.KindRefreshToken, signature, refreshTokenRequest(ctx, r))
}

// GetRefreshTokenSession implements oauth2.RefreshTokenStorage. A
// rotated-out token returns fosite.ErrInactiveToken with its request, so
// fosite treats its reuse as theft and revokes the whole grant, unless the
// token endpoint's request is a retry (RefreshGrace).
func (s *Storage) GetRefreshTokenSession(ctx context.Context, signature string, sess fosite.Session) (fosite.Requester, error) {
	req, rec, err := s.getRecord(ctx, store.KindRefreshToken, signature, sess, fosite.ErrInactiveToken)
	if errors.Is(err, fosite.ErrInactiveToken) && s.RefreshGrace > 0 && rec.Successor != "" && revoking(ctx) {
		// A spent refresh token that may still be retried (RefreshGrace)
		// still works: revoking it revokes its grant (RFC 7009 2.2), where
		// fosite would take it as revoked already and change nothing.
		return req, nil
	}
	if errors.Is(err, fosite.ErrInactiveToken) {
		switch retry, rerr := s.refreshRetry(ctx, rec); {
		case rerr != nil:
			return nil, rerr
		case retry:
			return req, nil
		}
	}
	return req, err
}

// refreshRetry says whether the spent refresh token rec, presented at the
// token endpoint, is a retry of the refresh that spent it (RefreshGrace):
// that refresh was less than RefreshGrace ago and the refresh token it
// issued, rec's successor, is still active (unused, not revoked). It notes
// the successor in the request's memo, for RotateRefreshToken to spend.
func (s *Storage) refreshRetry(ctx context.Context, rec *store.TokenRecord) (bool, error) {
	m := memoOf(ctx)
	if s.RefreshGrace <= 0 || m == nil || rec == nil || rec.Successor == "" {
		return false, nil
	}
	succ, err := s.Store.GetToken(ctx, store.KindRefreshToken, rec.Successor)
	if errors.Is(err, store.ErrNotFound) {
		return false, nil
	}
	if err != nil {
		return false, err // not a reuse: the grant is not revoked for a failed read
	}
	now := time.Now
	if s.Now != nil {
		now = s.Now
	}
	if !succ.Active || succ.RequestID != rec.RequestID || !now().Before(succ.CreatedAt.Add(s.RefreshGrace)) {
		return false, nil
	}
	m.mu.Lock()
	if m.retries == nil {
		m.retries = map[string]string{}
	}
	m.retries[rec.Signature] = rec.Successor
	m.mu.Unlock()
	return true, nil
}

type revokingKey struct{}

// withRevoking marks ctx as a revocation request's (RFC 7009).
func withRevoking(ctx context.Context) context.Context {
	return context.WithValue(ctx, revokingKey{}, true)
}

func revoking(ctx context.Context) bool { return ctx.Value(revokingKey{}) != nil }

// retriedSuccessor is the successor a retry of the refresh token signature
// spends in this token request ("": it is no retry).
func retriedSuccessor(ctx context.Context, signature string) string {
	m := memoOf(ctx)
	if m == nil {
		return ""
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.retries[signature]
}

// DeleteRefreshTokenSession implements oauth2.RefreshTokenStorage: it
// deletes nothing. fosite calls it only for a rotated-out refresh token
// that was reused, before it revokes the grant (handleRefreshTokenReuse),
// each in a statement of its own: a revocation that then failed would
// leave the reused token gone, and its next reuse (the client's retry of
// the 503) refused as unknown, revoking nothing. The token is inactive
// already; the expiry sweep deletes it.
func (s *Storage) DeleteRefreshTokenSession(context.Context, string) error { return nil }

// RotateRefreshToken implements oauth2.RefreshTokenStorage: the used refresh
// token stops working (atomically: of two concurrent refreshes one wins) and
// so do the access tokens issued with it (at Commit, inside fosite's
// transaction).
func (s *Storage) RotateRefreshToken(ctx context.Context, requestID, signature string) error {
	spend, relink := signature, ""
	if succ := retriedSuccessor(ctx, signature); succ != "" {
		spend, relink = succ, signature // a retry spends the successor (RefreshGrace)
	}
	if w := pendingWrites(ctx); w != nil && w.SpendKind == "" {
		w.SpendKind, w.SpendSignature, w.Relink = store.KindRefreshToken, spend, relink
		w.RevokeKind, w.RevokeRequest = store.KindAccessToken, requestID
		return nil
	}
	if err := refreshError(s.Store.DeactivateToken(ctx, store.KindRefreshToken, spend)); err != nil {
		return err
	}
	return s.Store.DeactivateTokensByRequest(ctx, requestID, store.KindAccessToken)
}

// refreshError is what fosite expects when a refresh token cannot be
// spent: ErrInactiveToken for one spent already (its reuse), ErrNotFound.
func refreshError(err error) error {
	switch {
	case errors.Is(err, store.ErrConsumed):
		return fosite.ErrInactiveToken
	case errors.Is(err, store.ErrNotFound):
		return fosite.ErrNotFound
	}
	return err
}

// RevokeRefreshToken implements oauth2.TokenRevocationStorage: it revokes
// the grant (revokeGrant).
func (s *Storage) RevokeRefreshToken(ctx context.Context, requestID string) error {
	return s.revokeGrant(ctx, requestID)
}

// RevokeAccessToken implements oauth2.TokenRevocationStorage: it revokes
// the grant (revokeGrant).
func (s *Storage) RevokeAccessToken(ctx context.Context, requestID string) error {
	return s.revokeGrant(ctx, requestID)
}

// revokeGrant deactivates the refresh and access tokens issued for
// requestID in one statement. fosite asks for the two kinds one after the
// other, and always for both (RFC 7009 revocation, a code or refresh token
// used twice); revoked apart, a refresh between the two would spend a
// refresh token still active and get an access token after the access
// tokens were revoked, which would live on. The second call finds nothing
// left to do.
func (s *Storage) revokeGrant(ctx context.Context, requestID string) error {
	return s.Store.DeactivateTokensByRequest(ctx, requestID, store.KindRefreshToken, store.KindAccessToken)
}

// CreateOpenIDConnectSession implements openid.OpenIDConnectRequestStorage:
// the request is the code's, already stored under the code's signature.
func (s *Storage) CreateOpenIDConnectSession(context.Context, string, fosite.Requester) error {
	return nil
}

// GetOpenIDConnectSession implements openid.OpenIDConnectRequestStorage
// from the code's record. fosite asks for it after the code handler has
// checked the code and marked it used, so a used code is not an error here.
// As fosite stores one only for codes granted the openid scope, a code
// without it has none.
func (s *Storage) GetOpenIDConnectSession(ctx context.Context, code string, r fosite.Requester) (fosite.Requester, error) {
	req, err := s.get(ctx, store.KindAuthorizeCode, s.CodeSignature(ctx, code), r.GetSession(), nil)
	if err != nil {
		return nil, err
	}
	if !req.GetGrantedScopes().Has("openid") {
		return nil, fosite.ErrNotFound
	}
	return req, nil
}

// DeleteOpenIDConnectSession implements openid.OpenIDConnectRequestStorage:
// the code's record goes with the code.
func (s *Storage) DeleteOpenIDConnectSession(context.Context, string) error { return nil }

// CreatePKCERequestSession implements pkce.PKCERequestStorage: the code's
// record already holds code_challenge and code_challenge_method.
func (s *Storage) CreatePKCERequestSession(context.Context, string, fosite.Requester) error {
	return nil
}

// GetPKCERequestSession implements pkce.PKCERequestStorage from the code's
// record (signature is the code's). fosite asks for it after the code
// handler has checked the code.
func (s *Storage) GetPKCERequestSession(ctx context.Context, signature string, sess fosite.Session) (fosite.Requester, error) {
	return s.get(ctx, store.KindAuthorizeCode, signature, sess, nil)
}

// DeletePKCERequestSession implements pkce.PKCERequestStorage: the code's
// record goes with the code.
func (s *Storage) DeletePKCERequestSession(context.Context, string) error { return nil }

// fosite wraps what the token endpoint writes in a transaction (BeginTX,
// the writes, Commit): spending the code or the refresh token, then storing
// the new tokens. Those writes are collected in the context and applied by
// one store call at Commit (store.TokenExchange: one statement, one round
// trip to PostgreSQL, instead of BEGIN, three or four statements and
// COMMIT). Nothing in between reads what they write, and a code or token
// already spent makes Commit fail as the spend itself would have. Other
// writes fosite makes inside its transactions (revoking a grant whose
// refresh token was reused) are single statements, run at once.

type writesKey struct{}

// pendingWrites returns the writes collected in ctx since BeginTX, or nil
// outside a transaction.
func pendingWrites(ctx context.Context) *store.TokenExchange {
	w, _ := ctx.Value(writesKey{}).(*store.TokenExchange)
	return w
}

// BeginTX implements fosite's storage.Transactional.
func (s *Storage) BeginTX(ctx context.Context) (context.Context, error) {
	return context.WithValue(ctx, writesKey{}, &store.TokenExchange{}), nil
}

// Commit implements storage.Transactional: the collected writes, all or
// none.
func (s *Storage) Commit(ctx context.Context) error {
	w := pendingWrites(ctx)
	if w == nil {
		return errors.New("commit: no transaction in context")
	}
	if w.SpendKind == "" {
		return nil
	}
	err := s.Store.ExchangeTokens(ctx, w)
	kind := w.SpendKind
	*w = store.TokenExchange{} // committed (or failed): a later Rollback has nothing to undo
	if kind == store.KindRefreshToken {
		return refreshError(err)
	}
	if errors.Is(err, store.ErrNotFound) {
		return fmt.Errorf("%w: %w", errCodeGone, err)
	}
	return err
}

// errCodeGone: the code an exchange spends was deleted after the exchange
// took its request (its client or user deleted; issuedCodes), which the
// token endpoint answers as a code not found: invalid_grant.
var errCodeGone = errors.New("oidc: the authorization code no longer exists")

// Rollback implements storage.Transactional: the collected writes are
// dropped.
func (s *Storage) Rollback(ctx context.Context) error {
	if w := pendingWrites(ctx); w != nil {
		*w = store.TokenExchange{}
	}
	return nil
}
