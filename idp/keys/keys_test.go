package keys

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sort"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/kamera-id/idp/idp/crypt"
	"github.com/kamera-id/idp/idp/store"
)

// keyStore keeps signing keys in memory; the rest of store.Store is not
// used by the manager.
type keyStore struct {
	store.Store
	mu     sync.Mutex
	keys   []store.SigningKey
	reads  int // ListSigningKeys calls
	checks int // CurrentSigningKeyID calls
}

func (s *keyStore) CurrentSigningKeyID(context.Context) (string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.checks++
	for _, k := range s.keys {
		if k.RetiredAt.IsZero() {
			return k.ID, nil
		}
	}
	return "", store.ErrNotFound
}

func (s *keyStore) ListSigningKeys(context.Context) ([]store.SigningKey, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.reads++
	out := append([]store.SigningKey(nil), s.keys...)
	sort.Slice(out, func(i, j int) bool { return out[i].CreatedAt.After(out[j].CreatedAt) })
	return out, nil
}

func (s *keyStore) AddSigningKey(_ context.Context, k *store.SigningKey, now time.Time, sameAlgorithm bool) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if cur := currentOf(s.keys); sameAlgorithm && cur != nil && cur.Algorithm != k.Algorithm {
		return store.ErrOtherAlgorithm
	}
	for i := range s.keys {
		if s.keys[i].RetiredAt.IsZero() {
			s.keys[i].RetiredAt = now
		}
	}
	s.keys = append(s.keys, *k)
	return nil
}

func (s *keyStore) DeleteSigningKeysRetiredBefore(_ context.Context, t time.Time) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	kept := s.keys[:0]
	for _, k := range s.keys {
		if k.RetiredAt.IsZero() || !k.RetiredAt.Before(t) {
			kept = append(kept, k)
		}
	}
	n := len(s.keys) - len(kept)
	s.keys = kept
	return n, nil
}

type clock struct{ t time.Time }

func (c *clock) Now() time.Time { return c.t }

func newManager(t *testing.T, st store.Store, alg string, c *clock) *Manager {
	k, err := crypt.ParseKey(base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{3}, 32)))
	if err != nil {
		t.Fatal(err)
	}
	m := NewManager(ManagerConfig{Store: st, Key: k, Algorithm: alg, Now: c.Now, KeepRetired: time.Hour})
	if err := m.Ensure(context.Background()); err != nil {
		t.Fatal(err)
	}
	return m
}

func verify(t *testing.T, m *Manager, token string) string {
	t.Helper()
	ctx := context.Background()
	jws, err := jose.ParseSignedCompact(token, []jose.SignatureAlgorithm{jose.RS256, jose.ES256})
	if err != nil {
		t.Fatal(err)
	}
	h := jws.Signatures[0].Header
	if h.ExtraHeaders["typ"] != "JWT" {
		t.Fatalf("typ = %v", h.ExtraHeaders["typ"])
	}
	pub, err := m.PublicKey(ctx, h.KeyID)
	if err != nil {
		t.Fatal(err)
	}
	payload, err := jws.Verify(pub)
	if err != nil {
		t.Fatal(err)
	}
	return string(payload)
}

func TestSignAndRotate(t *testing.T) {
	ctx := context.Background()
	c := &clock{t: time.Unix(1_700_000_000, 0)}
	st := &keyStore{}
	m := newManager(t, st, "RS256", c)
	if len(st.keys) != 1 || bytes.Contains(st.keys[0].PrivateEnc, []byte("PRIVATE")) {
		t.Fatalf("keys after Ensure: %d", len(st.keys))
	}
	tok, err := m.Sign(ctx, []byte(`{"a":1}`), map[string]any{"typ": "JWT"})
	if err != nil {
		t.Fatal(err)
	}
	if verify(t, m, tok) != `{"a":1}` {
		t.Fatal("payload")
	}
	first, _ := m.Current(ctx)

	// A second instance on the same store reuses the key; Ensure is idempotent.
	m2 := newManager(t, st, "RS256", c)
	if k, _ := m2.Current(ctx); k != first || len(st.keys) != 1 {
		t.Fatalf("second instance made a new key")
	}

	second, err := m.Rotate(ctx)
	if err != nil || second == first {
		t.Fatalf("Rotate = %s, %v", second, err)
	}
	var set jose.JSONWebKeySet
	b, _ := m.JWKS(ctx)
	if err := json.Unmarshal(b, &set); err != nil || len(set.Keys) != 2 {
		t.Fatalf("JWKS after rotation: %s %v", b, err)
	}
	for _, k := range set.Keys {
		if !k.IsPublic() {
			t.Fatal("private key in JWKS")
		}
	}
	// The other instance still verifies old tokens, and learns the new kid
	// (reading the keys again for it no sooner than unknownKidReload after
	// its last read).
	verify(t, m2, tok)
	tok2, _ := m.Sign(ctx, []byte(`{}`), nil)
	c.t = c.t.Add(unknownKidReload)
	verify(t, m2, tok2)

	// Once the retired key outlived every token it signed, it goes.
	c.t = c.t.Add(2 * time.Hour)
	if _, err := m.Rotate(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := m.PublicKey(ctx, first); !errors.Is(err, ErrUnknownKey) {
		t.Fatalf("expired key still published: %v", err)
	}
	if _, err := m.PublicKey(ctx, second); err != nil {
		t.Fatalf("just-retired key gone: %v", err)
	}
}

// TestUnknownKidReload: a kid not known here makes the manager read the
// keys again (another instance may have rotated), but at most once a
// second, however many requests name unknown kids at once.
func TestUnknownKidReload(t *testing.T) {
	ctx := context.Background()
	c := &clock{t: time.Unix(1_700_000_000, 0)}
	st := &keyStore{}
	m := newManager(t, st, "RS256", c)
	if _, err := m.JWKS(ctx); err != nil { // the keys are read once here
		t.Fatal(err)
	}
	reads := func() int { st.mu.Lock(); defer st.mu.Unlock(); return st.reads }
	before := reads()

	var wg sync.WaitGroup
	for i := range 50 {
		wg.Go(func() {
			if _, err := m.PublicKey(ctx, fmt.Sprint("forged-", i)); !errors.Is(err, ErrUnknownKey) {
				t.Errorf("PublicKey(forged kid): %v, want ErrUnknownKey", err)
			}
		})
	}
	wg.Wait()
	if n := reads() - before; n != 0 {
		t.Fatalf("%d store reads for unknown kids within a second of the last read, want 0", n)
	}

	c.t = c.t.Add(unknownKidReload)
	for i := range 50 {
		wg.Go(func() { _, _ = m.PublicKey(ctx, fmt.Sprint("forged-again-", i)) })
	}
	wg.Wait()
	if n := reads() - before; n != 1 {
		t.Fatalf("%d store reads for 50 unknown kids a second later, want 1", n)
	}

	// A key another instance made is found by that one read.
	other := newManager(t, st, "RS256", c)
	kid, err := other.Rotate(ctx)
	if err != nil {
		t.Fatal(err)
	}
	c.t = c.t.Add(unknownKidReload)
	if _, err := m.PublicKey(ctx, kid); err != nil {
		t.Fatalf("key rotated on another instance: %v", err)
	}
}

func TestAlgorithms(t *testing.T) {
	c := &clock{t: time.Unix(1_700_000_000, 0)}
	st := &keyStore{}
	m := newManager(t, st, "RS256", c)
	pub, _ := m.PublicKey(context.Background(), st.keys[0].ID)
	if _, ok := pub.(*rsa.PublicKey); !ok {
		t.Fatalf("RS256 key is %T", pub)
	}
	// Switching the configured algorithm rotates to a key of that kind.
	m = newManager(t, st, "ES256", c)
	kid, _ := m.Current(context.Background())
	pub, _ = m.PublicKey(context.Background(), kid)
	if _, ok := pub.(*ecdsa.PublicKey); !ok {
		t.Fatalf("ES256 key is %T", pub)
	}
	tok, _ := m.Sign(context.Background(), []byte(`{"b":2}`), nil)
	if verify(t, m, tok) != `{"b":2}` {
		t.Fatal("ES256 payload")
	}
	if _, err := generate("HS256"); err == nil {
		t.Fatal("HS256 accepted")
	}
}

// TestRotateKeepsTheAlgorithm: `idp keys rotate` run without the servers'
// IDP_SIGNING_ALG makes no key of another algorithm current (the servers
// would go on signing with their algorithm's key, retired, until it left
// the JWKS); with it, it rotates.
func TestRotateKeepsTheAlgorithm(t *testing.T) {
	ctx := context.Background()
	c := &clock{t: time.Unix(1_700_000_000, 0)}
	st := &keyStore{}
	server := newManager(t, st, "ES256", c)
	before, _ := server.Current(ctx)
	admin := NewManager(ManagerConfig{Store: st, Key: server.cfg.Key, Algorithm: "RS256", Now: c.Now, KeepRetired: time.Hour})
	if kid, err := admin.Rotate(ctx); !errors.Is(err, ErrOtherAlgorithm) || kid != "" {
		t.Fatalf("Rotate with RS256 while the current key is ES256 = %q, %v; want ErrOtherAlgorithm", kid, err)
	}
	if after, _ := server.Current(ctx); after != before || len(st.keys) != 1 {
		t.Fatalf("refused rotation changed the keys: current %s, was %s; %d keys", after, before, len(st.keys))
	}
	c.t = c.t.Add(time.Minute)
	same := NewManager(ManagerConfig{Store: st, Key: server.cfg.Key, Algorithm: "ES256", Now: c.Now, KeepRetired: time.Hour})
	kid, err := same.Rotate(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if signing, _ := server.Signing(ctx); signing != kid {
		t.Fatalf("the server signs with %s after the rotation, want %s", signing, kid)
	}
}

// TestRollingAlgorithmChange: while instances change IDP_SIGNING_ALG one
// by one, one still on the old algorithm signs with its key, retired by
// the first new instance, while an ID token it signs would expire before
// the key leaves the JWKS; after that, with the current key.
func TestRollingAlgorithmChange(t *testing.T) {
	ctx := context.Background()
	c := &clock{t: time.Unix(1_700_000_000, 0)}
	st := &keyStore{}
	k, _ := crypt.ParseKey(base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{3}, 32)))
	// As the provider has it: published an ID token's lifetime and 10
	// minutes more; the set read again every 30 s.
	old := NewManager(ManagerConfig{Store: st, Key: k, Algorithm: "RS256", Now: c.Now,
		KeepRetired: 70 * time.Minute, TokenTTL: time.Hour})
	if err := old.Ensure(ctx); err != nil {
		t.Fatal(err)
	}
	oldKid, _ := old.Current(ctx)
	newer := newManager(t, st, "ES256", c)
	newKid, _ := newer.Current(ctx)
	if newKid == oldKid {
		t.Fatal("the ES256 instance made no key of its own")
	}
	retired := c.t
	signedWith := func(when string, want string) {
		t.Helper()
		tok, err := old.Sign(ctx, []byte(`{"a":1}`), nil)
		if err != nil {
			t.Fatal(err)
		}
		jws, err := jose.ParseSignedCompact(tok, []jose.SignatureAlgorithm{jose.RS256, jose.ES256})
		if err != nil {
			t.Fatal(err)
		}
		if kid := jws.Signatures[0].Header.KeyID; kid != want {
			t.Fatalf("%s: the RS256 instance signs with %s, want %s", when, kid, want)
		}
		if verify(t, newer, tok) != `{"a":1}` {
			t.Fatalf("%s: payload", when)
		}
	}
	signedWith("at the change", oldKid)
	// A token signed now, and until the next read 30 s later, expires at
	// most at retired+70m: when the key leaves the JWKS.
	c.t = retired.Add(10*time.Minute - 30*time.Second)
	signedWith("9m30s after the change", oldKid)
	c.t = c.t.Add(31 * time.Second) // the set is read again
	signedWith("past 9m30s", newKid)
}

func BenchmarkSign(b *testing.B) {
	for _, alg := range []string{"RS256", "ES256"} {
		b.Run(alg, func(b *testing.B) {
			k, _ := crypt.ParseKey(base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{3}, 32)))
			m := NewManager(ManagerConfig{Store: &keyStore{}, Key: k, Algorithm: alg, KeepRetired: time.Hour})
			if err := m.Ensure(context.Background()); err != nil {
				b.Fatal(err)
			}
			payload := []byte(`{"iss":"http://localhost:8080","sub":"u","aud":["c"]}`)
			for b.Loop() {
				if _, err := m.Sign(context.Background(), payload, nil); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// TestRotationCurrentAtOnce: a key rotated through one instance (or by
// `idp keys rotate`) is current at once on every instance sharing the
// store: the next signature anywhere uses it and every JWKS serves it, well
// before their caches would expire; tokens signed before verify everywhere.
func TestRotationCurrentAtOnce(t *testing.T) {
	ctx := context.Background()
	c := &clock{t: time.Unix(1_700_000_000, 0)}
	st := &keyStore{}
	a := newManager(t, st, "RS256", c)
	b := newManager(t, st, "RS256", c)
	kidOf := func(tok string) string {
		jws, err := jose.ParseSignedCompact(tok, []jose.SignatureAlgorithm{jose.RS256})
		if err != nil {
			t.Fatal(err)
		}
		return jws.Signatures[0].Header.KeyID
	}
	published := func(m *Manager) []string {
		t.Helper()
		var set jose.JSONWebKeySet
		j, err := m.JWKS(ctx)
		if err != nil || json.Unmarshal(j, &set) != nil {
			t.Fatalf("JWKS: %v %s", err, j)
		}
		var kids []string
		for _, k := range set.Keys {
			kids = append(kids, k.KeyID)
		}
		return kids
	}
	first, _ := a.Signing(ctx)
	before, _ := b.Sign(ctx, []byte(`{}`), nil)
	if kid := kidOf(before); kid != first || len(published(b)) != 1 {
		t.Fatalf("before the rotation: b signs with %s, want %s, and publishes %v", kid, first, published(b))
	}
	c.t = c.t.Add(time.Second) // well within both caches' lifetime
	second, err := a.Rotate(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// b first: verifying through it would read the keys for the new kid.
	var signed []string
	for _, m := range []*Manager{b, a} {
		if kids := published(m); !slices.Contains(kids, first) || !slices.Contains(kids, second) {
			t.Fatalf("JWKS right after the rotation: %v, want %s and %s", kids, first, second)
		}
		if kid, _ := m.Signing(ctx); kid != second {
			t.Fatalf("signing with %s right after the rotation, want the new key %s", kid, second)
		}
		tok, err := m.Sign(ctx, []byte(`{}`), nil)
		if err != nil || kidOf(tok) != second {
			t.Fatalf("a signature right after the rotation: %v, signed with %s, want %s", err, kidOf(tok), second)
		}
		signed = append(signed, tok)
	}
	for _, tok := range append(signed, before) {
		verify(t, a, tok)
		verify(t, b, tok)
	}
	// The check is one small read a signature; the keys themselves are
	// read again only when the current key changed.
	st.mu.Lock()
	reads, checks := st.reads, st.checks
	st.mu.Unlock()
	for range 10 {
		if _, err := b.Sign(ctx, []byte(`{}`), nil); err != nil {
			t.Fatal(err)
		}
	}
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.reads != reads || st.checks != checks+10 {
		t.Errorf("10 signatures with the current key unchanged: %d reads of the keys (want 0), %d checks (want 10)",
			st.reads-reads, st.checks-checks)
	}
}

// TestCheckHangBacksOff: a check of the current key that hangs is given up
// after checkWait, and the store is not tried again for reloadRetry from
// the end of the hang (not its start: a hang as long as reloadRetry would
// otherwise make the next signature wait on the store again).
func TestCheckHangBacksOff(t *testing.T) {
	c, st, m, _ := hangingManager(t)
	st.onHang = func() { c.t = c.t.Add(10 * time.Second) } // the read hangs for 10 s by the clock
	// (The context ends only so that a manager that waits on the store for
	// longer than checkWait fails the test rather than hang it.)
	ctx, cancel := context.WithTimeout(context.Background(), 5*checkWait)
	defer cancel()
	if _, err := m.Sign(ctx, []byte(`{}`), nil); err != nil || ctx.Err() != nil {
		t.Fatalf("a signature while the check hangs: %v, its caller's deadline passed %v", err, ctx.Err() != nil)
	}
	c.t = c.t.Add(reloadRetry - time.Second)
	if _, err := m.Sign(ctx, []byte(`{}`), nil); err != nil {
		t.Fatal(err)
	}
	if n := st.hung.Load(); n != 1 {
		t.Fatalf("%d hung reads, want 1: the store was tried again within reloadRetry of the hang's end", n)
	}
}

// TestJWKSReloadBounded: a JWKS request checks the store's current key,
// but waits on a hanging store for jwksReload at most, then serves the
// cached set; and keys that cannot be read (a key sealed with another
// master key) are tried again only after reloadRetry, not on every
// request.
func TestJWKSReloadBounded(t *testing.T) {
	c, st, m, want := hangingManager(t)
	c.t = c.t.Add(2 * time.Second)
	ctx, cancel := context.WithTimeout(context.Background(), 10*jwksReload)
	defer cancel()
	if j, err := m.JWKS(ctx); err != nil || !bytes.Equal(j, want) || ctx.Err() != nil {
		t.Fatalf("JWKS while the store hangs: %v, the cached set %v, its caller's deadline passed %v", err, bytes.Equal(j, want), ctx.Err() != nil)
	}
	st.hang.Store(false)

	// A key this manager cannot open: one read per reloadRetry, however
	// many requests.
	other, _ := crypt.ParseKey(base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{4}, 32)))
	elsewhere := &keyStore{}
	c.t = c.t.Add(time.Minute)
	if err := NewManager(ManagerConfig{Store: elsewhere, Key: other, Now: c.Now, KeepRetired: time.Hour}).Ensure(context.Background()); err != nil {
		t.Fatal(err)
	}
	st.mu.Lock()
	st.keys = append(st.keys, elsewhere.keys...) // the newest key, sealed with another master key
	st.mu.Unlock()
	c.t = c.t.Add(reloadRetry)
	st.mu.Lock()
	before := st.reads
	st.mu.Unlock()
	for range 50 {
		if j, err := m.JWKS(context.Background()); err != nil || !bytes.Equal(j, want) {
			t.Fatalf("JWKS with an unreadable new key: %v %s, want the cached set", err, j)
		}
		c.t = c.t.Add(100 * time.Millisecond)
	}
	st.mu.Lock()
	reads := st.reads - before
	st.mu.Unlock()
	if reads != 1 {
		t.Errorf("%d reads of the keys for 50 JWKS requests over 5s, want 1", reads)
	}
}

// hangingStore is a keyStore whose reads, once hang is set, block until
// their context ends (a database that hangs rather than refuses), telling
// entered each time one starts.
type hangingStore struct {
	*keyStore
	hang    atomic.Bool
	entered chan struct{}
	hung    atomic.Int32 // reads that hung
	onHang  func()       // called as a read starts to hang, when set
}

func (s *hangingStore) ListSigningKeys(ctx context.Context) ([]store.SigningKey, error) {
	if !s.hang.Load() {
		return s.keyStore.ListSigningKeys(ctx)
	}
	return nil, s.hangUntil(ctx)
}

func (s *hangingStore) CurrentSigningKeyID(ctx context.Context) (string, error) {
	if !s.hang.Load() {
		return s.keyStore.CurrentSigningKeyID(ctx)
	}
	return "", s.hangUntil(ctx)
}

func (s *hangingStore) hangUntil(ctx context.Context) error {
	s.hung.Add(1)
	if s.onHang != nil {
		s.onHang()
	}
	select {
	case s.entered <- struct{}{}:
	default:
	}
	<-ctx.Done()
	return ctx.Err()
}

// hangingManager is a manager whose keys were read, with the JWKS it
// served then, on a store that hangs from now on.
func hangingManager(t *testing.T) (*clock, *hangingStore, *Manager, []byte) {
	t.Helper()
	c := &clock{t: time.Unix(1_700_000_000, 0)}
	st := &hangingStore{keyStore: &keyStore{}, entered: make(chan struct{}, 10)}
	m := newManager(t, st, "RS256", c)
	want, err := m.JWKS(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	st.hang.Store(true)
	return c, st, m, want
}

// TestHangingStoreReload: while the store hangs, a reload that failed is
// not tried again for reloadRetry: the calls after it use the cached set at
// once instead of each waiting out its own deadline on the store; and a
// call while another caller's reload is in progress uses the cached set at
// once instead of queueing behind it.
func TestHangingStoreReload(t *testing.T) {
	c, st, m, want := hangingManager(t)
	c.t = c.t.Add(31 * time.Second) // the cache has expired

	// The first call after the expiry tries the store and, after checkWait,
	// falls back to the cached set.
	got := make(chan []byte, 1)
	go func() { j, _ := m.JWKS(context.Background()); got <- j }()
	<-st.entered
	if j := <-got; !bytes.Equal(j, want) {
		t.Fatalf("JWKS when the reload failed: %s", j)
	}

	// The next calls, within reloadRetry of that failure, answer at once
	// from the cache without trying the store. (Their contexts end in 2 s
	// only so that a manager that does wait fails the test, not hang it.)
	call := func(name string) {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		start := time.Now()
		var err error
		switch name {
		case "JWKS":
			var j []byte
			if j, err = m.JWKS(ctx); err == nil && !bytes.Equal(j, want) {
				t.Errorf("JWKS: %s, want the cached set", j)
			}
		case "Sign":
			_, err = m.Sign(ctx, []byte(`{}`), nil)
		case "Signing":
			_, err = m.Signing(ctx)
		}
		if err != nil || ctx.Err() != nil {
			t.Errorf("%s while the store hangs: %v after %v, want the cached set at once", name, err, time.Since(start))
		}
	}
	failed := c.t
	for _, since := range []time.Duration{0, time.Second, reloadRetry - time.Second} {
		c.t = failed.Add(since)
		for _, name := range []string{"JWKS", "Sign", "Signing"} {
			call(name)
		}
	}
	if n := st.hung.Load(); n != 1 {
		t.Fatalf("%d reads of the hanging store within reloadRetry of the failure, want 1 (the first)", n)
	}

	// Once reloadRetry has passed one caller tries again; meanwhile the
	// others use the cached set rather than wait for the store (a JWKS
	// request waits for that caller's read, checkWait at most).
	c.t = failed.Add(reloadRetry)
	go func() { j, _ := m.JWKS(context.Background()); got <- j }()
	<-st.entered
	for _, name := range []string{"JWKS", "Sign", "Signing"} {
		call(name)
	}
	if j := <-got; !bytes.Equal(j, want) {
		t.Fatalf("JWKS when the second reload failed: %s", j)
	}
	if n := st.hung.Load(); n != 2 {
		t.Fatalf("%d reads of the hanging store, want 2", n)
	}

	// Without a cached set a caller waits for another's read, but gives up
	// when its own context ends.
	k, _ := crypt.ParseKey(base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{3}, 32)))
	cold := NewManager(ManagerConfig{Store: st, Key: k, Now: c.Now, KeepRetired: time.Hour})
	third, cancel3 := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { _, err := cold.JWKS(third); errc <- err }()
	<-st.entered
	ended, cancelEnded := context.WithCancel(context.Background())
	cancelEnded()
	if _, err := cold.JWKS(ended); !errors.Is(err, context.Canceled) {
		t.Errorf("JWKS with an ended context while another caller reads the keys: %v, want context.Canceled", err)
	}
	cancel3()
	if err := <-errc; err == nil {
		t.Errorf("JWKS without a cached set when the read failed: no error")
	}

	// The store is back: after reloadRetry the keys are read again.
	st.hang.Store(false)
	c.t = c.t.Add(reloadRetry)
	reads := func() int { st.mu.Lock(); defer st.mu.Unlock(); return st.reads }
	before := reads()
	call("JWKS")
	if reads() != before+1 {
		t.Fatalf("the keys were not read again once the store was back")
	}
}

// TestJWKSWaitsForCheck: a JWKS request that comes while another caller
// holds the reload (a signature's check of the current key, begun before a
// rotation on another instance) waits for it and checks again, rather than
// serve the set without the key the other instance already signs with. In
// a synctest bubble, so that "the request is waiting" is known, not hoped.
func TestJWKSWaitsForCheck(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx := context.Background()
		c := &clock{t: time.Unix(1_700_000_000, 0)}
		st := &keyStore{}
		a := newManager(t, st, "RS256", c)
		b := newManager(t, st, "RS256", c)
		b.reload <- struct{}{} // another caller's check, under way
		second, err := a.Rotate(ctx)
		if err != nil {
			t.Fatal(err)
		}
		published := make(chan []byte, 1)
		go func() {
			j, err := b.JWKS(ctx)
			if err != nil {
				t.Error(err)
			}
			published <- j
		}()
		synctest.Wait() // the request waits for the reload (or has answered already)
		<-b.reload      // the other caller is done
		var set jose.JSONWebKeySet
		if j := <-published; json.Unmarshal(j, &set) != nil || len(set.Key(second)) == 0 {
			t.Fatalf("b's JWKS while a's new key %s signs: %s", second, j)
		}
	})
}

// TestCheckByCallerThatLeft: a check given up because its caller left (a
// client that hung up) is no failure of the store: the next caller checks.
func TestCheckByCallerThatLeft(t *testing.T) {
	c := &clock{t: time.Unix(1_700_000_000, 0)}
	st := &hangingStore{keyStore: &keyStore{}, entered: make(chan struct{}, 10)}
	m := newManager(t, st, "RS256", c)
	st.hang.Store(true)
	left, cancel := context.WithCancel(context.Background())
	go func() { <-st.entered; cancel() }()
	if _, err := m.Sign(left, []byte(`{}`), nil); err != nil {
		t.Fatal(err)
	}
	st.hang.Store(false)
	st.mu.Lock()
	checks := st.checks
	st.mu.Unlock()
	if _, err := m.Sign(context.Background(), []byte(`{}`), nil); err != nil {
		t.Fatal(err)
	}
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.checks != checks+1 {
		t.Errorf("after a caller left during a check, the next signature checked %d times, want 1", st.checks-checks)
	}
}

// slowStore is a keyStore whose CurrentSigningKeyID, while slow is set,
// answers after two seconds (in a synctest bubble, of its clock), or when
// its caller's context ends.
// ctxStore fails every read whose context has ended, as a database
// driver does.
type ctxStore struct{ *keyStore }

func (s ctxStore) ListSigningKeys(ctx context.Context) ([]store.SigningKey, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	return s.keyStore.ListSigningKeys(ctx)
}

func (s ctxStore) CurrentSigningKeyID(ctx context.Context) (string, error) {
	if err := ctx.Err(); err != nil {
		return "", err
	}
	return s.keyStore.CurrentSigningKeyID(ctx)
}

// TestCallersThatLeftDoNotFreezeKeys: requests whose client hung up, one
// after another, do not keep an instance from reading a rotation made on
// another: a reload that failed because its caller left is no failure of
// the store, after which no caller would read the keys for reloadRetry.
// (A client aborting JWKS requests could keep an instance signing with a
// retired key, and serving a JWKS without the others' new key.)
func TestCallersThatLeftDoNotFreezeKeys(t *testing.T) {
	ctx := context.Background()
	c := &clock{t: time.Unix(1_700_000_000, 0)}
	st := ctxStore{&keyStore{}}
	a := newManager(t, st, "RS256", c)
	b := newManager(t, st, "RS256", c)
	left, cancel := context.WithCancel(ctx)
	cancel()
	c.t = c.t.Add(time.Minute) // past CacheTTL: the next caller reads the keys again
	kid, err := a.Rotate(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, call := range []func(context.Context) error{
		func(ctx context.Context) error { _, err := b.Sign(ctx, []byte(`{}`), nil); return err },
		func(ctx context.Context) error { _, err := b.JWKS(ctx); return err },
		func(ctx context.Context) error { _, err := b.PublicKey(ctx, kid); return err },
	} {
		_ = call(left)
	}
	if signing, err := b.Signing(ctx); err != nil || signing != kid {
		t.Fatalf("after callers that left, b signs with %s (%v), want %s, rotated on a", signing, err, kid)
	}
}

type slowStore struct {
	*keyStore
	slow atomic.Bool
}

func (s *slowStore) CurrentSigningKeyID(ctx context.Context) (string, error) {
	if s.slow.Load() {
		select {
		case <-time.After(2 * time.Second):
		case <-ctx.Done():
			return "", ctx.Err()
		}
	}
	return s.keyStore.CurrentSigningKeyID(ctx)
}

// TestJWKSOwnDeadline: a JWKS request whose own time runs out during its
// check, having waited for another caller's first, is no failure of the
// store: the next request checks, and serves a key made meanwhile.
func TestJWKSOwnDeadline(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx := context.Background()
		c := &clock{t: time.Unix(1_700_000_000, 0)}
		st := &slowStore{keyStore: &keyStore{}}
		a := newManager(t, st, "RS256", c)
		b := newManager(t, st, "RS256", c)
		st.slow.Store(true)
		b.reload <- struct{}{} // another caller's check, under way
		done := make(chan error, 1)
		go func() { _, err := b.JWKS(ctx); done <- err }()
		time.Sleep(jwksReload - checkWait/2) // the request waits most of its time
		<-b.reload
		if err := <-done; err != nil { // its own check had half of checkWait
			t.Fatal(err)
		}
		st.slow.Store(false)
		second, err := a.Rotate(ctx)
		if err != nil {
			t.Fatal(err)
		}
		var set jose.JSONWebKeySet
		if j, err := b.JWKS(ctx); err != nil || json.Unmarshal(j, &set) != nil || len(set.Key(second)) == 0 {
			t.Fatalf("b's JWKS after a request ran out of time: %v %s, want the new key %s", err, j, second)
		}
	})
}
