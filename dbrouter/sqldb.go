package dbrouter

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"io"
	"sync"
	"sync/atomic"
)

// DB returns the router's routing pool: a [*sql.DB] whose statements follow
// the router's rules, for data layers and code that need a *sql.DB (GORM,
// sqlx, ent, bun, otelsql, the Prometheus DBStats collector). Every method of
// *sql.DB works on it, and every statement it runs, directly, in a
// [*sql.Conn], in a transaction or as a prepared statement, is routed and
// traced like the same statement run through the Router's own methods:
// classified by its text, with the read-your-writes scope of the
// statement's context, the bounded wait, the fallbacks and the failover.
// Its writes advance the scope's position like [Router.ExecContext]'s.
//
// The connection model: a connection of the routing pool is logical. It
// holds a physical connection of an endpoint's pool (one per endpoint,
// limited by [Config].WriterPool and ReaderPool) only while it needs one:
//   - a statement, until it returns; or, for a query, until its rows are
//     closed;
//   - a transaction, from BeginTx until Commit or Rollback: a read-write
//     transaction on the writer, a read-only one on a reader that has
//     applied the position the scope requires (or the writer);
//   - session state: a statement that leaves state on its session (SET,
//     USE, LOCK TABLES, CREATE or DROP TEMPORARY TABLE, GET_LOCK and the
//     other lock functions, user variables, SQL_CALC_FOUND_ROWS, PREPARE,
//     and INSERT or REPLACE, whose LAST_INSERT_ID the next statement may
//     read) pins the connection to the writer's physical connection it ran
//     on, and every later statement of that connection runs there, until
//     database/sql returns the connection to the routing pool or resets it
//     ([driver.SessionResetter]). Hold a [*sql.Conn] to keep such state
//     across statements, as with any *sql.DB.
//
// So physical connections follow the statements in flight per role, not
// the requests that hold a *sql.Conn or a transaction of the routing pool
// between statements. Because they are taken and given back per
// statement, keep an endpoint pool's MaxIdleConns ([PoolConfig]) near its
// MaxOpenConns under concurrency, or connections given back beyond the idle
// limit are closed and soon reopened. SetMaxOpenConns and the other pool
// settings of the routing pool limit its logical connections; Stats
// reports them.
//
// Prepared statements (Prepare, PrepareContext, Tx.Prepare, GORM's
// PrepareStmt) send nothing when prepared: each execution runs on the
// endpoint routing chooses and is prepared there as the driver needs. The
// context-less methods (Exec, Query, QueryRow, Begin, Prepare, Ping) behave
// as their context versions with [context.Background]: no scope, so reads
// are eventual.
//
// Closing the routing pool closes the router, and [Router.Close] closes
// it; DB returns the same *sql.DB every time.
func (rt *Router) DB() *sql.DB { return rt.sqldb }

// GetDBConn returns [Router.DB]. GORM calls it when the router itself is
// its connection pool (gorm.Open(mysql.New(mysql.Config{Conn: rt}))), for
// db.DB(), PrepareStmt and db.Connection. After [Router.Close] it returns
// [ErrClosed].
func (rt *Router) GetDBConn() (*sql.DB, error) {
	if rt.closed.Load() {
		return nil, ErrClosed
	}
	return rt.sqldb, nil
}

// Connector returns a [driver.Connector] of the router's logical
// connections, for wrappers that take one (otelsql.OpenDB): every
// [sql.OpenDB] of it is a routing pool like [Router.DB], sharing the
// router's endpoint pools. Closing such a pool closes the router.
func (rt *Router) Connector() driver.Connector { return routingConnector{rt} }

// routingIdleConns is the routing pool's default idle limit: an idle
// logical connection holds no physical one and costs a small struct, and
// keeping them saves database/sql's churn of opening and closing them under
// concurrency.
const routingIdleConns = 256

// newRoutingDB opens the routing pool of rt. It does not connect.
func newRoutingDB(rt *Router) *sql.DB {
	db := sql.OpenDB(routingConnector{rt})
	db.SetMaxIdleConns(routingIdleConns)
	return db
}

// routingConnector makes the logical connections of the routing pool.
type routingConnector struct{ rt *Router }

func (c routingConnector) Connect(context.Context) (driver.Conn, error) {
	if c.rt.closed.Load() {
		return nil, ErrClosed
	}
	return &routingConn{rt: c.rt}, nil
}

func (c routingConnector) Driver() driver.Driver { return routingDriver{} }

// Close is called by [sql.DB.Close] of the routing pool: it closes the
// router (unless the router is closing it).
func (c routingConnector) Close() error {
	if c.rt.closed.Load() {
		return nil
	}
	return c.rt.Close()
}

// errNoDSN is returned by the routing pool's Driver().Open.
var errNoDSN = errors.New("dbrouter: the routing pool has no DSN: use Router.DB")

// routingDriver is what [sql.DB.Driver] returns for the routing pool.
type routingDriver struct{}

func (routingDriver) Open(string) (driver.Conn, error) { return nil, errNoDSN }

// routingConn is a logical connection of the routing pool. database/sql
// uses it from one goroutine at a time.
type routingConn struct {
	rt *Router
	// pin is the physical connection held between statements (pin.sc !=
	// nil): by a transaction (inTx) and/or by session state (session).
	pin     physConn
	inTx    bool
	session bool
	// rows is lent to the connection's statements while rowsLent is
	// false, so that a read allocates no rows wrapper: most statements
	// close their rows before the next one. database/sql calls a
	// connection and its rows under one lock, so both fields need no
	// other.
	rows     routingRows
	rowsLent bool
}

// newRows returns the wrapper of r, the rows of the statement st (if not
// nil) on the physical connection p (released when the rows close, if
// p.sc is not nil).
func (c *routingConn) newRows(r driver.Rows, st driver.Stmt, p physConn) *routingRows {
	if c.rowsLent {
		return &routingRows{wrappedRows: wrappedRows{r}, st: st, p: p}
	}
	c.rowsLent = true
	c.rows = routingRows{wrappedRows: wrappedRows{r}, st: st, p: p, c: c}
	return &c.rows
}

func (c *routingConn) pinned() *target {
	if c.pin.sc == nil {
		return nil
	}
	return &c.pin.t
}

// unpin releases the held physical connection unless a transaction or
// session state still needs it; err is its last error.
func (c *routingConn) unpin(err error) {
	if c.inTx || c.session || c.pin.sc == nil {
		if c.pin.sc != nil && errors.Is(err, driver.ErrBadConn) {
			c.inTx, c.session = false, false
			c.pin.release(err)
		}
		return
	}
	c.pin.release(err)
}

// sessionCache remembers sessionStmt per statement text, like classCache
// for readOnly. The zero value is ready to use.
type sessionCache struct {
	m sync.Map     // string -> bool
	n atomic.Int32 // entries stored
}

func (c *sessionCache) pins(q string) bool {
	if v, ok := c.m.Load(q); ok {
		return v.(bool)
	}
	pin := sessionStmt(q)
	if c.n.Load() < classCacheSize {
		if _, loaded := c.m.LoadOrStore(q, pin); !loaded {
			c.n.Add(1)
		}
	}
	return pin
}

func (c *routingConn) ExecContext(ctx context.Context, query string, args []driver.NamedValue) (driver.Result, error) {
	var res driver.Result
	call := stmtCall{op: opExec, query: query}
	if pin := c.pinned(); pin != nil {
		err := c.rt.execute(ctx, call, pin, func(ctx context.Context, _ target) (err error) {
			res, err = execOn(ctx, c.pin.dc, query, args)
			return err
		})
		c.unpin(err)
		return res, err
	}
	keep := c.rt.sessions.pins(query)
	err := c.rt.execute(ctx, call, nil, func(ctx context.Context, t target) error {
		p, err := onConn(ctx, t, keep, func(dc driver.Conn) (err error) {
			res, err = execOn(ctx, dc, query, args)
			return err
		})
		if err == nil && keep {
			c.pin, c.session = p, true
		}
		return err
	})
	return res, err
}

func (c *routingConn) QueryContext(ctx context.Context, query string, args []driver.NamedValue) (driver.Rows, error) {
	var rows *routingRows
	call := stmtCall{op: opQuery, query: query}
	if pin := c.pinned(); pin != nil {
		call.ro = c.inTx && pin.route == telRouteReader
		err := c.rt.execute(ctx, call, pin, func(ctx context.Context, _ target) error {
			r, st, err := queryOn(ctx, c.pin.dc, query, args)
			if err == nil {
				rows = c.newRows(r, st, physConn{})
			}
			return err
		})
		c.unpin(err)
		if err != nil {
			return nil, err
		}
		return rows, nil
	}
	keep := c.rt.sessions.pins(query)
	var pin *target
	var w target
	if keep {
		// Session state lives on the writer's session, also for a read
		// of a user variable.
		w = c.rt.toWriter(telReasonWrite)
		pin = &w
	}
	err := c.rt.execute(ctx, call, pin, func(ctx context.Context, t target) error {
		var r driver.Rows
		var st driver.Stmt
		p, err := onConn(ctx, t, true, func(dc driver.Conn) (err error) {
			r, st, err = queryOn(ctx, dc, query, args)
			return err
		})
		if err != nil {
			return err
		}
		if keep {
			c.pin, c.session = p, true
			rows = c.newRows(r, st, physConn{})
		} else {
			rows = c.newRows(r, st, p)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return rows, nil
}

func (c *routingConn) PrepareContext(_ context.Context, query string) (driver.Stmt, error) {
	if c.rt.closed.Load() {
		return nil, ErrClosed
	}
	return &routingStmt{c: c, query: query}, nil
}

func (c *routingConn) Prepare(query string) (driver.Stmt, error) {
	return c.PrepareContext(context.Background(), query)
}

func (c *routingConn) Begin() (driver.Tx, error) {
	return c.BeginTx(context.Background(), driver.TxOptions{})
}

func (c *routingConn) BeginTx(ctx context.Context, opts driver.TxOptions) (driver.Tx, error) {
	var dtx driver.Tx
	call := stmtCall{op: opBegin, ro: opts.ReadOnly, iso: opts.Isolation}
	if pin := c.pinned(); pin != nil {
		err := c.rt.execute(ctx, call, pin, func(ctx context.Context, _ target) (err error) {
			dtx, err = beginOn(ctx, c.pin.dc, opts)
			return err
		})
		if err != nil {
			c.unpin(err)
			return nil, err
		}
		c.inTx = true
		return &routingTx{c: c, tx: dtx, ctx: ctx}, nil
	}
	err := c.rt.execute(ctx, call, nil, func(ctx context.Context, t target) error {
		p, err := onConn(ctx, t, true, func(dc driver.Conn) (err error) {
			dtx, err = beginOn(ctx, dc, opts)
			return err
		})
		if err == nil {
			c.pin, c.inTx = p, true
		}
		return err
	})
	if err != nil {
		return nil, err
	}
	return &routingTx{c: c, tx: dtx, ctx: ctx}, nil
}

// Ping checks every endpoint, like [Router.PingContext].
func (c *routingConn) Ping(ctx context.Context) error {
	if pin := c.pinned(); pin != nil {
		if p, ok := c.pin.dc.(driver.Pinger); ok {
			return p.Ping(ctx)
		}
		return nil
	}
	return c.rt.PingContext(ctx)
}

// ResetSession drops the session pin: database/sql resets a connection
// before it reuses it.
func (c *routingConn) ResetSession(context.Context) error {
	if c.rt.closed.Load() {
		return driver.ErrBadConn
	}
	c.session = false
	c.unpin(nil)
	return nil
}

// IsValid is called before database/sql puts the connection back into the
// routing pool: the session pin ends there, so that an idle logical
// connection holds no physical one.
func (c *routingConn) IsValid() bool {
	c.session = false
	c.unpin(nil)
	return !c.rt.closed.Load()
}

// CheckNamedValue accepts every argument: the endpoint's driver converts
// them when the statement runs (see convertArgs).
func (c *routingConn) CheckNamedValue(*driver.NamedValue) error { return nil }

func (c *routingConn) Close() error {
	if c.pin.sc != nil {
		var err error
		if c.inTx {
			err = driver.ErrBadConn // an unfinished transaction: discard its connection
		}
		c.inTx, c.session = false, false
		c.pin.release(err)
	}
	return nil
}

// routingTx is a transaction of the routing pool, on its pinned connection.
type routingTx struct {
	c   *routingConn
	tx  driver.Tx
	ctx context.Context // BeginTx's: the scope the commit advances, the spans' parent
}

func (tx *routingTx) end(op opKind, f func() error) error {
	c := tx.c
	pin := c.pinned()
	if pin == nil {
		return driver.ErrBadConn
	}
	err := c.rt.execute(tx.ctx, stmtCall{op: op}, pin, func(context.Context, target) error { return f() })
	if errors.Is(err, ErrClosed) {
		_ = tx.tx.Rollback()
	}
	c.inTx = false
	c.unpin(err)
	return err
}

func (tx *routingTx) Commit() error   { return tx.end(opCommit, tx.tx.Commit) }
func (tx *routingTx) Rollback() error { return tx.end(opRollback, tx.tx.Rollback) }

// routingStmt is a prepared statement of the routing pool: it runs like the
// same statement sent on its connection (see [Router.DB]).
type routingStmt struct {
	c     *routingConn
	query string
}

func (s *routingStmt) Close() error  { return nil }
func (s *routingStmt) NumInput() int { return -1 }

func (s *routingStmt) ExecContext(ctx context.Context, args []driver.NamedValue) (driver.Result, error) {
	return s.c.ExecContext(ctx, s.query, args)
}

func (s *routingStmt) QueryContext(ctx context.Context, args []driver.NamedValue) (driver.Rows, error) {
	return s.c.QueryContext(ctx, s.query, args)
}

func (s *routingStmt) Exec(args []driver.Value) (driver.Result, error) {
	return s.c.ExecContext(context.Background(), s.query, valuesToNamed(args))
}

func (s *routingStmt) Query(args []driver.Value) (driver.Rows, error) {
	return s.c.QueryContext(context.Background(), s.query, valuesToNamed(args))
}

func (s *routingStmt) CheckNamedValue(*driver.NamedValue) error { return nil }

func valuesToNamed(args []driver.Value) []driver.NamedValue {
	nv := make([]driver.NamedValue, len(args))
	for i, v := range args {
		nv[i] = driver.NamedValue{Ordinal: i + 1, Value: v}
	}
	return nv
}

// routingRows are the rows of a statement of the routing pool. Closing
// them closes the statement prepared for them, if any, and releases the
// physical connection, unless the logical connection holds it.
type routingRows struct {
	wrappedRows
	st   driver.Stmt
	p    physConn
	done bool
	c    *routingConn // not nil: r is c.rows, lent until closed
}

func (r *routingRows) Close() error {
	if r.done {
		return nil
	}
	r.done = true
	if r.c != nil {
		r.c.rowsLent = false
	}
	err := r.Rows.Close()
	if r.st != nil {
		if serr := r.st.Close(); err == nil {
			err = serr
		}
	}
	r.p.release(err)
	return err
}

func (r *routingRows) HasNextResultSet() bool {
	if n, ok := r.Rows.(driver.RowsNextResultSet); ok {
		return n.HasNextResultSet()
	}
	return false
}

func (r *routingRows) NextResultSet() error {
	if n, ok := r.Rows.(driver.RowsNextResultSet); ok {
		return n.NextResultSet()
	}
	return io.EOF
}

var (
	_ driver.Connector          = routingConnector{}
	_ io.Closer                 = routingConnector{}
	_ driver.ExecerContext      = (*routingConn)(nil)
	_ driver.QueryerContext     = (*routingConn)(nil)
	_ driver.ConnPrepareContext = (*routingConn)(nil)
	_ driver.ConnBeginTx        = (*routingConn)(nil)
	_ driver.Pinger             = (*routingConn)(nil)
	_ driver.SessionResetter    = (*routingConn)(nil)
	_ driver.Validator          = (*routingConn)(nil)
	_ driver.NamedValueChecker  = (*routingConn)(nil)
	_ driver.StmtExecContext    = (*routingStmt)(nil)
	_ driver.StmtQueryContext   = (*routingStmt)(nil)
	_ driver.NamedValueChecker  = (*routingStmt)(nil)
	_ driver.RowsNextResultSet  = (*routingRows)(nil)
)
