package sqlite

import (
	"context"
	"database/sql/driver"
	"fmt"
)

// The driver runs SQLite in this process, where a statement takes
// microseconds. Handed a cancellable context, it starts a goroutine per
// statement (and per BEGIN and COMMIT) to watch it, which on a login is
// dozens of goroutine starts and thread wake-ups for nothing. The
// connections below hand it their callers' contexts without cancellation.
// database/sql still waits for the pool's connection with the caller's
// context, so a request never waits longer than its deadline for another's
// transaction; once the connection is its own, a lock held by another
// process is waited for up to busy_timeout.

// conn is what the driver's connections implement and database/sql uses.
type conn interface {
	driver.Conn
	driver.ConnBeginTx
	driver.ConnPrepareContext
	driver.ExecerContext
	driver.QueryerContext
	driver.Pinger
	driver.SessionResetter
	driver.Validator
}

// stmt is what the driver's prepared statements implement.
type stmt interface {
	driver.Stmt
	driver.StmtExecContext
	driver.StmtQueryContext
}

type localConnector struct{ driver.Connector }

func (c localConnector) Connect(ctx context.Context) (driver.Conn, error) {
	dc, err := c.Connector.Connect(ctx)
	if err != nil {
		return nil, err
	}
	lc, ok := dc.(conn)
	if !ok {
		dc.Close()
		return nil, fmt.Errorf("sqlite: the driver's connection (%T) lacks a context method", dc)
	}
	return localConn{lc}, nil
}

type localConn struct{ conn }

func (c localConn) BeginTx(ctx context.Context, opts driver.TxOptions) (driver.Tx, error) {
	return c.conn.BeginTx(context.WithoutCancel(ctx), opts)
}

func (c localConn) PrepareContext(ctx context.Context, query string) (driver.Stmt, error) {
	ds, err := c.conn.PrepareContext(context.WithoutCancel(ctx), query)
	if err != nil {
		return nil, err
	}
	s, ok := ds.(stmt)
	if !ok {
		ds.Close()
		return nil, fmt.Errorf("sqlite: the driver's statement (%T) lacks a context method", ds)
	}
	return localStmt{s}, nil
}

func (c localConn) ExecContext(ctx context.Context, query string, args []driver.NamedValue) (driver.Result, error) {
	return c.conn.ExecContext(context.WithoutCancel(ctx), query, args)
}

func (c localConn) QueryContext(ctx context.Context, query string, args []driver.NamedValue) (driver.Rows, error) {
	return c.conn.QueryContext(context.WithoutCancel(ctx), query, args)
}

func (c localConn) Ping(ctx context.Context) error {
	return c.conn.Ping(context.WithoutCancel(ctx))
}

type localStmt struct{ stmt }

func (s localStmt) ExecContext(ctx context.Context, args []driver.NamedValue) (driver.Result, error) {
	return s.stmt.ExecContext(context.WithoutCancel(ctx), args)
}

func (s localStmt) QueryContext(ctx context.Context, args []driver.NamedValue) (driver.Rows, error) {
	return s.stmt.QueryContext(context.WithoutCancel(ctx), args)
}
