// Package sqlstore is the one SQL implementation of store.Store, shared by
// the embedded SQLite store and the PostgreSQL store. It is written once,
// with $N placeholders (which both modernc.org/sqlite and pgx's database/sql
// driver accept) and SQL both databases understand; what differs between
// them (error codes, the migration lock, the schema files) is in a Dialect.
//
// Every one-time operation is a single conditional statement whose affected
// row count says whether the caller won, so it stays correct with several
// instances on one PostgreSQL database.
package sqlstore

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"

	"github.com/kamera-id/idp/idp/store"
)

// Dialect is what differs between the databases behind the one SQL
// implementation.
type Dialect struct {
	// Name is "sqlite" or "postgres": also the directory of its migrations
	// in package migrations.
	Name string
	// MigrationLock, when set, is run first in every migration's
	// transaction to serialise concurrent migrators (PostgreSQL's
	// pg_advisory_xact_lock). SQLite needs none: its write transactions
	// lock the whole database.
	MigrationLock string
	// RotationLock, when set, is run first in AddSigningKey's transaction
	// to serialise concurrent key rotations (PostgreSQL's
	// pg_advisory_xact_lock), so that each retires the key the one before
	// it stored. SQLite needs none, as MigrationLock.
	RotationLock string
	// Classify says what a driver error means: store.ErrDuplicate for a
	// unique violation, store.ErrNotFound for a foreign key naming a
	// missing row, store.ErrUnavailable for a database that cannot be
	// reached, or nil for anything else.
	Classify func(err error) error
	// CacheStatements keeps every statement prepared once and reuses it
	// (SQLite, whose driver would otherwise compile each statement at each
	// call). pgx caches prepared statements per connection by itself.
	CacheStatements bool
	// WritableCTE says the dialect has data-modifying statements in WITH
	// (PostgreSQL), so that several dependent writes can be one statement,
	// one round trip.
	WritableCTE bool
	// RowLocks says the dialect has row locks (SELECT ... FOR UPDATE, FOR
	// KEY SHARE) and runs write transactions side by side, each statement
	// on a snapshot of its own (PostgreSQL, READ COMMITTED): operations
	// that must not interleave take them. Without (SQLite) every write
	// transaction holds the whole database (BEGIN IMMEDIATE, one
	// connection), so whatever is one transaction cannot interleave.
	RowLocks bool
}

// Store implements store.Store over a *sql.DB.
type Store struct {
	db      *sql.DB
	dialect Dialect

	// The prepared statement cache (Dialect.CacheStatements): statements
	// by their text, and the texts first seen inside a transaction, to be
	// prepared once the transaction has ended (preparing on the pool while
	// a transaction holds SQLite's one connection would wait for ever).
	mu     sync.Mutex
	stmts  map[string]*sql.Stmt
	wanted map[string]bool
}

var _ store.Store = (*Store)(nil)

// New returns the store over db, which it owns from now on (Close closes
// it). The schema is not touched; call Migrate.
func New(db *sql.DB, d Dialect) *Store {
	return &Store{db: db, dialect: d, stmts: map[string]*sql.Stmt{}, wanted: map[string]bool{}}
}

// DB returns the underlying pool (for tests and maintenance tools).
func (s *Store) DB() *sql.DB { return s.db }

// Ping reports whether the database is reachable; any failure wraps
// store.ErrUnavailable.
func (s *Store) Ping(ctx context.Context) error {
	if err := s.db.PingContext(ctx); err != nil {
		return fmt.Errorf("ping: %w: %w", store.ErrUnavailable, err)
	}
	return nil
}

// Close releases the prepared statements and the connections.
func (s *Store) Close() error {
	s.mu.Lock()
	for q, st := range s.stmts {
		_ = st.Close()
		delete(s.stmts, q)
	}
	s.mu.Unlock()
	return s.db.Close()
}

// querier is what *sql.DB and *sql.Tx have in common: every method runs its
// statements on the transaction carried by the context, if any, or else on
// the pool.
type querier interface {
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

type txKey struct{}

// txState is the transaction a context carries.
type txState struct {
	s      *Store // the store that began it: another store ignores it
	tx     *sql.Tx
	nested bool // begun inside another: Commit is the outer one's job
}

func (s *Store) txFrom(ctx context.Context) *txState {
	st, _ := ctx.Value(txKey{}).(*txState)
	if st == nil || st.s != s {
		return nil
	}
	return st
}

// q returns the transaction in ctx, or the pool.
func (s *Store) q(ctx context.Context) querier {
	var tx *sql.Tx
	if st := s.txFrom(ctx); st != nil {
		tx = st.tx
	}
	return s.querier(tx)
}

// querier runs statements on tx (or, when nil, the pool), through the
// statement cache when the dialect wants one.
func (s *Store) querier(tx *sql.Tx) querier {
	if s.dialect.CacheStatements {
		return cached{s: s, tx: tx}
	}
	if tx != nil {
		return tx
	}
	return s.db
}

// cached runs statements prepared once, on tx or else on the pool.
type cached struct {
	s  *Store
	tx *sql.Tx
}

// stmt returns the prepared statement for query, or nil when it is not
// prepared yet and cannot be now (inside a transaction: it is prepared
// when the transaction ends, and this call runs it unprepared).
func (c cached) stmt(ctx context.Context, query string) *sql.Stmt {
	c.s.mu.Lock()
	st := c.s.stmts[query]
	if st == nil && c.tx != nil {
		c.s.wanted[query] = true
	}
	c.s.mu.Unlock()
	if st == nil {
		if c.tx != nil {
			return nil
		}
		var err error
		if st, err = c.s.db.PrepareContext(ctx, query); err != nil {
			return nil // run unprepared, and report the error from there
		}
		c.s.mu.Lock()
		if prev := c.s.stmts[query]; prev != nil {
			_ = st.Close()
			st = prev
		} else {
			c.s.stmts[query] = st
		}
		c.s.mu.Unlock()
	}
	if c.tx != nil {
		return c.tx.StmtContext(ctx, st)
	}
	return st
}

func (c cached) plain() querier {
	if c.tx != nil {
		return c.tx
	}
	return c.s.db
}

func (c cached) ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error) {
	if st := c.stmt(ctx, query); st != nil {
		return st.ExecContext(ctx, args...)
	}
	return c.plain().ExecContext(ctx, query, args...)
}

func (c cached) QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error) {
	if st := c.stmt(ctx, query); st != nil {
		return st.QueryContext(ctx, args...)
	}
	return c.plain().QueryContext(ctx, query, args...)
}

func (c cached) QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row {
	if st := c.stmt(ctx, query); st != nil {
		return st.QueryRowContext(ctx, args...)
	}
	return c.plain().QueryRowContext(ctx, query, args...)
}

// prepareWanted prepares the statements first seen inside a transaction,
// now that it has ended. A failure is ignored: the statement then runs
// unprepared and reports its own error.
func (s *Store) prepareWanted(ctx context.Context) {
	if !s.dialect.CacheStatements {
		return
	}
	s.mu.Lock()
	var qs []string
	for q := range s.wanted {
		qs = append(qs, q)
		delete(s.wanted, q)
	}
	s.mu.Unlock()
	for _, q := range qs {
		_ = cached{s: s}.stmt(context.WithoutCancel(ctx), q)
	}
}

// BeginTx starts a transaction that every call made with the returned
// context joins, until Commit or Rollback with that context.
//
// A BeginTx with a context that already carries a transaction joins it: the
// inner Commit does nothing (the outer one commits), while the inner
// Rollback rolls the whole transaction back, so a failure anywhere is never
// committed; the outer Commit then fails with sql.ErrTxDone.
//
// On PostgreSQL a statement that fails inside a transaction (ErrDuplicate,
// say) aborts the whole transaction: roll it back.
func (s *Store) BeginTx(ctx context.Context) (context.Context, error) {
	if st := s.txFrom(ctx); st != nil {
		return context.WithValue(ctx, txKey{}, &txState{s: s, tx: st.tx, nested: true}), nil
	}
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return ctx, s.fail("begin transaction", err)
	}
	return context.WithValue(ctx, txKey{}, &txState{s: s, tx: tx}), nil
}

// Commit commits the transaction begun by BeginTx.
func (s *Store) Commit(ctx context.Context) error {
	st := s.txFrom(ctx)
	if st == nil {
		return errors.New("commit: no transaction in context")
	}
	if st.nested {
		return nil
	}
	err := commitErr(ctx, st.tx.Commit())
	s.prepareWanted(ctx)
	return s.fail("commit", err)
}

// commitErr is the error of committing a transaction of ctx: when ctx
// ended first (the request's deadline passed, or its client left),
// database/sql rolled the transaction back and answers sql.ErrTxDone, which
// says nothing; the error then says so and carries ctx's (a deadline is the
// store being unavailable: 503, oidc.Unavailable).
func commitErr(ctx context.Context, err error) error {
	if errors.Is(err, sql.ErrTxDone) && ctx.Err() != nil {
		return fmt.Errorf("rolled back as the request ended: %w: %w", ctx.Err(), err)
	}
	return err
}

// Rollback rolls back the transaction begun by BeginTx. It is a no-op after
// Commit or an earlier Rollback, so it can be deferred.
func (s *Store) Rollback(ctx context.Context) error {
	st := s.txFrom(ctx)
	if st == nil {
		return errors.New("rollback: no transaction in context")
	}
	err := st.tx.Rollback()
	if !st.nested {
		s.prepareWanted(ctx)
	}
	if err != nil && !errors.Is(err, sql.ErrTxDone) {
		return s.fail("rollback", err)
	}
	return nil
}

// inTx runs fn in the transaction ctx carries, or else in a new one that
// commits when fn returns nil.
func (s *Store) inTx(ctx context.Context, fn func(q querier) error) error {
	if st := s.txFrom(ctx); st != nil {
		return fn(s.querier(st.tx))
	}
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer s.prepareWanted(ctx)
	if err := fn(s.querier(tx)); err != nil {
		_ = tx.Rollback()
		return err
	}
	return commitErr(ctx, tx.Commit())
}

// placeholders are n statement parameters from $first on: "$3, $4".
func placeholders(first, n int) string {
	var in strings.Builder
	for i := range n {
		if i > 0 {
			in.WriteString(", ")
		}
		fmt.Fprintf(&in, "$%d", first+i)
	}
	return in.String()
}

// fail adds op to err and makes errors.Is work with the store's errors: no
// rows is store.ErrNotFound, and the driver's errors are classified by the
// dialect (with the driver error kept in the chain).
func (s *Store) fail(op string, err error) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, sql.ErrNoRows) {
		return fmt.Errorf("%s: %w", op, store.ErrNotFound)
	}
	for _, known := range []error{store.ErrNotFound, store.ErrDuplicate, store.ErrConsumed, store.ErrUnavailable, store.ErrOtherAlgorithm} {
		if errors.Is(err, known) {
			return fmt.Errorf("%s: %w", op, err)
		}
	}
	if kind := s.classify(err); kind != nil {
		return fmt.Errorf("%s: %w: %w", op, kind, err)
	}
	return fmt.Errorf("%s: %w", op, err)
}

func (s *Store) classify(err error) error {
	if s.dialect.Classify != nil {
		if kind := s.dialect.Classify(err); kind != nil {
			return kind
		}
	}
	// What every driver reports for a lost or refused connection: a bad or
	// closed connection, a network error, a connection cut mid-message.
	var ne net.Error
	if errors.Is(err, driver.ErrBadConn) || errors.Is(err, sql.ErrConnDone) ||
		errors.Is(err, io.ErrUnexpectedEOF) || errors.As(err, &ne) {
		return store.ErrUnavailable
	}
	return nil
}

// affected returns the rows a statement changed.
func affected(res sql.Result, err error) (int64, error) {
	if err != nil {
		return 0, err
	}
	return res.RowsAffected()
}

func isNoRows(err error) bool { return errors.Is(err, sql.ErrNoRows) }
