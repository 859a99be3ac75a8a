package oidc

import (
	"context"
	"errors"
	"net/url"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/ory/fosite"

	"github.com/kamera-id/idp/idp/store"
	"github.com/kamera-id/idp/idp/testenv"
)

// countingStore counts the token reads that reach the store.
type countingStore struct {
	store.Store
	reads, withUser int
}

func (c *countingStore) GetToken(ctx context.Context, kind, signature string) (*store.TokenRecord, error) {
	c.reads++
	return c.Store.GetToken(ctx, kind, signature)
}

func (c *countingStore) GetTokenWithUser(ctx context.Context, kind, signature string) (*store.TokenRecord, *store.User, error) {
	c.withUser++
	return c.Store.GetTokenWithUser(ctx, kind, signature)
}

// Within a userinfo request an access token is read with its user, in one
// store call; elsewhere, and for other kinds, without.
func TestAccessTokenReadWithItsUser(t *testing.T) {
	ctx := t.Context()
	cs := &countingStore{Store: testenv.SQLiteStore(t)}
	if err := cs.CreateClient(ctx, &store.Client{ID: "c1", Name: "C1", RedirectURIs: []string{"http://127.0.0.1/cb"}}); err != nil {
		t.Fatal(err)
	}
	u := &store.User{ID: "user-1", Email: "user1@example.com", Name: "User One", PasswordHash: "x",
		CreatedAt: time.Now().Truncate(time.Second), UpdatedAt: time.Now().Truncate(time.Second)}
	if err := cs.CreateUser(ctx, u); err != nil {
		t.Fatal(err)
	}
	s := NewStorage(cs)
	sess := NewSession()
	sess.Subject = u.ID
	issued := &fosite.Request{ID: "req-1", RequestedAt: time.Now().Truncate(time.Second), Client: client{Client: &store.Client{ID: "c1"}},
		GrantedScope: fosite.Arguments{"openid"}, Form: url.Values{}, Session: sess}
	if err := s.CreateAccessTokenSession(ctx, "at-1", issued); err != nil {
		t.Fatal(err)
	}
	if err := s.CreateRefreshTokenSession(ctx, "rt-1", "at-1", issued); err != nil {
		t.Fatal(err)
	}

	mctx, memo := withUserMemo(ctx)
	if _, err := s.GetAccessTokenSession(mctx, "at-1", NewSession()); err != nil {
		t.Fatal(err)
	}
	if cs.withUser != 1 || cs.reads != 0 || memo.user == nil || memo.user.ID != u.ID || memo.user.Email != u.Email {
		t.Fatalf("in a userinfo request: %d joined reads, %d plain reads, user %+v", cs.withUser, cs.reads, memo.user)
	}
	if _, err := s.GetRefreshTokenSession(mctx, "rt-1", NewSession()); err != nil {
		t.Fatal(err)
	}
	if _, err := s.GetAccessTokenSession(ctx, "at-1", NewSession()); err != nil {
		t.Fatal(err)
	}
	if cs.withUser != 1 || cs.reads != 2 {
		t.Fatalf("a refresh token, and an access token outside userinfo: %d joined reads, %d plain reads", cs.withUser, cs.reads)
	}
}

// A token request reads its code once, and every reader gets a request of
// its own: what fosite changes in one is not seen by the next. Read here
// by another instance than the one that issued the code, which has no
// record of it (issuedCodes: TestIssuedCodeNotRead).
func TestCodeReadOncePerTokenRequest(t *testing.T) {
	ctx := t.Context()
	cs := &countingStore{Store: testenv.SQLiteStore(t)}
	if err := cs.CreateClient(ctx, &store.Client{ID: "c1", Name: "C1", RedirectURIs: []string{"http://127.0.0.1/cb"}}); err != nil {
		t.Fatal(err)
	}
	now := time.Now().Truncate(time.Second)
	if err := cs.CreateUser(ctx, &store.User{ID: "user-1", Email: "user1@example.com", CreatedAt: now}); err != nil {
		t.Fatal(err)
	}
	if err := cs.CreateSession(ctx, &store.Session{TokenHash: []byte("h"), ID: "sid-1", UserID: "user-1",
		CreatedAt: now, LastSeen: now, ExpiresAt: now.Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	if err := cs.PutConsent(ctx, "user-1", "c1", []string{"openid", "email"}, now); err != nil {
		t.Fatal(err)
	}
	s := NewStorage(cs)
	sess := NewSession()
	sess.Subject, sess.SID = "user-1", "sid-1"
	sess.SetExpiresAt(fosite.AuthorizeCode, time.Now().Add(time.Minute).Truncate(time.Second))
	issued := &fosite.Request{
		ID: "req-1", RequestedAt: time.Now().Truncate(time.Second), Client: client{Client: &store.Client{ID: "c1"}},
		RequestedScope: fosite.Arguments{"openid", "email"}, GrantedScope: fosite.Arguments{"openid", "email"},
		Form: url.Values{"redirect_uri": {"http://127.0.0.1/cb"}, "code_challenge": {"challenge"}}, Session: sess,
	}
	if err := NewStorage(cs).CreateAuthorizeCodeSession(ctx, "sig-1", issued); err != nil {
		t.Fatal(err)
	}

	ctx = withCodeMemo(ctx)
	into := NewSession()
	r1, err := s.GetAuthorizeCodeSession(ctx, "sig-1", into)
	if err != nil {
		t.Fatal(err)
	}
	if into.Subject != "user-1" || into.SID != "sid-1" {
		t.Fatalf("session not decoded: subject %q sid %q", into.Subject, into.SID)
	}
	// What fosite does between reads: its own scopes, form and the new
	// tokens' expiry.
	r1.GrantScope("offline_access")
	r1.GetRequestForm().Set("redirect_uri", "http://changed.example/")
	at := time.Now().Add(time.Hour).Truncate(time.Second)
	into.SetExpiresAt(fosite.AccessToken, at)

	r2, err := s.GetPKCERequestSession(ctx, "sig-1", into)
	if err != nil {
		t.Fatal(err)
	}
	if got := r2.GetGrantedScopes(); !slices.Equal(got, fosite.Arguments{"openid", "email"}) {
		t.Errorf("second read's granted scopes %v: the first read's change leaked into it", got)
	}
	if got := r2.GetRequestForm().Get("redirect_uri"); got != "http://127.0.0.1/cb" {
		t.Errorf("second read's redirect_uri %q: the first read's change leaked into it", got)
	}
	if got := into.GetExpiresAt(fosite.AccessToken); !got.Equal(at) {
		t.Errorf("access token expiry %v after the second read, want %v kept", got, at)
	}
	// Another session is filled from the stored one.
	other := NewSession()
	if _, err := s.GetAuthorizeCodeSession(ctx, "sig-1", other); err != nil {
		t.Fatal(err)
	}
	if other.Subject != "user-1" || !other.GetExpiresAt(fosite.AccessToken).IsZero() {
		t.Errorf("another session: subject %q, access token expiry %v", other.Subject, other.GetExpiresAt(fosite.AccessToken))
	}
	if cs.reads != 1 {
		t.Errorf("%d reads of the code reached the store in one token request, want 1", cs.reads)
	}

	// A new token request reads it again, and sees it spent.
	if err := s.InvalidateAuthorizeCodeSession(ctx, "sig-1"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.GetAuthorizeCodeSession(withCodeMemo(t.Context()), "sig-1", NewSession()); err != fosite.ErrInvalidatedAuthorizeCode {
		t.Errorf("a spent code read by a new request: %v, want ErrInvalidatedAuthorizeCode", err)
	}
	if cs.reads != 2 {
		t.Errorf("%d reads of the code reached the store in two token requests, want 2", cs.reads)
	}
}

// A code is not stored in a session that has ended (since the authorize
// endpoint read it): ErrWithdrawn, which the authorize endpoint answers
// with a login.
func TestCodeInEndedSession(t *testing.T) {
	ctx := t.Context()
	st := testenv.SQLiteStore(t)
	now := time.Now().Truncate(time.Second)
	if err := st.CreateUser(ctx, &store.User{ID: "user-1", Email: "user1@example.com", CreatedAt: now}); err != nil {
		t.Fatal(err)
	}
	s := NewStorage(st)
	sess := NewSession()
	sess.Subject, sess.SID = "user-1", "sid-ended"
	issued := &fosite.Request{ID: "req-1", RequestedAt: now, Client: client{Client: &store.Client{ID: "c1"}}, Form: url.Values{}, Session: sess}
	if err := s.CreateAuthorizeCodeSession(ctx, "sig-1", issued); !errors.Is(err, ErrWithdrawn) {
		t.Fatalf("code in an ended session: %v, want ErrWithdrawn", err)
	}
	if _, err := st.GetToken(ctx, store.KindAuthorizeCode, "sig-1"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("the code was stored: %v", err)
	}
}

// TestRotatedSecretExpires: the secret a client had before its last
// rotation is offered to fosite until RotatedUntil, not after.
func TestRotatedSecretExpires(t *testing.T) {
	for _, tc := range []struct {
		until time.Time
		want  int
	}{{time.Now().Add(time.Minute), 1}, {time.Now().Add(-time.Second), 0}, {time.Time{}, 0}} {
		c := client{Client: &store.Client{ID: "c1", SecretHash: []byte{1}, RotatedSecretHash: []byte{2}, RotatedUntil: tc.until}}
		if got := c.GetRotatedHashes(); len(got) != tc.want || tc.want == 1 && got[0][0] != 2 {
			t.Errorf("rotated until %v: hashes %v, want %d", tc.until, got, tc.want)
		}
	}
}

// clientStore serves one client, counting its reads, each blocked until
// release is closed (when set).
type clientStore struct {
	store.Store
	mu      sync.Mutex
	c       store.Client
	reads   int
	release chan struct{}
}

func (s *clientStore) GetClient(_ context.Context, id string) (*store.Client, error) {
	if s.release != nil {
		<-s.release
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.reads++
	c := s.c
	return &c, nil
}

// TestRereadSecretOnceForMany: requests that need the client read again at
// once (a rotated secret, sent by several instances of the relying party)
// wait for one read and all take its result; one within the next second
// takes the cached result, and one after it reads again.
func TestRereadSecretOnceForMany(t *testing.T) {
	cs := &clientStore{c: store.Client{ID: "c1", SecretHash: []byte("new")}, release: make(chan struct{})}
	st := NewStorage(cs)
	var wg sync.WaitGroup
	got := make([][]byte, 5)
	for i := range got {
		wg.Go(func() { got[i] = st.rereadSecret("c1") })
	}
	close(cs.release)
	wg.Wait()
	for i, h := range got {
		if string(h) != "new" {
			t.Errorf("request %d got %q, want the stored secret", i, h)
		}
	}
	if cs.reads != 1 {
		t.Errorf("%d store reads for 5 requests at once, want 1", cs.reads)
	}
	st.mu.Lock()
	st.rereads["c1"] = time.Now().Add(-2 * time.Second) // a second has passed
	st.mu.Unlock()
	cs.c.SecretHash = []byte("newer")
	if h := st.rereadSecret("c1"); string(h) != "newer" || cs.reads != 2 {
		t.Errorf("a reread a second later got %q after %d reads, want newer after 2", h, cs.reads)
	}
}

// blockedClient serves every client; a read of the client blocked closes
// entered and waits until release is closed.
type blockedClient struct {
	store.Store
	blocked          string
	entered, release chan struct{}
}

func (s *blockedClient) GetClient(_ context.Context, id string) (*store.Client, error) {
	if id == s.blocked {
		close(s.entered)
		<-s.release
	}
	return &store.Client{ID: id, SecretHash: []byte("secret of " + id)}, nil
}

// TestRereadSecretPerClient: a client's reread does not wait for another
// client's.
func TestRereadSecretPerClient(t *testing.T) {
	cs := &blockedClient{blocked: "slow", entered: make(chan struct{}), release: make(chan struct{})}
	st := NewStorage(cs)
	slow := make(chan []byte)
	go func() { slow <- st.rereadSecret("slow") }()
	<-cs.entered // the slow client's reread holds its turn
	done := make(chan []byte)
	go func() { done <- st.rereadSecret("quick") }()
	select {
	case h := <-done:
		if string(h) != "secret of quick" {
			t.Errorf("the other client's reread got %q", h)
		}
	case <-time.After(10 * time.Second): // a guard against a hang, not a sleep
		t.Error("a client's reread waited for another client's")
	}
	close(cs.release)
	if h := <-slow; string(h) != "secret of slow" {
		t.Errorf("the blocked reread got %q", h)
	}
}

// issuedCodes gives each record once, not after its code's expiry, and
// keeps only the last issuedCodesMax.
func TestIssuedCodesKept(t *testing.T) {
	c := newIssuedCodes()
	now := time.Now()
	sig := func(i int) string { return "sig-" + strconv.Itoa(i) }
	for i := range issuedCodesMax + 1 {
		c.put(&store.TokenRecord{Signature: sig(i), ExpiresAt: now.Add(time.Minute)})
	}
	if _, ok := c.take(sig(0), now); ok {
		t.Error("the oldest record is still kept past issuedCodesMax")
	}
	if rec, ok := c.take(sig(issuedCodesMax), now); !ok || rec.Signature != sig(issuedCodesMax) {
		t.Errorf("the newest record: %v %v", rec, ok)
	}
	if _, ok := c.take(sig(issuedCodesMax), now); ok {
		t.Error("a record was taken twice")
	}
	if _, ok := c.take(sig(1), now.Add(time.Minute)); ok {
		t.Error("a record was taken at its code's expiry")
	}
	if len(c.recs) != issuedCodesMax-2 {
		t.Errorf("%d records kept, want %d", len(c.recs), issuedCodesMax-2)
	}
	// A record of a request with long parameters (a nonce of kilobytes) is
	// not kept: 1024 of them would be tens of megabytes.
	c.put(&store.TokenRecord{Signature: "big", ExpiresAt: now.Add(time.Minute), Data: make([]byte, issuedCodeMaxData+1)})
	if _, ok := c.take("big", now); ok {
		t.Errorf("a record of %d bytes was kept", issuedCodeMaxData+1)
	}
	c.put(&store.TokenRecord{Signature: "fits", ExpiresAt: now.Add(time.Minute), Data: make([]byte, issuedCodeMaxData)})
	if _, ok := c.take("fits", now); !ok {
		t.Errorf("a record of %d bytes was not kept", issuedCodeMaxData)
	}
}

// Outside a token request (no code memo) a code is read from the store,
// and its record stays for the token request.
func TestIssuedCodeOutsideTokenRequest(t *testing.T) {
	ctx := t.Context()
	cs := &countingStore{Store: testenv.SQLiteStore(t)}
	s := NewStorage(cs)
	now := time.Now().Truncate(time.Second)
	s.codes.put(&store.TokenRecord{Kind: store.KindAuthorizeCode, Signature: "sig-1", ExpiresAt: now.Add(time.Minute)})
	if _, err := s.GetAuthorizeCodeSession(ctx, "sig-1", NewSession()); !errors.Is(err, fosite.ErrNotFound) || cs.reads != 1 {
		t.Fatalf("outside a token request: %v after %d store reads, want the store's answer", err, cs.reads)
	}
	if _, ok := s.codes.take("sig-1", now); !ok {
		t.Fatal("the record was taken outside a token request")
	}
}

// changingClient serves the client c1 with the secret in secret; a read
// closes entered and waits until release is closed, then answers what it
// read when it began.
type changingClient struct {
	store.Store
	secret           string
	entered, release chan struct{}
}

func (s *changingClient) GetClient(_ context.Context, id string) (*store.Client, error) {
	c := &store.Client{ID: id, SecretHash: []byte(s.secret)}
	if s.entered != nil {
		close(s.entered)
		s.entered = nil
		<-s.release
	}
	return c, nil
}

// TestClientReadOlderThanChange: a read of a client begun before the
// client was changed here (ForgetClient after an update) answers its
// caller but does not fill the cache: the next caller reads the change.
func TestClientReadOlderThanChange(t *testing.T) {
	cs := &changingClient{secret: "old", entered: make(chan struct{}), release: make(chan struct{})}
	st := NewStorage(cs)
	entered := cs.entered
	read := make(chan *store.Client)
	go func() { c, _ := st.Client(context.Background(), "c1"); read <- c }()
	<-entered // the read has the old secret
	cs.secret = "new"
	st.ForgetClient("c1")
	close(cs.release)
	if c := <-read; string(c.SecretHash) != "old" {
		t.Fatalf("the read begun before the change got %q", c.SecretHash)
	}
	if c, _ := st.Client(context.Background(), "c1"); string(c.SecretHash) != "new" {
		t.Errorf("after the change, the client's secret is %q from the cache, want new", c.SecretHash)
	}

	// So with a reread of the secret (a wrong secret at the token
	// endpoint) begun before the change.
	cs = &changingClient{secret: "old", entered: make(chan struct{}), release: make(chan struct{})}
	st = NewStorage(cs)
	entered = cs.entered
	reread := make(chan []byte)
	go func() { reread <- st.rereadSecret("c1") }()
	<-entered
	cs.secret = "new"
	st.ForgetClient("c1")
	close(cs.release)
	<-reread
	if c, _ := st.Client(context.Background(), "c1"); string(c.SecretHash) != "new" {
		t.Errorf("after the change, the client's secret is %q from a reread begun before it, want new", c.SecretHash)
	}
	if h := st.rereadSecret("c1"); string(h) != "new" {
		t.Errorf("a reread after the change got %q, want new", h)
	}
}
