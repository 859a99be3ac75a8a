// Package testenv gives tests the databases to run against: the embedded
// SQLite store always, and PostgreSQL from IDP_TEST_DATABASE_URL when it is
// reachable, each test in a schema of its own. Outside CI an unreachable
// PostgreSQL skips loudly; under CI=true it fails the test.
package testenv

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"net/url"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/kamera-id/idp/idp/store"
	"github.com/kamera-id/idp/idp/store/sqlite"
	"github.com/kamera-id/idp/idp/store/sqlstore"
)

// Database is one store to run a test against.
type Database struct {
	Name string // "sqlite" or "postgres"
	URL  string // an IDP_DATABASE_URL value
}

// SQLite returns a fresh embedded database in the test's temp dir.
func SQLite(t testing.TB) Database {
	return Database{Name: "sqlite", URL: "sqlite://" + filepath.Join(t.TempDir(), "idp.db")}
}

// SQLiteStore opens a fresh, migrated embedded store for a unit test; it
// is closed when the test ends.
func SQLiteStore(t testing.TB) *sqlstore.Store {
	t.Helper()
	st, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "idp.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	if err := st.Migrate(context.Background()); err != nil {
		t.Fatal(err)
	}
	return st
}

// Postgres returns a URL to a fresh, empty schema of the test database, or
// skips (fails under CI=true) when PostgreSQL is not reachable.
func Postgres(t testing.TB) Database {
	t.Helper()
	base := os.Getenv("IDP_TEST_DATABASE_URL")
	if base == "" {
		unavailable(t, "IDP_TEST_DATABASE_URL is not set")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, base)
	if err != nil {
		unavailable(t, "cannot connect to IDP_TEST_DATABASE_URL: "+err.Error())
	}
	defer conn.Close(ctx)
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	schema := "idp_test_" + hex.EncodeToString(b)
	if _, err := conn.Exec(ctx, "CREATE SCHEMA "+schema); err != nil {
		t.Fatalf("create schema: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		c, err := pgx.Connect(ctx, base)
		if err != nil {
			t.Logf("drop schema %s: %v", schema, err)
			return
		}
		defer c.Close(ctx)
		if _, err := c.Exec(ctx, "DROP SCHEMA "+schema+" CASCADE"); err != nil {
			t.Logf("drop schema %s: %v", schema, err)
		}
	})
	u, err := url.Parse(base)
	if err != nil {
		t.Fatalf("IDP_TEST_DATABASE_URL: %v", err)
	}
	q := u.Query()
	q.Set("search_path", schema)
	u.RawQuery = q.Encode()
	return Database{Name: "postgres", URL: u.String()}
}

// Each runs f as a subtest against every store.
func Each(t *testing.T, f func(t *testing.T, db Database)) {
	t.Run("sqlite", func(t *testing.T) { f(t, SQLite(t)) })
	t.Run("postgres", func(t *testing.T) { f(t, Postgres(t)) })
}

func unavailable(t testing.TB, why string) {
	t.Helper()
	if os.Getenv("CI") == "true" {
		t.Fatalf("SKIP-POSTGRES not allowed under CI=true: %s", why)
	}
	t.Skipf("SKIP-POSTGRES: PostgreSQL tests skipped (%s); set IDP_TEST_DATABASE_URL=postgres://postgres@127.0.0.1:5432/test?sslmode=disable", why)
}

// AuditEvents counts the user's audit events of type typ (of the last 100).
func AuditEvents(t testing.TB, st store.Store, userID, typ string) int {
	t.Helper()
	evs, err := st.ListAuditEvents(context.Background(), userID, 100)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, e := range evs {
		if e.Type == typ {
			n++
		}
	}
	return n
}
