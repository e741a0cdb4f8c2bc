package dbrouter

import (
	"context"
	"database/sql/driver"
	"errors"
	"io"
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
//
// When the pool combines statements (see Config.DisableCombinedStatements)
// the position read rides in the same text as the write: an autocommit
// ExecContext in a scope sends "<head>; <statement>; <tail>" and a COMMIT
// "COMMIT; <tail>" (see combineSQL), so these writes cost one round trip;
// an INSERT or REPLACE is combined only when its Result is provably the
// driver's own (see writeConn.combinable).
type writeConnector struct {
	inner driver.Connector
	rt    *Router
	name  string // endpoint name, for outcome-unknown errors
	comb  combining
	// schema is the DSN's database, which unqualified table names of a
	// session that never changed it refer to ("" if none).
	schema string
	// forward marks the pool of a write forwarding endpoint (forward.go).
	forward bool
}

func (c *writeConnector) Connect(ctx context.Context) (driver.Conn, error) {
	conn, err := c.inner.Connect(ctx)
	if err != nil {
		return nil, err
	}
	return &writeConn{Conn: conn, rt: c.rt, name: c.name, comb: c.comb, forward: c.forward, schema: c.schema}, nil
}

func (c *writeConnector) Driver() driver.Driver { return c.inner.Driver() }

// writeConn is used by one goroutine at a time (database/sql's guarantee).
type writeConn struct {
	driver.Conn
	rt      *Router
	name    string
	inTx    bool
	comb    combining
	forward bool // a forwarding session (see forward.go)
	schema  string
	// session is set once the session ran a statement that may have
	// changed what table names mean on it (see noteStatement).
	session bool
}

// check refuses a text of more than one statement on a combining pool,
// and returns where its statement ends.
func (c *writeConn) check(query string, args bool) (int, error) {
	if !c.comb.on {
		return len(query), nil
	}
	end, ok := c.rt.stmts.end(query, args)
	if !ok {
		return 0, ErrMultiStatement
	}
	c.noteStatement(query[:end])
	return end, nil
}

// combinedExec runs an autocommit write of scope t with its position read
// in the same text. ok is false when the write must take the separate
// path (the driver cannot interpolate its arguments); nothing was sent
// then.
func (c *writeConn) combinedExec(ctx context.Context, t *tracker, query string, args []driver.NamedValue) (res driver.Result, ok bool, err error) {
	q, isQ := c.Conn.(driver.QueryerContext)
	if !isQ {
		return nil, false, nil
	}
	cs := c.comb.sql
	text := cs.writeHead + ";\n" + query + "\n;\n" + cs.writeTail
	rows, err := q.QueryContext(ctx, text, args)
	if err == driver.ErrSkip {
		return nil, false, nil
	}
	if err != nil {
		return nil, true, err
	}
	vals, err := lastResultSet(rows)
	if err != nil {
		// The write ran (its error would have come first); its position
		// is unknown, as when the separate read fails.
		c.rt.stats.writePosFailures.Add(1)
		t.writerOnly.Store(true)
		return nil, true, err
	}
	gtid, _ := valueText(vals[0])
	n, nerr := valueInt(vals[1])
	id, ierr := valueInt(vals[2])
	if nerr != nil || ierr != nil {
		c.rt.stats.writePosFailures.Add(1)
		t.writerOnly.Store(true)
		return nil, true, errNoPosition
	}
	c.advance(t, gtid)
	return combinedResult{id: id, rows: n}, true, nil
}

// advance parses the writer position s and advances t with it.
func (c *writeConn) advance(t *tracker, s string) {
	p, err := c.rt.dialect.parseWriter(s)
	if err != nil {
		c.rt.stats.writePosFailures.Add(1)
		t.writerOnly.Store(true)
		return
	}
	c.rt.noteWrite(p)
	t.advance(p, true)
}

// lastResultSet returns the first row of the last result set of rows (the
// tail's) and closes rows. (A driver knows whether another result set
// follows only once the current one is read to its end.)
func lastResultSet(rows driver.Rows) ([]driver.Value, error) {
	defer rows.Close()
	n, ok := rows.(driver.RowsNextResultSet)
	if !ok {
		return nil, errNoPosition
	}
	for {
		vals := make([]driver.Value, len(rows.Columns()))
		var first []driver.Value
		var err error
		for err == nil {
			if err = rows.Next(vals); err == nil && first == nil {
				first = append([]driver.Value(nil), vals...)
			}
		}
		if err != io.EOF {
			return nil, err
		}
		if !n.HasNextResultSet() {
			if len(first) == 0 {
				return nil, errNoPosition
			}
			return first, nil
		}
		if err := n.NextResultSet(); err != nil {
			return nil, err
		}
	}
}

func valueInt(v driver.Value) (int64, error) {
	s, ok := valueText(v)
	if !ok {
		return 0, errNoPosition
	}
	if n, err := strconv.ParseInt(s, 10, 64); err == nil {
		return n, nil
	}
	u, err := strconv.ParseUint(s, 10, 64)
	return int64(u), err
}

// combinedResult is the result of a combined write, from ROW_COUNT() and
// LAST_INSERT_ID() (see mariaDialect.combine).
type combinedResult struct{ id, rows int64 }

func (r combinedResult) LastInsertId() (int64, error) { return r.id, nil }
func (r combinedResult) RowsAffected() (int64, error) { return r.rows, nil }

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
	c.rt.noteWrite(p)
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
	end, err := c.check(query, len(args) > 0)
	if err != nil {
		return nil, err
	}
	if t := trackerFrom(ctx); t != nil && !c.inTx && c.comb.sql != nil && c.comb.on && end > 0 && c.combinable(ctx, query[:end]) {
		if res, ok, err := c.combinedExec(ctx, t, query[:end], args); ok {
			return res, err
		}
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
	if _, err := c.check(query, len(args) > 0); err != nil {
		return nil, err
	}
	rows, err := q.QueryContext(ctx, query, args)
	if err != nil && c.inTx {
		err = c.txFailed(ctx, err)
	}
	if err != nil || c.inTx || readOnly(query) {
		return rows, err
	}
	return &writeRows{wrappedRows: wrappedRows{rows}, c: c, ctx: ctx}, nil
}

func (c *writeConn) PrepareContext(ctx context.Context, query string) (driver.Stmt, error) {
	if _, err := c.check(query, false); err != nil {
		return nil, err
	}
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
	c := tx.c
	if q, ok := c.Conn.(driver.QueryerContext); ok && tx.t != nil && !tx.readOnly && c.comb.on && c.comb.sql != nil {
		// COMMIT and the position read in one text. The driver's own
		// transaction object is done with: it holds no state beyond
		// its connection.
		rows, err := q.QueryContext(context.Background(), "COMMIT;\n"+c.comb.sql.commitTail, nil)
		c.inTx = false
		if err != nil {
			return c.txFailed(context.Background(), err)
		}
		vals, err := lastResultSet(rows)
		if err != nil {
			c.rt.stats.writePosFailures.Add(1)
			tx.t.writerOnly.Store(true)
			return nil // committed; the position is unknown
		}
		s, _ := valueText(vals[0])
		c.advance(tx.t, s)
		return nil
	}
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
	return &writeRows{wrappedRows: wrappedRows{rows}, c: s.c, ctx: ctx}, nil
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
	wrappedRows
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
