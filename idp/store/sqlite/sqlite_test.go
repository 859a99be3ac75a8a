package sqlite_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/kamera-id/idp/idp/store"
	"github.com/kamera-id/idp/idp/store/sqlite"
	"github.com/kamera-id/idp/idp/store/sqlstore"
	"github.com/kamera-id/idp/idp/store/storetest"
)

func open(t testing.TB, path string) *sqlstore.Store {
	t.Helper()
	s, err := sqlite.Open(t.Context(), path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	if err := s.Migrate(t.Context()); err != nil {
		t.Fatal(err)
	}
	return s
}

func TestStore(t *testing.T) {
	storetest.RunTests(t, func(t *testing.T) store.Store {
		return open(t, filepath.Join(t.TempDir(), "idp.db"))
	})
}

// TestOpen checks the file's place and permissions, and that a path with
// URI-significant characters is taken literally.
func TestOpen(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "new dir", "a?b#c%20")
	path := filepath.Join(dir, "idp.db")
	open(t, path)
	for p, want := range map[string]os.FileMode{dir: 0o700, path: 0o600} {
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		if got := fi.Mode().Perm(); got != want {
			t.Errorf("%s: mode %v, want %v", p, got, want)
		}
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	names := map[string]bool{}
	for _, e := range entries {
		names[e.Name()] = true
		fi, err := e.Info()
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm()&0o077 != 0 {
			t.Errorf("%s: mode %v is open to others", e.Name(), fi.Mode().Perm())
		}
	}
	// SQLite opened the file at path (and not a name cut at '?' or '#'):
	// its write-ahead log is next to it, and nothing else is.
	delete(names, "idp.db")
	delete(names, "idp.db-shm")
	if !names["idp.db-wal"] || len(names) != 1 {
		t.Errorf("files next to the database: %v, want idp.db-wal (and -shm)", names)
	}
}

// TestMigrateTwice checks that migrating is idempotent, also with two
// stores (as two processes would) on one file at once.
func TestMigrateTwice(t *testing.T) {
	path := filepath.Join(t.TempDir(), "idp.db")
	a, b := open(t, path), open(t, path)
	ctx := context.Background()
	var wg sync.WaitGroup
	for _, s := range []*sqlstore.Store{a, b, a, b} {
		wg.Go(func() {
			if err := s.Migrate(ctx); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	if err := a.CreateUser(ctx, &store.User{ID: "u", Email: "u@example.com"}); err != nil {
		t.Fatal(err)
	}
	if _, err := b.GetUser(ctx, "u"); err != nil {
		t.Fatal(err)
	}
}

// TestTwoStores races two stores on one file, as two processes would: the
// one-time operations and the throttle must hold across connections too.
func TestTwoStores(t *testing.T) {
	path := filepath.Join(t.TempDir(), "idp.db")
	a, b := open(t, path), open(t, path)
	ctx := t.Context()
	if err := a.CreateToken(ctx, &store.TokenRecord{Kind: store.KindRefreshToken, Signature: "r", Data: []byte("{}"), Active: true}); err != nil {
		t.Fatal(err)
	}
	p := store.ThrottlePolicy{MaxFailures: 1000, BaseLockout: time.Minute, MaxLockout: time.Hour}
	const n = 20
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		wins int
	)
	for i := range n {
		s := []store.Store{a, b}[i%2]
		wg.Go(func() {
			if _, err := s.RecordFailure(ctx, "k", p, time.Now()); err != nil {
				t.Error(err)
			}
			err := s.DeactivateToken(ctx, store.KindRefreshToken, "r")
			switch {
			case err == nil:
				mu.Lock()
				wins++
				mu.Unlock()
			case !errors.Is(err, store.ErrConsumed):
				t.Error(err)
			}
		})
	}
	wg.Wait()
	if wins != 1 {
		t.Errorf("DeactivateToken winners: %d, want 1", wins)
	}
	th, err := b.GetThrottle(ctx, "k")
	if err != nil {
		t.Fatal(err)
	}
	if th.Failures != n {
		t.Errorf("failures: %d, want %d", th.Failures, n)
	}
}

// TestPragmas checks that the DSN's settings hold on the connection.
func TestPragmas(t *testing.T) {
	s := open(t, filepath.Join(t.TempDir(), "idp.db"))
	for pragma, want := range map[string]string{"foreign_keys": "1", "journal_mode": "wal", "busy_timeout": "10000"} {
		var got string
		if err := s.DB().QueryRowContext(t.Context(), "PRAGMA "+pragma).Scan(&got); err != nil {
			t.Fatal(err)
		}
		if got != want {
			t.Errorf("PRAGMA %s = %s, want %s", pragma, got, want)
		}
	}
	// A foreign key naming a missing user is ErrNotFound.
	err := s.CreateSession(t.Context(), &store.Session{TokenHash: []byte("h"), ID: "sid", UserID: "nobody"})
	if !errors.Is(err, store.ErrNotFound) {
		t.Errorf("CreateSession(unknown user): got %v, want ErrNotFound", err)
	}
}

func BenchmarkStore(b *testing.B) {
	storetest.RunBenchmarks(b, func(b *testing.B) store.Store {
		return open(b, filepath.Join(b.TempDir(), "idp.db"))
	})
}

// The driver runs statements without their contexts' cancellation, but a
// statement waiting for the one connection, held by a transaction, still
// gives up when its context ends; and one whose context ended before it
// began does not run.
func TestWaitForTheConnectionEndsWithTheContext(t *testing.T) {
	s := open(t, filepath.Join(t.TempDir(), "idp.db"))
	tx, err := s.BeginTx(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	defer s.Rollback(tx)
	short, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
	defer cancel()
	if _, err := s.GetUser(short, "nobody"); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("GetUser while a transaction holds the connection: %v, want the context's deadline", err)
	}
	if err := s.Rollback(tx); err != nil {
		t.Fatal(err)
	}
	if _, err := s.GetUser(short, "nobody"); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("GetUser with an ended context: %v, want the context's deadline", err)
	}
	if _, err := s.GetUser(t.Context(), "nobody"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("GetUser after the transaction: %v, want ErrNotFound", err)
	}
}
