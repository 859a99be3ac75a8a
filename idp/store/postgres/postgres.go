// Package postgres opens the PostgreSQL store: pgx through database/sql,
// with the shared SQL implementation of package sqlstore.
package postgres

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/stdlib"

	"github.com/kamera-id/idp/idp/store"
	"github.com/kamera-id/idp/idp/store/sqlstore"
)

// Pool limits. A provider instance needs few connections: every request
// makes short statements, and transactions are brief.
const (
	maxOpenConns    = 20
	maxIdleConns    = 10
	connMaxLifetime = 30 * time.Minute
	connMaxIdleTime = 5 * time.Minute
	// connectTimeout bounds a new connection (unless the URL sets
	// connect_timeout), so that while the database is away requests fail
	// fast with a 503 rather than hang; the pool reconnects on the next
	// request once it is back.
	connectTimeout = 3 * time.Second
	pingTimeout    = 5 * time.Second
)

// migrationLockID is the pg_advisory_xact_lock key that serialises
// concurrent migrators of one database (an arbitrary constant: "kamera-id").
const migrationLockID = 0x6b616d6572612d69

// rotationLockID is the pg_advisory_xact_lock key that serialises
// concurrent signing key rotations ("kamera-k").
const rotationLockID = 0x6b616d6572612d6b

// Dialect is PostgreSQL's part of the shared implementation.
var Dialect = sqlstore.Dialect{
	Name:          "postgres",
	MigrationLock: fmt.Sprintf("SELECT pg_advisory_xact_lock(%d)", int64(migrationLockID)),
	RotationLock:  fmt.Sprintf("SELECT pg_advisory_xact_lock(%d)", int64(rotationLockID)),
	Classify:      classify,
	WritableCTE:   true,
	RowLocks:      true,
}

// Open connects to the database at url (postgres://...) and checks that it
// answers. Parameters pgx does not know, such as search_path, are sent as
// run-time parameters, so ?search_path=schema selects the schema. Call
// Migrate before use (the `idp migrate` command does).
func Open(ctx context.Context, url string) (*sqlstore.Store, error) {
	cfg, err := pgx.ParseConfig(url)
	if err != nil {
		return nil, fmt.Errorf("postgres: %w", err)
	}
	if cfg.ConnectTimeout == 0 {
		cfg.ConnectTimeout = connectTimeout
	}
	// The store's locking (sqlstore's lockUser and exchangeInOneStatement)
	// relies on READ COMMITTED's snapshot per statement: under REPEATABLE
	// READ, a transaction ending a user's sessions would take its snapshot
	// before the lock it waits for and miss the tokens issued meanwhile.
	// So the level is set on every connection, whatever the server's,
	// database's or role's default (or the URL) says.
	cfg.RuntimeParams["default_transaction_isolation"] = "read committed"
	db := stdlib.OpenDB(*cfg)
	db.SetMaxOpenConns(maxOpenConns)
	db.SetMaxIdleConns(maxIdleConns)
	db.SetConnMaxLifetime(connMaxLifetime)
	db.SetConnMaxIdleTime(connMaxIdleTime)
	pctx, cancel := context.WithTimeout(ctx, pingTimeout)
	defer cancel()
	if err := db.PingContext(pctx); err != nil {
		db.Close()
		return nil, fmt.Errorf("postgres: %w: %w", store.ErrUnavailable, err)
	}
	return sqlstore.New(db, Dialect), nil
}

// classify maps PostgreSQL's SQLSTATEs and pgx's connection errors to the
// store's errors.
func classify(err error) error {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		switch {
		case pe.Code == "23505": // unique_violation
			return store.ErrDuplicate
		case pe.Code == "23503": // foreign_key_violation
			return store.ErrNotFound
		case strings.HasPrefix(pe.Code, "08"), // connection_exception
			pe.Code == "53000", pe.Code == "53100", pe.Code == "53200", // insufficient_resources, disk_full, out_of_memory
			pe.Code == "53300", // too_many_connections
			pe.Code == "55P03", // lock_not_available: lock_timeout passed
			pe.Code == "57014", // query_canceled: statement_timeout passed
			pe.Code == "25P03", // idle_in_transaction_session_timeout
			pe.Code == "57P01", // admin_shutdown
			pe.Code == "57P02", // crash_shutdown
			pe.Code == "57P03", // cannot_connect_now
			// The transaction was rolled back to end a deadlock, or could
			// not be serialised: nothing of it was kept, and the request
			// can be tried again (as SQLITE_BUSY on SQLite).
			pe.Code == "40P01", // deadlock_detected
			pe.Code == "40001": // serialization_failure
			return store.ErrUnavailable
		}
		return nil
	}
	var ce *pgconn.ConnectError
	if errors.As(err, &ce) {
		return store.ErrUnavailable
	}
	// A connection that broke before or while the statement was sent, or
	// whose answer timed out (pgx reports both without a SQLSTATE).
	if pgconn.SafeToRetry(err) || pgconn.Timeout(err) {
		return store.ErrUnavailable
	}
	return nil
}
