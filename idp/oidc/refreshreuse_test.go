package oidc_test

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"sync/atomic"
	"testing"

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
