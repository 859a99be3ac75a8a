// Package sqlite opens the embedded store: a SQLite database file, through
// the pure-Go driver modernc.org/sqlite, with the shared SQL implementation
// of package sqlstore.
package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"time"

	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"

	"github.com/kamera-id/idp/idp/store"
	"github.com/kamera-id/idp/idp/store/sqlstore"
)

// Dialect is SQLite's part of the shared implementation.
var Dialect = sqlstore.Dialect{Name: "sqlite", Classify: classify, CacheStatements: true}

// Open opens (creating it, and its directory, when missing) the database
// file at path. Call Migrate before use.
//
// The file is created 0600 in a 0700 directory: it holds password hashes
// and encrypted secrets, and SQLite gives its -wal and -shm files the mode
// of the database file. Each connection waits up to 10s for a lock held by
// another process, journals in WAL mode with synchronous=NORMAL (a commit
// is durable once the WAL is checkpointed, not at every commit: the database
// cannot be corrupted, but a power cut, unlike a crash of the process, may
// lose the last transactions), enforces foreign keys and begins
// its transactions IMMEDIATE (taking the write lock at BEGIN, so a
// transaction never fails half-way to upgrade its lock). The pool has one
// connection, which serialises this process's statements and transactions;
// the driver gets its callers' contexts without cancellation (local.go).
func Open(ctx context.Context, path string) (*sqlstore.Store, error) {
	if path == "" {
		return nil, errors.New("sqlite: empty database path")
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, fmt.Errorf("sqlite: %w", err)
	}
	if err := os.MkdirAll(filepath.Dir(abs), 0o700); err != nil {
		return nil, fmt.Errorf("sqlite: %w", err)
	}
	f, err := os.OpenFile(abs, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("sqlite: %w", err)
	}
	if err := f.Close(); err != nil {
		return nil, fmt.Errorf("sqlite: %w", err)
	}
	connector, err := sqlite.NewConnector(dsn(abs))
	if err != nil {
		return nil, fmt.Errorf("sqlite: %w", err)
	}
	db := sql.OpenDB(localConnector{connector})
	db.SetMaxOpenConns(1)
	db.SetMaxIdleConns(1)
	db.SetConnMaxLifetime(0)
	db.SetConnMaxIdleTime(0)
	if err := ping(ctx, db); err != nil {
		db.Close()
		return nil, fmt.Errorf("sqlite: open %s: %w: %w", abs, store.ErrUnavailable, err)
	}
	return sqlstore.New(db, Dialect), nil
}

// ping opens the first connection. Two processes opening a new file at the
// same moment (a server and an admin command) can find it busy while the
// other switches it to WAL, which busy_timeout does not cover: that is
// tried again, for as long as busy_timeout would have waited.
func ping(ctx context.Context, db *sql.DB) error {
	deadline := time.Now().Add(busyTimeout)
	for {
		err := db.PingContext(ctx)
		var se *sqlite.Error
		if err == nil || !errors.As(err, &se) || se.Code()&0xff != sqlite3.SQLITE_BUSY || time.Now().After(deadline) {
			return err
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// busyTimeout is how long a connection waits for another process's lock.
const busyTimeout = 10 * time.Second

// dsn is the driver's name for the file at the absolute path: a file: URI
// (so that no character of the path is taken for the query) with the
// driver's connection parameters.
func dsn(abs string) string {
	u := url.URL{Scheme: "file", Path: filepath.ToSlash(abs), OmitHost: true}
	return u.String() + fmt.Sprintf("?_pragma=busy_timeout(%d)&_pragma=journal_mode(WAL)&_pragma=synchronous(NORMAL)"+
		"&_pragma=foreign_keys(1)&_txlock=immediate", busyTimeout.Milliseconds())
}

// classify maps SQLite's result codes (extended codes are on) to the
// store's errors.
func classify(err error) error {
	var se *sqlite.Error
	if !errors.As(err, &se) {
		return nil
	}
	switch se.Code() {
	case sqlite3.SQLITE_CONSTRAINT_UNIQUE, sqlite3.SQLITE_CONSTRAINT_PRIMARYKEY:
		return store.ErrDuplicate
	case sqlite3.SQLITE_CONSTRAINT_FOREIGNKEY:
		return store.ErrNotFound
	}
	switch se.Code() & 0xff { // the primary result code
	case sqlite3.SQLITE_BUSY, sqlite3.SQLITE_CANTOPEN:
		return store.ErrUnavailable
	}
	return nil
}
