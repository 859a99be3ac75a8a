package postgres_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/kamera-id/idp/idp/store"
	"github.com/kamera-id/idp/idp/store/postgres"
	"github.com/kamera-id/idp/idp/store/sqlstore"
	"github.com/kamera-id/idp/idp/store/storetest"
	"github.com/kamera-id/idp/idp/testenv"
)

func open(t *testing.T, url string) *sqlstore.Store {
	t.Helper()
	s, err := postgres.Open(t.Context(), url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func TestStore(t *testing.T) {
	storetest.RunTests(t, func(t *testing.T) store.Store {
		s := open(t, testenv.Postgres(t).URL)
		if err := s.Migrate(t.Context()); err != nil {
			t.Fatal(err)
		}
		return s
	})
}

// TestMigrateConcurrently runs several migrators at once, as instances
// starting together would; each must succeed and the schema be usable.
func TestMigrateConcurrently(t *testing.T) {
	url := testenv.Postgres(t).URL
	var wg sync.WaitGroup
	for range 4 {
		s := open(t, url)
		wg.Go(func() {
			if err := s.Migrate(t.Context()); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	s := open(t, url)
	if err := s.Migrate(t.Context()); err != nil {
		t.Fatal(err)
	}
	var n int
	if err := s.DB().QueryRowContext(t.Context(), `SELECT count(*) FROM schema_migrations`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n == 0 {
		t.Fatal("no migration recorded")
	}
	if err := s.CreateUser(t.Context(), &store.User{ID: "u", Email: "u@example.com"}); err != nil {
		t.Fatal(err)
	}
}

// TestUnavailable checks that an unreachable server is reported as
// store.ErrUnavailable.
func TestUnavailable(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	_, err := postgres.Open(ctx, "postgres://nobody@127.0.0.1:1/none?sslmode=disable&connect_timeout=2")
	if !errors.Is(err, store.ErrUnavailable) {
		t.Fatalf("Open(unreachable): got %v, want ErrUnavailable", err)
	}
}

// TestRevokeConsentDuringATokenRequest: a token request of the client
// in flight while the user takes the consent back (its refresh token spent
// and the new one stored, not committed yet) does not leave the new
// refresh token working: the revocation waits for that request, then
// deactivates what it issued.
func TestRevokeConsentDuringATokenRequest(t *testing.T) {
	ctx := t.Context()
	s := open(t, testenv.Postgres(t).URL)
	if err := s.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(s.CreateUser(ctx, &store.User{ID: "u1", Email: "u1@example.com"}))
	must(s.CreateClient(ctx, &store.Client{ID: "app", Name: "App"}))
	must(s.PutConsent(ctx, "u1", "app", []string{"openid", "offline_access"}, time.Now()))
	const insert = `INSERT INTO tokens (kind, signature, request_id, client_id, subject, session_id, data, active)
		VALUES ('refresh', $1, 'req', 'app', 'u1', 'sid', '\x7b7d', TRUE)`
	_, err := s.DB().ExecContext(ctx, insert, "old")
	must(err)

	// The refresh, as the token endpoint writes it (ExchangeTokens), held
	// open in a transaction.
	tx, err := s.DB().BeginTx(ctx, nil)
	must(err)
	defer func() { _ = tx.Rollback() }()
	var pid int
	must(tx.QueryRowContext(ctx, `SELECT pg_backend_pid()`).Scan(&pid))
	_, err = tx.ExecContext(ctx, `UPDATE tokens SET active = FALSE WHERE kind = 'refresh' AND signature = 'old' AND active`)
	must(err)
	_, err = tx.ExecContext(ctx, insert, "new")
	must(err)

	done := make(chan error, 1)
	go func() { done <- s.RevokeConsent(ctx, "u1", "app") }()
	for waiting := 0; waiting == 0; { // until the revocation waits for the refresh
		select {
		case err := <-done:
			t.Fatalf("RevokeConsent returned while the refresh was in flight: %v", err)
		default:
		}
		must(s.DB().QueryRowContext(ctx, `SELECT count(*) FROM pg_stat_activity
			WHERE $1 = ANY(pg_blocking_pids(pid))`, pid).Scan(&waiting))
	}
	must(tx.Commit())
	must(<-done)
	for _, sig := range []string{"old", "new"} {
		tok, err := s.GetToken(ctx, store.KindRefreshToken, sig)
		must(err)
		if tok.Active {
			t.Errorf("refresh token %q still active after RevokeConsent", sig)
		}
	}
}

func BenchmarkStore(b *testing.B) {
	storetest.RunBenchmarks(b, func(b *testing.B) store.Store {
		s, err := postgres.Open(b.Context(), testenv.Postgres(b).URL)
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { s.Close() })
		if err := s.Migrate(b.Context()); err != nil {
			b.Fatal(err)
		}
		return s
	})
}
