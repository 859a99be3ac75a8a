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

// TestReadCommitted: transactions run at READ COMMITTED, which the store's
// locking relies on, even where the connection's default says otherwise.
func TestReadCommitted(t *testing.T) {
	ctx := t.Context()
	s := open(t, testenv.Postgres(t).URL+"&default_transaction_isolation=repeatable%20read")
	tx, err := s.DB().BeginTx(ctx, nil) // the default level, as the store's transactions
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = tx.Rollback() }()
	var level string
	if err := tx.QueryRowContext(ctx, `SHOW transaction_isolation`).Scan(&level); err != nil {
		t.Fatal(err)
	}
	if level != "read committed" {
		t.Fatalf("transaction_isolation = %q, want read committed", level)
	}
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
