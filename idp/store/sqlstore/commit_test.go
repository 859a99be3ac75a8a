package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"
)

// TestCommitErr: a commit refused because the request's context ended
// first (database/sql rolled the transaction back: sql.ErrTxDone) says so
// with the context's error, so that a deadline is answered 503 and a
// client that left is not logged as an internal error; other errors are
// left as they are.
func TestCommitErr(t *testing.T) {
	ended, cancel := context.WithCancel(context.Background())
	cancel()
	err := commitErr(ended, sql.ErrTxDone)
	if !errors.Is(err, context.Canceled) || !errors.Is(err, sql.ErrTxDone) {
		t.Errorf("commit after the context ended: %v, want context.Canceled and sql.ErrTxDone", err)
	}
	if err := commitErr(context.Background(), sql.ErrTxDone); err != sql.ErrTxDone {
		t.Errorf("sql.ErrTxDone with a live context: %v, want it unchanged", err)
	}
	other := errors.New("disk I/O error")
	if err := commitErr(ended, other); err != other {
		t.Errorf("another error after the context ended: %v, want it unchanged", err)
	}
}

// TestMissingTable: only a missing table means no migration was applied
// yet; any other failure of the query is an error, not "all pending".
func TestMissingTable(t *testing.T) {
	for err, want := range map[error]bool{
		&pgconn.PgError{Code: "42P01"}:                                      true,  // undefined_table
		&pgconn.PgError{Code: "42501"}:                                      false, // insufficient_privilege
		errors.New("SQL logic error: no such table: schema_migrations (1)"): true,
		errors.New("database is locked (5) (SQLITE_BUSY)"):                  false,
	} {
		if got := missingTable(err); got != want {
			t.Errorf("missingTable(%v) = %v, want %v", err, got, want)
		}
	}
}
