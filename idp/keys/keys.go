// Package keys manages the token signing keys: generated on first start,
// kept in the store with the private half encrypted under the master key,
// rotated on demand, and published as a JWKS while any token they signed
// may still be alive. Every instance sharing a store sees the same keys; each
// keeps them decrypted, and reads them again when the store's current key
// is another (checked before each signature and each JWKS), when they are
// CacheTTL old, and on an unknown kid.
//
// A new key is current at once, everywhere: an instance signs with it from
// its next signature, and serves it in its JWKS from its next request, so a
// token never names a key that some instance behind the load balancer does
// not serve. A relying party whose cached JWKS lacks the new kid fetches
// the JWKS again, as OpenID Connect Core 1.0 section 10.1.1 has it; the
// previous key stays published while tokens it signed live.
package keys

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/kamera-id/idp/idp/crypt"
	"github.com/kamera-id/idp/idp/store"
)

// ErrUnknownKey is returned for a kid that is not (or no longer) published.
var ErrUnknownKey = errors.New("keys: unknown key id")

// ManagerConfig configures a Manager.
type ManagerConfig struct {
	Store     store.Store
	Key       *crypt.Key
	Algorithm string // "RS256" (default) or "ES256"
	Now       func() time.Time
	// KeepRetired is how long a retired key stays published: the lifetime
	// of the longest-lived token it can have signed, plus a margin.
	KeepRetired time.Duration
	// TokenTTL is the lifetime of the longest-lived token a key signs (ID
	// tokens): a retired key signs no token that would outlive it in the
	// JWKS (signsRetired).
	TokenTTL time.Duration
	// CacheTTL is how long the key set is cached before it is read again
	// whatever the current key (default 30s), so that a retired key is
	// unpublished once KeepRetired has passed.
	CacheTTL time.Duration
}

// Manager signs with the current key and publishes the live ones.
type Manager struct {
	cfg ManagerConfig

	mu       sync.RWMutex
	set      *keySet
	loadedAt time.Time
	failedAt time.Time // when a read of the keys last failed
	loads    uint64    // how many times the keys were read
	// reload holds a token while a reload is in progress: one at a time,
	// and a caller waiting for it can give up with its context.
	reload chan struct{}
}

type keySet struct {
	current *signingKey                 // the newest key in the store
	signers []*signingKey               // the keys of the configured algorithm that may sign (signer), newest first
	public  map[string]*jose.JSONWebKey // every published key, by kid
	jwks    []byte
}

type signingKey struct {
	kid    string
	alg    jose.SignatureAlgorithm
	signer jose.Signer // with kid and typ JWT
	priv   crypto.Signer
}

// signer is the key to sign with: the newest one of the configured
// algorithm (the current key, unless a key of another algorithm was made
// since: a rolling change of IDP_SIGNING_ALG), or else the current key.
// A retired key signs only while an ID token it signs would still expire
// before the key leaves the JWKS (read, signsRetired); an instance left
// with the old algorithm longer signs with the current key.
func (s *keySet) signer() *signingKey {
	if len(s.signers) > 0 {
		return s.signers[0]
	}
	return s.current
}

// NewManager returns a Manager; call Ensure before use.
func NewManager(cfg ManagerConfig) *Manager {
	if cfg.Algorithm == "" {
		cfg.Algorithm = "RS256"
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.CacheTTL == 0 {
		cfg.CacheTTL = 30 * time.Second
	}
	return &Manager{cfg: cfg, reload: make(chan struct{}, 1)}
}

// lockReload takes the reload token, or gives up when ctx ends first.
func (m *Manager) lockReload(ctx context.Context) error {
	select {
	case m.reload <- struct{}{}:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// tryLockReload takes the reload token unless another caller holds it.
func (m *Manager) tryLockReload() bool {
	select {
	case m.reload <- struct{}{}:
		return true
	default:
		return false
	}
}

func (m *Manager) unlockReload() { <-m.reload }

// Ensure creates the first key when the store has none of the configured
// algorithm, and loads the key set.
func (m *Manager) Ensure(ctx context.Context) error {
	ks, err := m.cfg.Store.ListSigningKeys(ctx)
	if err != nil {
		return err
	}
	if cur := currentOf(ks); cur == nil || cur.Algorithm != m.cfg.Algorithm {
		_, err := m.rotate(ctx, false)
		return err
	}
	_, err = m.load(ctx)
	return err
}

// ErrOtherAlgorithm: Rotate was asked for a key of another algorithm than
// the current key's.
var ErrOtherAlgorithm = store.ErrOtherAlgorithm

// Rotate makes a new key current: published and signing at once, on every
// instance (see fresh). The previous one stays published for KeepRetired;
// keys retired before that are deleted. The new key is of the current
// key's algorithm: when the configured one is another (an admin command
// run without the servers' IDP_SIGNING_ALG), it refuses
// (ErrOtherAlgorithm). Servers sign with the newest key of their own
// algorithm, so a key of another one made current would retire the key
// they sign with, which would leave the JWKS while they still use it. The
// store checks the current key in the rotation's transaction, so a server
// starting at that moment with another algorithm (Ensure) cannot slip in
// between. The algorithm changes when servers start with another
// IDP_SIGNING_ALG.
func (m *Manager) Rotate(ctx context.Context) (string, error) {
	return m.rotate(ctx, true)
}

// rotate makes a new key of the configured algorithm current (Rotate);
// with sameAlgorithm, only when the current key is of that algorithm.
func (m *Manager) rotate(ctx context.Context, sameAlgorithm bool) (string, error) {
	priv, err := generate(m.cfg.Algorithm)
	if err != nil {
		return "", err
	}
	pub := jose.JSONWebKey{Key: priv.Public(), Algorithm: m.cfg.Algorithm, Use: "sig"}
	tp, err := pub.Thumbprint(crypto.SHA256)
	if err != nil {
		return "", err
	}
	pub.KeyID = base64.RawURLEncoding.EncodeToString(tp)
	pubJSON, err := pub.MarshalJSON()
	if err != nil {
		return "", err
	}
	der, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		return "", err
	}
	now := m.cfg.Now()
	k := &store.SigningKey{
		ID: pub.KeyID, Algorithm: m.cfg.Algorithm, PublicJWK: pubJSON, CreatedAt: now,
		PrivateEnc: m.cfg.Key.Seal(der, aad(pub.KeyID)),
	}
	if err := m.cfg.Store.AddSigningKey(ctx, k, now, sameAlgorithm); errors.Is(err, store.ErrOtherAlgorithm) {
		return "", fmt.Errorf("%w: run it with the servers' IDP_SIGNING_ALG", err)
	} else if err != nil {
		return "", fmt.Errorf("store signing key: %w", err)
	}
	if _, err := m.cfg.Store.DeleteSigningKeysRetiredBefore(ctx, now.Add(-m.cfg.KeepRetired)); err != nil {
		return "", fmt.Errorf("delete old signing keys: %w", err)
	}
	if _, err := m.load(ctx); err != nil {
		return "", err
	}
	return pub.KeyID, nil
}

// Sign returns a compact JWS of payload signed with the current key.
// Header entries other than alg and kid are copied (fosite sets typ).
func (m *Manager) Sign(ctx context.Context, payload []byte, header map[string]any) (string, error) {
	set, err := m.fresh(ctx, false)
	if err != nil {
		return "", err
	}
	cur := set.signer()
	signer := cur.signer
	if extra := extraHeaders(header); len(extra) > 0 {
		opts := (&jose.SignerOptions{}).WithType("JWT").WithHeader("kid", cur.kid)
		for k, v := range extra {
			opts.WithHeader(jose.HeaderKey(k), v)
		}
		if signer, err = jose.NewSigner(jose.SigningKey{Algorithm: cur.alg, Key: cur.priv}, opts); err != nil {
			return "", err
		}
	}
	jws, err := signer.Sign(payload)
	if err != nil {
		return "", err
	}
	return jws.CompactSerialize()
}

func extraHeaders(h map[string]any) map[string]any {
	var extra map[string]any
	for k, v := range h {
		switch k {
		case "alg", "kid":
			continue
		case "typ":
			if v == "JWT" {
				continue
			}
		}
		if extra == nil {
			extra = map[string]any{}
		}
		extra[k] = v
	}
	return extra
}

// unknownKidReload is how often, at most, a kid not known here makes
// PublicKey read the keys again: a kid nobody signed with (in a forged
// id_token_hint, say) must not turn every request into a store read. A key
// rotated anywhere is usually found by fresh's check before a signature or
// a JWKS; the reload is for the requests between, or a restored backup.
const unknownKidReload = time.Second

// reloadRetry is how long after a failed read of the keys the cached set
// is used without trying the store again: while the database hangs, each
// request would otherwise wait out its own deadline on it before falling
// back to the cached set.
const reloadRetry = 5 * time.Second

// PublicKey returns a published key by kid from the cached key set (no
// store read: it also serves an authorization request's id_token_hint),
// reading the keys again if the kid is not known here, at most once per
// unknownKidReload, and not within reloadRetry of a failed read.
func (m *Manager) PublicKey(ctx context.Context, kid string) (crypto.PublicKey, error) {
	m.mu.RLock()
	set := m.set
	m.mu.RUnlock()
	var err error
	if set == nil {
		if set, err = m.load(ctx); err != nil {
			return nil, err
		}
	}
	if k, ok := set.public[kid]; ok {
		return k.Key, nil
	}
	m.mu.RLock()
	loadedAt, failedAt, loads := m.loadedAt, m.failedAt, m.loads
	m.mu.RUnlock()
	now := m.cfg.Now()
	if now.Sub(loadedAt) < unknownKidReload || now.Sub(failedAt) < reloadRetry {
		return nil, ErrUnknownKey
	}
	if set, err = m.loadUnlessDone(ctx, loads); err != nil {
		return nil, err
	}
	if k, ok := set.public[kid]; ok {
		return k.Key, nil
	}
	return nil, ErrUnknownKey
}

// loadUnlessDone reads the keys unless they were read since the caller saw
// loads (the count of reads) while it waited for the reload lock: of many
// requests with unknown kids at once, one reads the store.
func (m *Manager) loadUnlessDone(ctx context.Context, loads uint64) (*keySet, error) {
	if err := m.lockReload(ctx); err != nil {
		return nil, err
	}
	defer m.unlockReload()
	m.mu.RLock()
	set, n, failedAt := m.set, m.loads, m.failedAt
	m.mu.RUnlock()
	if set != nil && (n != loads || m.cfg.Now().Sub(failedAt) < reloadRetry) {
		return set, nil // read meanwhile, or the read failed: not again so soon
	}
	return m.loadLocked(ctx, checkWait)
}

// jwksReload bounds a JWKS request's wait for the store: for another
// caller's check (checkWait at most), then for its own (checkWait). While
// the store hangs one request waits out its own check, then the cached set
// is served (and, for reloadRetry, without trying the store).
const jwksReload = 2 * checkWait

// JWKS returns the published keys as a JSON Web Key Set: with a key made
// by `idp keys rotate` or another instance as soon as it is in the store
// (see fresh).
func (m *Manager) JWKS(ctx context.Context) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, jwksReload)
	defer cancel()
	set, err := m.fresh(ctx, true)
	if err != nil {
		return nil, err
	}
	return set.jwks, nil
}

// Current returns the current key's id: the newest key.
func (m *Manager) Current(ctx context.Context) (string, error) {
	set, err := m.fresh(ctx, true)
	if err != nil {
		return "", err
	}
	return set.current.kid, nil
}

// Signing returns the id of the key new tokens are signed with now: the
// current key, unless it is of another algorithm than the configured one.
func (m *Manager) Signing(ctx context.Context) (string, error) {
	set, err := m.fresh(ctx, false)
	if err != nil {
		return "", err
	}
	return set.signer().kid, nil
}

// fresh returns the key set as the store has it: the cached set, read
// again when the store's current key is another one (a rotation here, on
// another instance or by `idp keys rotate`), or once it is CacheTTL old.
// Checking costs one small read (CurrentSigningKeyID), at most checkWait
// long, by one caller at a time. A signature (wait false) made while
// another caller checks or reloads uses the cached set at once; a JWKS
// request (wait true) waits for that caller, within its own deadline, and
// checks again, so that an instance never serves a JWKS without a key
// another instance already signs with while its store answers. A check
// that fails while its caller is still there (a store error, or checkWait
// passed) is a failure of the store: within reloadRetry of its end no
// caller tries the store. So a hanging store holds a signature or a JWKS
// up for checkWait at most, or twice that when the key set is read again.
func (m *Manager) fresh(ctx context.Context, wait bool) (*keySet, error) {
	m.mu.RLock()
	set, failedAt := m.set, m.failedAt
	m.mu.RUnlock()
	if set == nil {
		return m.load(ctx)
	}
	if m.cfg.Now().Sub(failedAt) < reloadRetry {
		return set, nil
	}
	if wait {
		if err := m.lockReload(ctx); err != nil {
			return set, nil
		}
	} else if !m.tryLockReload() {
		return set, nil
	}
	defer m.unlockReload()
	m.mu.RLock()
	set, at, failedAt := m.set, m.loadedAt, m.failedAt
	m.mu.RUnlock()
	if m.cfg.Now().Sub(failedAt) < reloadRetry { // failed while this caller waited
		return set, nil
	}
	if m.cfg.Now().Sub(at) < m.cfg.CacheTTL {
		cctx, cancel := context.WithTimeout(ctx, checkWait)
		id, err := m.cfg.Store.CurrentSigningKeyID(cctx)
		cancel()
		if err != nil && !errors.Is(err, store.ErrNotFound) {
			if ctx.Err() == nil { // not a caller that left, or whose own time ran out
				m.mu.Lock()
				m.failedAt = m.cfg.Now() // after the read: a hang counts from its end
				m.mu.Unlock()
			}
			return set, nil // a store hiccup: keep signing with what we have
		}
		if id == set.current.kid {
			return set, nil
		}
	}
	if fresh, err := m.loadLocked(ctx, checkWait); err == nil {
		return fresh, nil
	}
	return set, nil
}

// checkWait bounds fresh's read of the store's current key: while the store
// hangs, one caller waits this long, then the cached set is used (and, for
// reloadRetry, without trying the store).
const checkWait = time.Second

// load reads the keys from the store and rebuilds the cached set.
func (m *Manager) load(ctx context.Context) (*keySet, error) {
	if err := m.lockReload(ctx); err != nil {
		return nil, err
	}
	defer m.unlockReload()
	return m.loadLocked(ctx, 0)
}

// loadLocked is load with the reload lock held, the read bounded by wait
// (0: by ctx alone). A failed reload is remembered (failedAt, see
// reloadRetry): a store that fails or hangs past wait, and keys that
// cannot be read (a key sealed with another master key), alike, so that
// neither is tried again on every request. A read that failed because its
// caller left (a client that hung up) or ran out of its own time is no
// failure of the store, as in fresh's check: counted, a client aborting
// its requests one after another could keep an instance from ever
// reading a rotation.
func (m *Manager) loadLocked(ctx context.Context, wait time.Duration) (*keySet, error) {
	rctx := ctx
	if wait > 0 {
		var cancel context.CancelFunc
		rctx, cancel = context.WithTimeout(ctx, wait)
		defer cancel()
	}
	set, err := m.read(rctx)
	if err != nil && ctx.Err() == nil {
		m.mu.Lock()
		m.failedAt = m.cfg.Now()
		m.mu.Unlock()
	}
	return set, err
}

// signsRetired says whether a key of the configured algorithm retired at
// retired may still sign, in a set read at now (a rolling change of
// IDP_SIGNING_ALG: instances on the old algorithm go on signing with its
// key for a while): only while a token it signs, until the set is read
// again (CacheTTL), expires (TokenTTL) before the key leaves the JWKS
// (KeepRetired).
func (m *Manager) signsRetired(retired, now time.Time) bool {
	return now.Sub(retired)+m.cfg.CacheTTL+m.cfg.TokenTTL <= m.cfg.KeepRetired
}

// read reads the keys from the store and makes them the cached set.
func (m *Manager) read(ctx context.Context) (*keySet, error) {
	ks, err := m.cfg.Store.ListSigningKeys(ctx)
	if err != nil {
		return nil, err
	}
	now := m.cfg.Now()
	set := &keySet{public: map[string]*jose.JSONWebKey{}}
	var published []jose.JSONWebKey
	m.mu.RLock()
	old := m.set
	m.mu.RUnlock()
	opened := map[string]*signingKey{} // already decrypted
	if old != nil {
		for _, k := range old.signers {
			opened[k.kid] = k
		}
		opened[old.current.kid] = old.current
	}
	for i := range ks {
		k := &ks[i]
		if !k.RetiredAt.IsZero() && now.Sub(k.RetiredAt) > m.cfg.KeepRetired {
			continue
		}
		var jwk jose.JSONWebKey
		if err := jwk.UnmarshalJSON(k.PublicJWK); err != nil {
			return nil, fmt.Errorf("signing key %s: %w", k.ID, err)
		}
		set.public[k.ID] = &jwk
		published = append(published, jwk)
		isCurrent := k.RetiredAt.IsZero() && set.current == nil
		signs := k.Algorithm == m.cfg.Algorithm && (isCurrent || m.signsRetired(k.RetiredAt, now))
		if !isCurrent && !signs {
			continue
		}
		sk := opened[k.ID]
		if sk == nil {
			if sk, err = m.open(k); err != nil {
				return nil, err
			}
		}
		if isCurrent {
			set.current = sk
		}
		if signs {
			set.signers = append(set.signers, sk)
		}
	}
	if set.current == nil {
		return nil, errors.New("keys: no current signing key (run `idp keys rotate`)")
	}
	if set.jwks, err = json.Marshal(jose.JSONWebKeySet{Keys: published}); err != nil {
		return nil, err
	}
	m.mu.Lock()
	m.set, m.loadedAt = set, now
	m.loads++
	m.mu.Unlock()
	return set, nil
}

func (m *Manager) open(k *store.SigningKey) (*signingKey, error) {
	der, err := m.cfg.Key.Open(k.PrivateEnc, aad(k.ID))
	if err != nil {
		return nil, fmt.Errorf("signing key %s: %w (is this the right master key?)", k.ID, err)
	}
	parsed, err := x509.ParsePKCS8PrivateKey(der)
	if err != nil {
		return nil, fmt.Errorf("signing key %s: %w", k.ID, err)
	}
	priv, ok := parsed.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("signing key %s: not a signing key", k.ID)
	}
	alg := jose.SignatureAlgorithm(k.Algorithm)
	opts := (&jose.SignerOptions{}).WithType("JWT").WithHeader("kid", k.ID)
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: alg, Key: priv}, opts)
	if err != nil {
		return nil, fmt.Errorf("signing key %s: %w", k.ID, err)
	}
	return &signingKey{kid: k.ID, alg: alg, signer: signer, priv: priv}, nil
}

func currentOf(ks []store.SigningKey) *store.SigningKey {
	for i := range ks {
		if ks[i].RetiredAt.IsZero() {
			return &ks[i]
		}
	}
	return nil
}

func aad(kid string) []byte { return []byte("signing-key:" + kid) }

// Opens reports whether key opens the private part of k, a stored signing
// key: whether key is the master key it was sealed with.
func Opens(key *crypt.Key, k *store.SigningKey) bool {
	_, err := key.Open(k.PrivateEnc, aad(k.ID))
	return err == nil
}

func generate(alg string) (crypto.Signer, error) {
	switch alg {
	case "RS256":
		return rsa.GenerateKey(rand.Reader, 2048)
	case "ES256":
		return ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	}
	return nil, fmt.Errorf("keys: unsupported signing algorithm %q (use RS256 or ES256)", alg)
}
