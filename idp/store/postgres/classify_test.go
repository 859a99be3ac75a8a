package postgres

import (
	"errors"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/kamera-id/idp/idp/store"
)

// TestClassify: the server's "try again" answers (a lock or statement
// timeout, resources exhausted for now, a deadlock, a shutdown) are the
// store being unavailable (503), not internal errors (500); constraint
// violations are the store's own errors.
func TestClassify(t *testing.T) {
	for code, want := range map[string]error{
		"23505": store.ErrDuplicate, "23503": store.ErrNotFound,
		"55P03": store.ErrUnavailable, "57014": store.ErrUnavailable, "25P03": store.ErrUnavailable,
		"53100": store.ErrUnavailable, "53200": store.ErrUnavailable,
		"53300": store.ErrUnavailable, "08006": store.ErrUnavailable, "57P01": store.ErrUnavailable,
		"40P01": store.ErrUnavailable, "40001": store.ErrUnavailable,
		"42601": nil, "23514": nil, // a syntax error, a check constraint: ours
		// A read-only transaction (the URL names a standby) and a
		// configuration limit do not pass by themselves: 500s, logged as
		// errors, for an operator to see.
		"25006": nil, "53400": nil,
	} {
		if got := classify(&pgconn.PgError{Code: code}); !errors.Is(got, want) || (want == nil) != (got == nil) {
			t.Errorf("classify(SQLSTATE %s) = %v, want %v", code, got, want)
		}
	}
}
