package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"testing"
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
