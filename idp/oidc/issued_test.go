package oidc_test

import (
	"context"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kamera-id/idp/idp/store"
	"github.com/kamera-id/idp/idp/testenv"
)

// codeReads counts the reads of codes that reach the store.
type codeReads struct {
	store.Store
	n atomic.Int32
}

func (s *codeReads) GetToken(ctx context.Context, kind, signature string) (*store.TokenRecord, error) {
	if kind == store.KindAuthorizeCode {
		s.n.Add(1)
	}
	return s.Store.GetToken(ctx, kind, signature)
}

// TestIssuedCodeExchange: the process that issued a code exchanges it
// without reading it from the store (issuedCodes), and a reuse, read from
// the store, is refused and revokes what the code issued.
func TestIssuedCodeExchange(t *testing.T) {
	testenv.Each(t, func(t *testing.T, db testenv.Database) {
		e := newCodeEnv(t, db)
		reads := &codeReads{Store: e.a.Provider.Storage.Store}
		e.a.Provider.Storage.Store = reads
		st, body := e.exchange()
		if st != http.StatusOK || body["access_token"] == nil {
			t.Fatalf("exchange: %d %v", st, body)
		}
		if n := reads.n.Load(); n != 0 {
			t.Fatalf("%d reads of the code reached the store at the process that issued it, want 0", n)
		}
		if st, body := e.exchange(); st != http.StatusBadRequest || body["error"] != "invalid_grant" {
			t.Fatalf("the code again: %d %v, want invalid_grant", st, body)
		}
		if n := reads.n.Load(); n != 1 {
			t.Fatalf("%d reads of the code reached the store for its reuse, want 1", n)
		}
		access, _ := body["access_token"].(string)
		if active, err := e.introspect(access); err != nil || active {
			t.Fatalf("the access token of a reused code: active %v (%v), want revoked", active, err)
		}
	})
}

// What happens to a code's record after it was issued decides its
// exchange at the process that issued it too, which takes the request from
// its own record (issuedCodes).

// TestIssuedCodeSessionEnded: a code whose session ended is refused
// (invalid_grant).
func TestIssuedCodeSessionEnded(t *testing.T) {
	testenv.Each(t, func(t *testing.T, db testenv.Database) {
		e := newCodeEnv(t, db)
		if err := e.a.Store.DeleteUserSession(t.Context(), e.user.ID, "sid"); err != nil {
			t.Fatal(err)
		}
		if st, body := e.exchange(); st != http.StatusBadRequest || body["error"] != "invalid_grant" {
			t.Fatalf("a code of an ended session: %d %v, want invalid_grant", st, body)
		}
	})
}

// TestIssuedCodeDeleted: a code deleted (its client's or user's deletion
// deletes it) is refused as a code not found, never with a server error.
func TestIssuedCodeDeleted(t *testing.T) {
	testenv.Each(t, func(t *testing.T, db testenv.Database) {
		ctx := t.Context()
		e := newCodeEnv(t, db)
		sig := e.a.Provider.Storage.CodeSignature(ctx, e.code)
		if err := e.a.Store.DeleteToken(ctx, store.KindAuthorizeCode, sig); err != nil {
			t.Fatal(err)
		}
		if st, body := e.exchange(); st != http.StatusBadRequest || body["error"] != "invalid_grant" {
			t.Fatalf("a deleted code: %d %v, want invalid_grant", st, body)
		}
	})
}

// TestIssuedCodeReplayedWhereIssued: a code redeemed at another instance,
// then replayed at the one that issued it, which still keeps its record,
// by someone without its PKCE verifier: refused, and what the code issued
// is revoked, as where its read finds it spent (fosite revokes before it
// checks PKCE).
func TestIssuedCodeReplayedWhereIssued(t *testing.T) {
	testenv.Each(t, func(t *testing.T, db testenv.Database) {
		e := newCodeEnv(t, db)
		other := e.another(t)
		st, body := e.exchangeAt(other, e.verifier)
		if st != http.StatusOK || body["access_token"] == nil {
			t.Fatalf("exchange at the other instance: %d %v", st, body)
		}
		if st, body := e.exchangeAt(e.a, "not-the-verifier-"+e.verifier); st != http.StatusBadRequest || body["error"] != "invalid_grant" {
			t.Fatalf("the code replayed where it was issued: %d %v, want invalid_grant", st, body)
		}
		access, _ := body["access_token"].(string)
		if active, err := e.introspect(access); err != nil || active {
			t.Fatalf("the access token of a replayed code: active %v (%v), want revoked", active, err)
		}
	})
}

// TestCodeReusedAfterSweep: a spent code is kept as long as the tokens it
// issued, so a reuse after the code's own expiry, and after the expiry
// sweep, still revokes them.
func TestCodeReusedAfterSweep(t *testing.T) {
	testenv.Each(t, func(t *testing.T, db testenv.Database) {
		e := newCodeEnv(t, db)
		st, body := e.exchange()
		if st != http.StatusOK || body["access_token"] == nil || body["refresh_token"] == nil {
			t.Fatalf("exchange: %d %v", st, body)
		}
		later := time.Now().Add(e.a.Config.AuthCodeTTL + time.Minute)
		if _, err := e.a.Store.DeleteExpired(t.Context(), later, 0); err != nil {
			t.Fatal(err)
		}
		if st, again := e.exchange(); st != http.StatusBadRequest || again["error"] != "invalid_grant" {
			t.Fatalf("the code after the sweep: %d %v, want invalid_grant", st, again)
		}
		for _, kind := range []string{"access_token", "refresh_token"} {
			tok, _ := body[kind].(string)
			if active, err := e.introspect(tok); err != nil || active {
				t.Errorf("the %s of a code reused after the sweep: active %v (%v), want revoked", kind, active, err)
			}
		}
	})
}
