package dbrouter

import (
	"context"
	"database/sql/driver"
	"errors"
	"io"
	"reflect"
	"strconv"
)

// The writer's pool opens connections through writeConnector. Its
// connections read the replication position of each write on the same
// session right after it (MariaDB's @@last_gtid is per session), and hand it
// to the read-your-writes scope of the statement's context:
//   - ExecContext outside a transaction: after the statement;
//   - QueryContext of a statement that is not provably read-only outside a
//     transaction (INSERT ... RETURNING, CALL): when its rows are closed,
//     the writer's whole position (see capture);
//   - a transaction: after a successful Commit (the scope is the one of
//     BeginTx's context). Read-only transactions are skipped.
//
// That costs one extra round trip per write made in a read-your-writes
// scope (0.2 ms on loopback), none per read and none per write outside a
// scope, whose position nothing can need. The wrappers forward every
// optional driver interface the wrapped connection has, so database/sql
// behaves as with the bare driver.
type writeConnector struct {
	inner driver.Connector
	rt    *Router
	name  string // endpoint name, for outcome-unknown errors
	// forward marks the pool of a write forwarding endpoint (forward.go).
	forward bool
}

func (c *writeConnector) Connect(ctx context.Context) (driver.Conn, error) {
	conn, err := c.inner.Connect(ctx)
	if err != nil {
		return nil, err
	}
	return &writeConn{Conn: conn, rt: c.rt, name: c.name, forward: c.forward}, nil
}

func (c *writeConnector) Driver() driver.Driver { return c.inner.Driver() }

// writeConn is used by one goroutine at a time (database/sql's guarantee).
type writeConn struct {
	driver.Conn
	rt      *Router
	name    string
	inTx    bool
	forward bool // a forwarding session (see forward.go)
}

// txFailed turns err of a statement inside a transaction (or of its commit)
// into an outcome-unknown error when the connection broke: the transaction
// is lost, and after a commit was sent nobody knows whether it applied. It
// also starts a writer search in the background.
func (c *writeConn) txFailed(ctx context.Context, err error) error {
	if c.forward {
		if e := forwardError(c.name, err); e != nil {
			return e
		}
	}
	switch classifyFailure(ctx, err) {
	case failLost, failServerGone, failNotSent:
		c.rt.search.kick()
		return newOutcomeUnknown(c.name, true, err)
	case failReadOnly:
		c.rt.search.kick()
	}
	return err
}

var errNoPosition = errors.New("dbrouter: no position value")

// capture reads the position of the write just made on this session and
// advances ctx's scope (or, for a transaction, t). With global, it reads the
// writer's whole position instead of the session's last write (at or after
// the write); writing queries use it, because a CALL may run statements
// whose GTIDs the session's last-write value does not cover in every
// engine, and INSERT ... RETURNING is rare enough not to matter.
func (c *writeConn) capture(ctx context.Context, t *tracker, global bool) {
	if t == nil {
		return // no read-your-writes scope: nothing can need the position
	}
	q := c.rt.dialect.lastWriteQuery()
	if global {
		q = c.rt.dialect.writerQuery()
	}
	if h, ok := c.rt.dialect.(heartbeatDialect); ok && c.forward {
		q = h.forwardedWriteQuery()
	}
	p, err := c.lastWrite(ctx, q)
	if err != nil {
		c.rt.stats.writePosFailures.Add(1)
		t.writerOnly.Store(true)
		return
	}
	t.advance(p, true)
}

func (c *writeConn) lastWrite(ctx context.Context, query string) (*position, error) {
	q, ok := c.Conn.(driver.QueryerContext)
	if !ok {
		return nil, driver.ErrSkip
	}
	rows, err := q.QueryContext(ctx, query, nil)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	vals := make([]driver.Value, 1)
	if err := rows.Next(vals); err != nil {
		if err == io.EOF {
			return nil, errNoPosition
		}
		return nil, err
	}
	var s string
	switch v := vals[0].(type) {
	case []byte:
		s = string(v)
	case string:
		s = v
	case int64:
		s = strconv.FormatInt(v, 10)
	case uint64: // go-sql-driver/mysql returns BIGINT UNSIGNED so
		s = strconv.FormatUint(v, 10)
	case nil:
	default:
		return nil, errNoPosition
	}
	return c.rt.dialect.parseWriter(s)
}

func (c *writeConn) ExecContext(ctx context.Context, query string, args []driver.NamedValue) (driver.Result, error) {
	e, ok := c.Conn.(driver.ExecerContext)
	if !ok {
		return nil, driver.ErrSkip
	}
	res, err := e.ExecContext(ctx, query, args)
	if err == nil && !c.inTx {
		c.capture(ctx, trackerFrom(ctx), false)
	}
	if err != nil && c.inTx {
		err = c.txFailed(ctx, err)
	}
	return res, err
}

func (c *writeConn) QueryContext(ctx context.Context, query string, args []driver.NamedValue) (driver.Rows, error) {
	q, ok := c.Conn.(driver.QueryerContext)
	if !ok {
		return nil, driver.ErrSkip
	}
	rows, err := q.QueryContext(ctx, query, args)
	if err != nil && c.inTx {
		err = c.txFailed(ctx, err)
	}
	if err != nil || c.inTx || readOnly(query) {
		return rows, err
	}
	return &writeRows{Rows: rows, c: c, ctx: ctx}, nil
}

func (c *writeConn) PrepareContext(ctx context.Context, query string) (driver.Stmt, error) {
	var st driver.Stmt
	var err error
	if p, ok := c.Conn.(driver.ConnPrepareContext); ok {
		st, err = p.PrepareContext(ctx, query)
	} else {
		st, err = c.Conn.Prepare(query)
	}
	if err != nil {
		return nil, err
	}
	return &writeStmt{Stmt: st, c: c, write: !readOnly(query)}, nil
}

func (c *writeConn) BeginTx(ctx context.Context, opts driver.TxOptions) (driver.Tx, error) {
	var tx driver.Tx
	var err error
	if b, ok := c.Conn.(driver.ConnBeginTx); ok {
		tx, err = b.BeginTx(ctx, opts)
	} else {
		tx, err = c.Conn.Begin() //nolint:staticcheck // fallback for old drivers
	}
	if err != nil {
		return nil, err
	}
	c.inTx = true
	return &writeTx{Tx: tx, c: c, ctx: ctx, t: trackerFrom(ctx), readOnly: opts.ReadOnly}, nil
}

func (c *writeConn) Ping(ctx context.Context) error {
	if p, ok := c.Conn.(driver.Pinger); ok {
		return p.Ping(ctx)
	}
	return nil
}

func (c *writeConn) ResetSession(ctx context.Context) error {
	c.inTx = false
	if r, ok := c.Conn.(driver.SessionResetter); ok {
		return r.ResetSession(ctx)
	}
	return nil
}

func (c *writeConn) IsValid() bool {
	if v, ok := c.Conn.(driver.Validator); ok {
		return v.IsValid()
	}
	return true
}

func (c *writeConn) CheckNamedValue(nv *driver.NamedValue) error {
	if ch, ok := c.Conn.(driver.NamedValueChecker); ok {
		return ch.CheckNamedValue(nv)
	}
	return driver.ErrSkip
}

type writeTx struct {
	driver.Tx
	c        *writeConn
	ctx      context.Context
	t        *tracker
	readOnly bool
}

func (tx *writeTx) Commit() error {
	err := tx.Tx.Commit()
	tx.c.inTx = false
	if err != nil {
		err = tx.c.txFailed(context.Background(), err)
	}
	if err == nil && !tx.readOnly {
		tx.c.capture(tx.ctx, tx.t, false)
	}
	return err
}

func (tx *writeTx) Rollback() error {
	tx.c.inTx = false
	return tx.Tx.Rollback()
}

type writeStmt struct {
	driver.Stmt
	c     *writeConn
	write bool
}

func (s *writeStmt) ExecContext(ctx context.Context, args []driver.NamedValue) (driver.Result, error) {
	var res driver.Result
	var err error
	if e, ok := s.Stmt.(driver.StmtExecContext); ok {
		res, err = e.ExecContext(ctx, args)
	} else {
		vals, cerr := namedToValues(args)
		if cerr != nil {
			return nil, cerr
		}
		res, err = s.Stmt.Exec(vals) //nolint:staticcheck // fallback for old drivers
	}
	if err == nil && !s.c.inTx {
		s.c.capture(ctx, trackerFrom(ctx), false)
	}
	if err != nil {
		if s.c.inTx {
			err = s.c.txFailed(ctx, err)
		} else if k := classifyFailure(ctx, err); k == failLost || k == failServerGone {
			s.c.rt.search.kick()
			err = newOutcomeUnknown(s.c.name, false, err)
		}
	}
	return res, err
}

func (s *writeStmt) QueryContext(ctx context.Context, args []driver.NamedValue) (driver.Rows, error) {
	var rows driver.Rows
	var err error
	if q, ok := s.Stmt.(driver.StmtQueryContext); ok {
		rows, err = q.QueryContext(ctx, args)
	} else {
		vals, cerr := namedToValues(args)
		if cerr != nil {
			return nil, cerr
		}
		rows, err = s.Stmt.Query(vals) //nolint:staticcheck // fallback for old drivers
	}
	if err != nil || !s.write || s.c.inTx {
		return rows, err
	}
	return &writeRows{Rows: rows, c: s.c, ctx: ctx}, nil
}

func (s *writeStmt) CheckNamedValue(nv *driver.NamedValue) error {
	if ch, ok := s.Stmt.(driver.NamedValueChecker); ok {
		return ch.CheckNamedValue(nv)
	}
	return s.c.CheckNamedValue(nv)
}

func namedToValues(args []driver.NamedValue) ([]driver.Value, error) {
	vals := make([]driver.Value, len(args))
	for i, a := range args {
		if a.Name != "" {
			return nil, errors.New("dbrouter: driver does not support named parameters")
		}
		vals[i] = a.Value
	}
	return vals, nil
}

// writeRows captures the position when the rows of a writing query close.
type writeRows struct {
	driver.Rows
	c    *writeConn
	ctx  context.Context
	done bool
}

func (r *writeRows) Close() error {
	err := r.Rows.Close()
	if !r.done {
		r.done = true
		if err == nil {
			r.c.capture(r.ctx, trackerFrom(r.ctx), true)
		}
	}
	return err
}

func (r *writeRows) HasNextResultSet() bool {
	if n, ok := r.Rows.(driver.RowsNextResultSet); ok {
		return n.HasNextResultSet()
	}
	return false
}

func (r *writeRows) NextResultSet() error {
	if n, ok := r.Rows.(driver.RowsNextResultSet); ok {
		return n.NextResultSet()
	}
	return io.EOF
}

func (r *writeRows) ColumnTypeScanType(i int) reflect.Type {
	if c, ok := r.Rows.(driver.RowsColumnTypeScanType); ok {
		return c.ColumnTypeScanType(i)
	}
	return reflect.TypeFor[any]()
}

func (r *writeRows) ColumnTypeDatabaseTypeName(i int) string {
	if c, ok := r.Rows.(driver.RowsColumnTypeDatabaseTypeName); ok {
		return c.ColumnTypeDatabaseTypeName(i)
	}
	return ""
}

func (r *writeRows) ColumnTypeLength(i int) (int64, bool) {
	if c, ok := r.Rows.(driver.RowsColumnTypeLength); ok {
		return c.ColumnTypeLength(i)
	}
	return 0, false
}

func (r *writeRows) ColumnTypeNullable(i int) (bool, bool) {
	if c, ok := r.Rows.(driver.RowsColumnTypeNullable); ok {
		return c.ColumnTypeNullable(i)
	}
	return false, false
}

func (r *writeRows) ColumnTypePrecisionScale(i int) (int64, int64, bool) {
	if c, ok := r.Rows.(driver.RowsColumnTypePrecisionScale); ok {
		return c.ColumnTypePrecisionScale(i)
	}
	return 0, 0, false
}

var (
	_ driver.Connector          = (*writeConnector)(nil)
	_ driver.ExecerContext      = (*writeConn)(nil)
	_ driver.QueryerContext     = (*writeConn)(nil)
	_ driver.ConnPrepareContext = (*writeConn)(nil)
	_ driver.ConnBeginTx        = (*writeConn)(nil)
	_ driver.Pinger             = (*writeConn)(nil)
	_ driver.SessionResetter    = (*writeConn)(nil)
	_ driver.Validator          = (*writeConn)(nil)
	_ driver.NamedValueChecker  = (*writeConn)(nil)
	_ driver.RowsNextResultSet  = (*writeRows)(nil)
)
