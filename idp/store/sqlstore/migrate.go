package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/kamera-id/idp/migrations"
)

// Migrate applies the dialect's pending migrations in version order, each
// in a transaction of its own that also records it in schema_migrations,
// so a failed migration leaves nothing behind and a second run does
// nothing. Concurrent migrators are serialised by the dialect's migration
// lock (or, on SQLite, by the write transaction itself): the one that waited
// finds the version recorded and skips it.
//
// Migrate never joins a transaction carried by ctx.
func (s *Store) Migrate(ctx context.Context) error {
	ms, err := migrations.List(s.dialect.Name)
	if err != nil {
		return err
	}
	for _, m := range ms {
		if err := s.migrate(ctx, m); err != nil {
			return s.fail("migration "+m.Name, err)
		}
	}
	return nil
}

func (s *Store) migrate(ctx context.Context, m migrations.Migration) error {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback() //nolint:errcheck // a no-op after Commit
	if s.dialect.MigrationLock != "" {
		if _, err := tx.ExecContext(ctx, s.dialect.MigrationLock); err != nil {
			return fmt.Errorf("lock: %w", err)
		}
	}
	if _, err := tx.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (
		version    BIGINT NOT NULL PRIMARY KEY,
		applied_at BIGINT NOT NULL
	)`); err != nil {
		return err
	}
	var one int
	err = tx.QueryRowContext(ctx, `SELECT 1 FROM schema_migrations WHERE version = $1`, m.Version).Scan(&one)
	switch {
	case err == nil:
		return nil // applied already
	case !errors.Is(err, sql.ErrNoRows):
		return err
	}
	// No arguments: pgx sends the script with the simple protocol, which
	// runs several statements; SQLite's Exec runs them one after another.
	if _, err := tx.ExecContext(ctx, m.SQL); err != nil {
		return err
	}
	if _, err := tx.ExecContext(ctx, `INSERT INTO schema_migrations (version, applied_at) VALUES ($1, $2)`,
		m.Version, time.Now().Unix()); err != nil {
		return err
	}
	return tx.Commit()
}

// Pending lists the names of the migrations not yet applied, so a server
// that does not migrate by itself can refuse to start on an old schema.
func (s *Store) Pending(ctx context.Context) ([]string, error) {
	ms, err := migrations.List(s.dialect.Name)
	if err != nil {
		return nil, err
	}
	applied := map[int64]bool{}
	rows, err := s.db.QueryContext(ctx, `SELECT version FROM schema_migrations`)
	if err == nil {
		defer rows.Close()
		for rows.Next() {
			var v int64
			if err := rows.Scan(&v); err != nil {
				return nil, s.fail("pending migrations", err)
			}
			applied[v] = true
		}
		if err := rows.Err(); err != nil {
			return nil, s.fail("pending migrations", err)
		}
	} else if !missingTable(err) {
		return nil, s.fail("pending migrations", err)
	} // else: no schema_migrations table yet, everything is pending
	var pending []string
	for _, m := range ms {
		if !applied[m.Version] {
			pending = append(pending, m.Name)
		}
	}
	return pending, nil
}

// missingTable reports whether err says the table queried does not exist
// (PostgreSQL's undefined_table, SQLite's "no such table"), and not that
// the database could not answer (unreachable, permission denied, ...).
func missingTable(err error) bool {
	var pe interface{ SQLState() string }
	if errors.As(err, &pe) {
		return pe.SQLState() == "42P01"
	}
	return strings.Contains(err.Error(), "no such table")
}
