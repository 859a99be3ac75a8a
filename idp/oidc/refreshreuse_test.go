package oidc_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kamera-id/idp/idp/app"
	"github.com/kamera-id/idp/idp/oidc"
	"github.com/kamera-id/idp/idp/store"
	"github.com/kamera-id/idp/idp/testenv"
)

// failRevokeOnce fails the first revocation of a grant, as a dropped
// connection would.
type failRevokeOnce struct {
	store.Store
	failed atomic.Bool
}

func (s *failRevokeOnce) DeactivateTokensByRequest(ctx context.Context, requestID string, kinds ...string) error {
	if !s.failed.Swap(true) {
		return fmt.Errorf("failRevokeOnce: %w", store.ErrUnavailable)
	}
	return s.Store.DeactivateTokensByRequest(ctx, requestID, kinds...)
}

// refresh posts a refresh of token as the client.
func (e *codeEnv) refresh(token string) (int, map[string]any) {
	return e.token(url.Values{"grant_type": {"refresh_token"}, "refresh_token": {token}})
}

// TestRefreshReuseAfterFailedRevocation: a reused refresh token whose
// grant could not be revoked (the database away for a moment) still
// revokes it when the client tries again: fosite deletes the reused token
// before it revokes, and the retry found it unknown and revoked nothing.
func TestRefreshReuseAfterFailedRevocation(t *testing.T) {
	testenv.Each(t, func(t *testing.T, db testenv.Database) {
		e := newCodeEnv(t, db)
		_, body := e.exchange()
		r0, _ := body["refresh_token"].(string)
		st, body := e.refresh(r0)
		r1, _ := body["refresh_token"].(string)
		if st != http.StatusOK || r1 == "" {
			t.Fatalf("refresh: %d %v", st, body)
		}
		e.a.Provider.Storage.Store = &failRevokeOnce{Store: e.a.Provider.Storage.Store}
		if st, body := e.refresh(r0); st == http.StatusOK {
			t.Fatalf("the rotated-out token reused while revocation fails: %d %v, want an error", st, body)
		}
		if st, body := e.refresh(r0); st != http.StatusBadRequest || body["error"] != "invalid_grant" {
			t.Fatalf("the reuse again: %d %v, want invalid_grant", st, body)
		}
		if st, body := e.refresh(r1); st != http.StatusBadRequest {
			t.Errorf("the grant's refresh token after its reuse was caught: %d %v, want it revoked", st, body)
		}
	})
}

// refreshes refreshes token and fails the test unless it gets new tokens.
func (e *codeEnv) refreshes(t *testing.T, what, token string) (access, refresh string) {
	t.Helper()
	st, body := e.refresh(token)
	access, _ = body["access_token"].(string)
	refresh, _ = body["refresh_token"].(string)
	if st != http.StatusOK || access == "" || refresh == "" {
		t.Fatalf("%s: %d %v, want new tokens", what, st, body)
	}
	return access, refresh
}

// active fails the test unless token's introspection says want.
func (e *codeEnv) active(t *testing.T, what, token string, want bool) {
	t.Helper()
	if got, err := e.introspect(token); err != nil || got != want {
		t.Errorf("%s: active %v (%v), want %v", what, got, err, want)
	}
}

// TestRefreshRetryWithinGrace: with IDP_REFRESH_TOKEN_GRACE, a refresh
// token spent by a refresh whose answer was lost works again, as long as
// what that refresh issued is unused: the retry replaces it (the lost
// tokens stop working), and can itself be retried. Once the client has
// used the refresh token it was given, the spent one is a reuse again,
// and revokes the grant.
func TestRefreshRetryWithinGrace(t *testing.T) {
	testenv.Each(t, func(t *testing.T, db testenv.Database) {
		e := newCodeEnv(t, db)
		e.cfg.RefreshTokenGrace = 30 * time.Second // IDP_REFRESH_TOKEN_GRACE
		e.a = e.another(t)
		if g := e.a.Provider.Storage.RefreshGrace; g != 30*time.Second {
			t.Fatalf("IDP_REFRESH_TOKEN_GRACE=30s: the storage's grace is %s", g)
		}
		_, body := e.exchange()
		r0, _ := body["refresh_token"].(string)
		lostAccess, lostRefresh := e.refreshes(t, "refresh", r0)

		a1, r1 := e.refreshes(t, "the refresh retried", r0)
		e.active(t, "the lost answer's refresh token", lostRefresh, false)
		e.active(t, "the lost answer's access token", lostAccess, false)
		e.active(t, "the retry's access token", a1, true)

		_, r2 := e.refreshes(t, "the refresh retried again", r0)
		e.active(t, "the first retry's refresh token", r1, false)

		a3, r3 := e.refreshes(t, "the refresh token the retry gave", r2)
		if st, body := e.refresh(r0); st != http.StatusBadRequest || body["error"] != "invalid_grant" {
			t.Fatalf("the spent token after its successor was used: %d %v, want invalid_grant", st, body)
		}
		e.active(t, "the grant's refresh token after a reuse", r3, false)
		e.active(t, "the grant's access token after a reuse", a3, false)
	})
}

// TestRefreshRetryAfterGrace: a spent refresh token used again after the
// grace period, or with none configured, is a reuse: refused, and the
// grant revoked.
func TestRefreshRetryAfterGrace(t *testing.T) {
	for _, c := range []struct {
		name         string
		grace, after time.Duration
	}{{"after the grace period", 30 * time.Second, 31 * time.Second}, {"without a grace period", 0, 0}} {
		t.Run(c.name, func(t *testing.T) {
			testenv.Each(t, func(t *testing.T, db testenv.Database) {
				e := newCodeEnv(t, db)
				e.a.Provider.Storage.RefreshGrace = c.grace
				e.a.Provider.Storage.Now = func() time.Time { return time.Now().Add(c.after) }
				_, body := e.exchange()
				r0, _ := body["refresh_token"].(string)
				_, r1 := e.refreshes(t, "refresh", r0)
				if st, body := e.refresh(r0); st != http.StatusBadRequest || body["error"] != "invalid_grant" {
					t.Fatalf("the spent token again: %d %v, want invalid_grant", st, body)
				}
				e.active(t, "the grant's refresh token after a reuse", r1, false)
			})
		})
	}
}

// newGraceEnv is a codeEnv with a 30 s refresh grace period whose code
// was exchanged, with the refresh token it gave.
func newGraceEnv(t *testing.T, db testenv.Database) (*codeEnv, string) {
	t.Helper()
	e := newCodeEnv(t, db)
	e.a.Provider.Storage.RefreshGrace = 30 * time.Second
	_, body := e.exchange()
	r0, _ := body["refresh_token"].(string)
	if r0 == "" {
		t.Fatalf("exchange: %v, want a refresh token", body)
	}
	return e, r0
}

// TestRefreshLostAnswerAfterRetry: once a retry has replaced a lost
// answer, the lost answer's refresh token is a reuse (its holder may be
// whoever intercepted it): refused, and the grant revoked.
func TestRefreshLostAnswerAfterRetry(t *testing.T) {
	testenv.Each(t, func(t *testing.T, db testenv.Database) {
		e, r0 := newGraceEnv(t, db)
		_, lost := e.refreshes(t, "refresh (its answer lost)", r0)
		a2, r2 := e.refreshes(t, "the client's retry", r0)
		if st, body := e.refresh(lost); st != http.StatusBadRequest || body["error"] != "invalid_grant" {
			t.Fatalf("the lost answer's refresh token after the retry: %d %v, want invalid_grant", st, body)
		}
		e.active(t, "the retry's refresh token after the reuse", r2, false)
		e.active(t, "the retry's access token after the reuse", a2, false)
	})
}

// revoke posts an RFC 7009 revocation of token as the client.
func (e *codeEnv) revoke(token string) int {
	r := httptest.NewRequest(http.MethodPost, oidc.PathRevoke, strings.NewReader(url.Values{"token": {token}}.Encode()))
	r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	r.SetBasicAuth(e.client, e.secret)
	w := httptest.NewRecorder()
	e.a.Provider.Revoke(w, r)
	return w.Code
}

// TestRevokeRetryableRefreshToken: a spent refresh token that may still be
// retried (IDP_REFRESH_TOKEN_GRACE) works, so revoking it revokes its grant
// (RFC 7009 2.2: a revoked token stops working); fosite took it as revoked
// already, answered 200 and left it working. (From a review.)
func TestRevokeRetryableRefreshToken(t *testing.T) {
	testenv.Each(t, func(t *testing.T, db testenv.Database) {
		e, r0 := newGraceEnv(t, db)
		_, lost := e.refreshes(t, "refresh (its answer lost)", r0)
		if st := e.revoke(r0); st != http.StatusOK {
			t.Fatalf("revoking the spent token: %d", st)
		}
		e.active(t, "the spent token's successor after its revocation", lost, false)
		if st, body := e.refresh(r0); st == http.StatusOK {
			t.Errorf("the revoked refresh token still refreshes: %d %v", st, body)
		}
	})
}

// failClients fails every client read, as a database outage does.
type failClients struct{ store.Store }

func (failClients) GetClient(context.Context, string) (*store.Client, error) {
	return nil, fmt.Errorf("failClients: %w", store.ErrUnavailable)
}

// TestCrossOriginDuringOutage: while the database is away, the token and
// revocation endpoints' 503 (and its Retry-After) is readable by a public
// client's page on an instance that cannot read the client. (From a
// review.)
func TestCrossOriginDuringOutage(t *testing.T) {
	testenv.Each(t, func(t *testing.T, db testenv.Database) {
		e := newCodeEnv(t, db)
		if _, _, err := e.a.CreateClient(t.Context(), app.NewClient{ID: "spa", Name: "SPA", Public: true,
			RedirectURIs: []string{"http://localhost/callback"}}); err != nil {
			t.Fatal(err)
		}
		b := e.another(t) // nothing cached
		if !b.Provider.PublicOriginKnown(t.Context(), "http://localhost") {
			t.Fatal("the public client's origin is not known before the outage")
		}
		b.Provider.Storage.Store = failClients{b.Provider.Storage.Store}
		for path, h := range map[string]http.HandlerFunc{
			oidc.PathToken:  b.Provider.ClientOrigin(b.Provider.Token),
			oidc.PathRevoke: b.Provider.ClientOrigin(b.Provider.Revoke),
		} {
			form := url.Values{"grant_type": {"refresh_token"}, "refresh_token": {"x"}, "client_id": {"spa"}, "token": {"x"}}
			r := httptest.NewRequest(http.MethodPost, path, strings.NewReader(form.Encode()))
			r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			r.Header.Set("Origin", "http://localhost")
			w := httptest.NewRecorder()
			h(w, r)
			if w.Code != http.StatusServiceUnavailable || w.Header().Get("Access-Control-Allow-Origin") != "http://localhost" {
				t.Errorf("%s during an outage: %d, Access-Control-Allow-Origin %q; want 503 readable by the page",
					path, w.Code, w.Header().Get("Access-Control-Allow-Origin"))
			}
		}
	})
}

// twoSpends holds the first two refresh exchanges until both have come
// (so both requests read the tokens before either spends), then runs them
// one after the other.
type twoSpends struct {
	store.Store
	mu              sync.Mutex
	n               int
	both, firstDone chan struct{}
}

func (s *twoSpends) ExchangeTokens(ctx context.Context, x *store.TokenExchange) error {
	if x.SpendKind != store.KindRefreshToken {
		return s.Store.ExchangeTokens(ctx, x)
	}
	s.mu.Lock()
	s.n++
	n := s.n
	s.mu.Unlock()
	wait := s.both
	switch n {
	case 1:
	case 2:
		close(s.both)
		wait = s.firstDone
	default:
		return s.Store.ExchangeTokens(ctx, x)
	}
	select {
	case <-wait:
	case <-time.After(10 * time.Second): // a guard against a hang, not a sleep
		return errors.New("twoSpends: the other exchange never came")
	}
	err := s.Store.ExchangeTokens(ctx, x)
	if n == 1 {
		close(s.firstDone)
	}
	return err
}

// TestConcurrentRefreshRetries: two retries of one spent refresh token at
// once, both read as retries: exactly one gets new tokens (the successor
// they both spend is spent once), and one live refresh token is left.
func TestConcurrentRefreshRetries(t *testing.T) {
	testenv.Each(t, func(t *testing.T, db testenv.Database) {
		e, r0 := newGraceEnv(t, db)
		e.refreshes(t, "refresh (its answer lost)", r0)
		e.a.Provider.Storage.Store = &twoSpends{Store: e.a.Provider.Storage.Store,
			both: make(chan struct{}), firstDone: make(chan struct{})}
		type result struct {
			status  int
			refresh string
		}
		results := make(chan result, 2)
		for range 2 {
			go func() {
				st, body := e.refresh(r0)
				rt, _ := body["refresh_token"].(string)
				results <- result{st, rt}
			}()
		}
		var won []string
		for range 2 {
			if r := <-results; r.status == http.StatusOK {
				won = append(won, r.refresh)
			}
		}
		if len(won) != 1 {
			t.Fatalf("%d of two concurrent retries got new tokens, want exactly 1", len(won))
		}
		e.active(t, "the winning retry's refresh token", won[0], true)
	})
}
