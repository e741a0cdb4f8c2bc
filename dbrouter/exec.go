package dbrouter

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"reflect"
	"strconv"

	"go.opentelemetry.io/otel/trace"
)

// This file holds the one statement-execution path. Every entry point (the
// Router's methods, the routing *sql.DB's connections, its transactions and
// prepared statements) runs its statements through [Router.execute], which
// owns the closed check, routing, the retry budget, the span and the
// metrics; the entry points only say what the statement is and how to run
// it on a chosen endpoint.

// opKind is what a call of the execution path does.
type opKind uint8

const (
	// opQuery is a statement that may return rows: routed by its text.
	opQuery opKind = iota
	// opExec is a statement that returns no rows: it may write, so it runs
	// on the writer.
	opExec
	// opBegin starts a transaction: on the writer, or for a read-only one
	// on a reader chosen like a read.
	opBegin
	// opCommit and opRollback end a transaction on its connection.
	opCommit
	opRollback
)

// stmtCall describes one call of the execution path.
type stmtCall struct {
	op    opKind
	query string                // the statement's text; "" for BEGIN, COMMIT, ROLLBACK
	ro    bool                  // opBegin: a read-only transaction; opQuery: inside one
	iso   driver.IsolationLevel // opBegin: the isolation level asked for
}

// spanText returns the text the span and metrics describe the call by (its
// operation name comes from it), and whether it is the statement's own text
// (recorded as db.query.text).
func (c stmtCall) spanText() (string, bool) {
	switch c.op {
	case opBegin:
		return "BEGIN", false
	case opCommit:
		return "COMMIT", false
	case opRollback:
		return "ROLLBACK", false
	}
	return c.query, true
}

// write reports whether the call may change data, so that a connection
// lost after it was sent leaves its outcome unknown.
func (c stmtCall) write(rt *Router) bool {
	switch c.op {
	case opExec:
		return true
	case opQuery:
		return !c.ro && !rt.classes.readOnly(c.query)
	case opBegin:
		return !c.ro
	}
	return false
}

// targetOf returns where the call runs.
func (rt *Router) targetOf(ctx context.Context, c stmtCall) target {
	return rt.forwardTarget(c, rt.routeCall(ctx, c))
}

// execute runs the call: it checks that the router is open, chooses the
// endpoint (pin, when not nil, is the endpoint of the connection the call is
// bound to: a transaction's or a session's, which is neither re-routed nor
// retried), starts the span, calls run with the span's context and the
// endpoint, retries within the budget where routing then sends the call,
// and ends the span and records the metrics with where it was served.
//
// run must not keep anything of a failed attempt: it is called again on the
// next endpoint.
func (rt *Router) execute(ctx context.Context, c stmtCall, pin *target, run func(context.Context, target) error) error {
	if rt.closed.Load() {
		return ErrClosed
	}
	var t target
	if pin != nil {
		t = *pin
		t.dir = nil // a pinned connection's statements are not combined
	} else {
		t = rt.targetOf(ctx, c)
	}
	text, isQuery := c.spanText()
	sctx, o := rt.tel.startCall(ctx, text, isQuery, t.ep, t.route, t.reason)
	err := t.err
	if err == nil {
		err = run(t.runCtx(sctx), t)
	}
	if err != nil && pin == nil && t.err == nil {
		for b := rt.attempts(); err != nil; {
			var retry bool
			if t, retry, err = rt.retryOrFail(ctx, t, c, err, &b); !retry {
				break
			}
			// The span covers every attempt; each further one is an
			// event, so that what the servers received can be matched.
			trace.SpanFromContext(sctx).AddEvent(retryEvent)
			err = run(t.runCtx(sctx), t)
		}
	}
	rt.tel.endStatement(ctx, o, t.ep, t.route, t.reason, err)
	return err
}

// retryEvent is the span event of each further attempt of a statement (on
// another endpoint: after a reader failed, or a read's position guard).
const retryEvent = "regiondb.retry"

// retryBudget bounds the retries of one statement: each failing reader is
// excluded before its read is re-routed (so at most one retry per reader),
// and the writer is retried once.
type retryBudget struct {
	readers int
	writer  bool
	guard   bool // a read whose guard failed may be sent elsewhere once
}

func (rt *Router) attempts() retryBudget {
	return retryBudget{readers: len(rt.rdrs()), writer: true, guard: true}
}

// retryOrFail handles err of the call c on t: a reader's failure excludes the
// reader and re-routes the call (to another fresh reader, or the writer);
// the writer's goes to writerFailed. It reports whether to run the call again
// on the returned target.
func (rt *Router) retryOrFail(ctx context.Context, t target, c stmtCall, err error, b *retryBudget) (target, bool, error) {
	if t.w != nil && t.w == rt.fwd {
		return rt.forwardFailed(ctx, t, c, err, b)
	}
	if t.route == telRouteWriter {
		write := c.write(rt)
		if !b.writer {
			t, _, err = rt.writerFailedFinal(ctx, t, write, err)
			return t, false, err
		}
		b.writer = false
		return rt.writerFailed(ctx, t, write, err)
	}
	if ge, ok := errors.AsType[*guardError](err); ok && (b.guard || ge.d.retry) {
		// The reader had not applied the position in time: the read
		// did not run. Not a failure of the reader.
		b.guard = false
		n := rt.afterGuard(ctx, ge.d)
		if n.err != nil {
			return t, false, n.err
		}
		return n, true, nil
	}
	if b.readers > 0 && rt.excludeReader(ctx, t.db, err) {
		b.readers--
		n := rt.route(ctx, c.query, c.ro || c.op == opBegin)
		if n.err != nil {
			return t, false, n.err
		}
		if n.route == telRouteReader {
			n.reason = telReasonRetry
		}
		return n, true, nil
	}
	return t, false, unwrapConnectError(err)
}

// physConn is a physical connection of one endpoint's pool, held by a
// connection of the routing *sql.DB while a statement, its rows, a
// transaction or session state need it.
//
// The driver connection is taken out of the *sql.Conn with [sql.Conn.Raw]
// and used after Raw returns, while the *sql.Conn is held. database/sql
// touches a held connection only when it is released (Close), so nothing
// else uses it meanwhile; the routing connection that holds it is used by
// one goroutine at a time (database/sql's guarantee to drivers).
type physConn struct {
	sc *sql.Conn
	dc driver.Conn
	t  target
}

// maxBadConnRetries is how often a statement that got driver.ErrBadConn
// (it was not sent) is tried again on another connection of the same pool,
// as database/sql does, before the endpoint is considered failed.
const maxBadConnRetries = 2

// onConn takes a connection of t's pool and calls f with it. A connection
// that reports driver.ErrBadConn is discarded and f is tried again on
// another (the statement was not sent); when f succeeds and keep is true,
// the connection stays held and is returned, otherwise it is released.
func onConn(ctx context.Context, t target, keep bool, f func(driver.Conn) error) (physConn, error) {
	var err error
	for range maxBadConnRetries + 1 {
		var p physConn
		if p, err = acquire(ctx, t); err != nil {
			return physConn{}, err
		}
		err = f(p.dc)
		if err == nil {
			if !keep {
				p.release(nil)
				return physConn{}, nil
			}
			return p, nil
		}
		p.release(err)
		if !errors.Is(err, driver.ErrBadConn) {
			return physConn{}, err
		}
	}
	return physConn{}, err
}

// acquire takes a connection of t's pool.
func acquire(ctx context.Context, t target) (physConn, error) {
	sc, err := t.db.Conn(ctx)
	if err != nil {
		return physConn{}, err
	}
	var dc driver.Conn
	if err := sc.Raw(func(c any) error {
		dc, _ = c.(driver.Conn)
		return nil
	}); err != nil {
		sc.Close()
		return physConn{}, err
	}
	return physConn{sc: sc, dc: dc, t: t}, nil
}

// release returns the connection to its pool; err is the last error it
// gave, and a driver.ErrBadConn makes the pool discard it.
func (p *physConn) release(err error) {
	if p.sc == nil {
		return
	}
	if errors.Is(err, driver.ErrBadConn) {
		_ = p.sc.Raw(func(any) error { return driver.ErrBadConn })
	}
	_ = p.sc.Close()
	p.sc, p.dc = nil, nil
}

// convertArgs converts args in place with the driver connection's own
// NamedValueChecker (falling back to database/sql's default conversion), as
// database/sql does for a bare driver: the routing connection accepts every
// argument unchanged and leaves the conversion to the endpoint's driver.
func convertArgs(dc driver.Conn, args []driver.NamedValue) ([]driver.NamedValue, error) {
	checker, _ := dc.(driver.NamedValueChecker)
	n := 0
	for i := range args {
		nv := &args[i]
		err := driver.ErrSkip
		if checker != nil {
			err = checker.CheckNamedValue(nv)
		}
		if err == driver.ErrSkip {
			nv.Value, err = driver.DefaultParameterConverter.ConvertValue(nv.Value)
		}
		switch err {
		case nil:
			args[n] = *nv
			n++
		case driver.ErrRemoveArgument:
		default:
			name := "$" + strconv.Itoa(nv.Ordinal)
			if nv.Name != "" {
				name = "$" + nv.Name
			}
			return nil, fmt.Errorf("dbrouter: converting argument %s: %w", name, err)
		}
	}
	return args[:n], nil
}

// execOn runs an Exec on dc: directly, or (when the driver asks for a
// prepared statement with driver.ErrSkip) prepared, executed and closed.
func execOn(ctx context.Context, dc driver.Conn, query string, args []driver.NamedValue) (driver.Result, error) {
	args, err := convertArgs(dc, args)
	if err != nil {
		return nil, err
	}
	if e, ok := dc.(driver.ExecerContext); ok {
		res, err := e.ExecContext(ctx, query, args)
		if err != driver.ErrSkip {
			return res, err
		}
	}
	st, err := prepareOn(ctx, dc, query)
	if err != nil {
		return nil, err
	}
	defer st.Close()
	return stmtExec(ctx, st, args)
}

// queryOn runs a Query on dc like execOn. When it had to prepare, the
// statement is returned too: close it after the rows.
func queryOn(ctx context.Context, dc driver.Conn, query string, args []driver.NamedValue) (driver.Rows, driver.Stmt, error) {
	args, err := convertArgs(dc, args)
	if err != nil {
		return nil, nil, err
	}
	if q, ok := dc.(driver.QueryerContext); ok {
		rows, err := q.QueryContext(ctx, query, args)
		if err != driver.ErrSkip {
			return rows, nil, err
		}
	}
	st, err := prepareOn(ctx, dc, query)
	if err != nil {
		return nil, nil, err
	}
	rows, err := stmtQuery(ctx, st, args)
	if err != nil {
		st.Close()
		return nil, nil, err
	}
	return rows, st, nil
}

func prepareOn(ctx context.Context, dc driver.Conn, query string) (driver.Stmt, error) {
	if p, ok := dc.(driver.ConnPrepareContext); ok {
		return p.PrepareContext(ctx, query)
	}
	return dc.Prepare(query)
}

func stmtExec(ctx context.Context, st driver.Stmt, args []driver.NamedValue) (driver.Result, error) {
	if e, ok := st.(driver.StmtExecContext); ok {
		return e.ExecContext(ctx, args)
	}
	vals, err := namedToValues(args)
	if err != nil {
		return nil, err
	}
	return st.Exec(vals) //nolint:staticcheck // fallback for old drivers
}

func stmtQuery(ctx context.Context, st driver.Stmt, args []driver.NamedValue) (driver.Rows, error) {
	if q, ok := st.(driver.StmtQueryContext); ok {
		return q.QueryContext(ctx, args)
	}
	vals, err := namedToValues(args)
	if err != nil {
		return nil, err
	}
	return st.Query(vals) //nolint:staticcheck // fallback for old drivers
}

func beginOn(ctx context.Context, dc driver.Conn, opts driver.TxOptions) (driver.Tx, error) {
	if b, ok := dc.(driver.ConnBeginTx); ok {
		return b.BeginTx(ctx, opts)
	}
	if opts.ReadOnly || opts.Isolation != 0 {
		return nil, errors.New("dbrouter: driver does not support transaction options")
	}
	return dc.Begin() //nolint:staticcheck // fallback for old drivers
}

// wrappedRows is embedded by the router's driver.Rows wrappers: it forwards
// the optional column-type interfaces of the rows it wraps, so that
// database/sql describes a wrapper's columns as the driver's own.
type wrappedRows struct{ driver.Rows }

func (r wrappedRows) ColumnTypeScanType(i int) reflect.Type {
	if c, ok := r.Rows.(driver.RowsColumnTypeScanType); ok {
		return c.ColumnTypeScanType(i)
	}
	return reflect.TypeFor[any]()
}

func (r wrappedRows) ColumnTypeDatabaseTypeName(i int) string {
	if c, ok := r.Rows.(driver.RowsColumnTypeDatabaseTypeName); ok {
		return c.ColumnTypeDatabaseTypeName(i)
	}
	return ""
}

func (r wrappedRows) ColumnTypeLength(i int) (int64, bool) {
	if c, ok := r.Rows.(driver.RowsColumnTypeLength); ok {
		return c.ColumnTypeLength(i)
	}
	return 0, false
}

func (r wrappedRows) ColumnTypeNullable(i int) (bool, bool) {
	if c, ok := r.Rows.(driver.RowsColumnTypeNullable); ok {
		return c.ColumnTypeNullable(i)
	}
	return false, false
}

func (r wrappedRows) ColumnTypePrecisionScale(i int) (int64, int64, bool) {
	if c, ok := r.Rows.(driver.RowsColumnTypePrecisionScale); ok {
		return c.ColumnTypePrecisionScale(i)
	}
	return 0, 0, false
}
