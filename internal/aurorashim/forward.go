package aurorashim

import (
	"context"
	"database/sql/driver"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/go-sql-driver/mysql"
)

// ErrCodeForwardingRestricted is the MySQL error number the emulation
// returns for a statement that write forwarding does not support.
const ErrCodeForwardingRestricted = 1235

// forwardSession is the shim's form of the production statement
// "SET aurora_replica_read_consistency = ..." (see [Renames]).
const forwardSession = "SET @aurora_replica_read_consistency"

// ForwardingConnector returns a connector for dsn (a reader endpoint, as
// for [Shim.Connector]) whose connections emulate Aurora write forwarding.
// Connections to the reader are counted as for Connector; the sessions it
// opens on the primary are counted by [Shim.ForwardedPeak].
//
// Each connection plays a session on a reader
// instance with Aurora write forwarding enabled: it holds a connection to
// the reader (the endpoint it was given) and one to the stack's primary.
// Writes, transactions and locking reads go to the primary; other reads go
// to the reader. With aurora_replica_read_consistency = SESSION (set on the
// session, as dbrouter does), a read waits until the reader has applied the
// session's last write (MASTER_GTID_WAIT of the primary's @@last_gtid), as
// Aurora's SESSION consistency does; with EVENTUAL, or with
// [Shim.ForwardEventual], it does not wait. Statements write forwarding
// does not support (DDL, XA, SAVEPOINT, LOAD DATA, LOCK TABLES) and
// transactions at another isolation level than REPEATABLE READ fail with
// MySQL error 1235 (ER_NOT_SUPPORTED_YET).
//
// It cannot show: the error numbers and texts Aurora really returns for
// restricted statements; the cost of forwarding (each forwarded statement
// is a round trip from the reader to the writer, and Aurora's SESSION wait
// follows its own redo, not a GTID); the writer-side limits
// (aurora_fwd_writer_max_connections_pct, aurora_fwd_writer_idle_timeout);
// and what happens to a forwarded session across a failover or switchover
// (forwarding must be re-enabled on the new secondary).
func (s *Shim) ForwardingConnector(dsn string) (driver.Connector, error) {
	rc, err := s.Connector(dsn)
	if err != nil {
		return nil, err
	}
	mc, err := mysql.ParseDSN(dsn)
	if err != nil {
		return nil, err
	}
	return &fwdConnector{shim: s, reader: rc, base: mc}, nil
}

// ForwardedPeak returns the most forwarded sessions that this shim's
// forwarding connections held open on the primary at once.
func (s *Shim) ForwardedPeak() int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.fwdPeak
}

func (s *Shim) forwardedOpen(d int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.fwdOpen += d
	s.fwdPeak = max(s.fwdPeak, s.fwdOpen)
}

type fwdConnector struct {
	shim   *Shim
	reader driver.Connector
	base   *mysql.Config
}

func (c *fwdConnector) Connect(ctx context.Context) (driver.Conn, error) {
	primary, err := c.shim.Stack.Primary(ctx)
	if err != nil {
		return nil, err
	}
	mc := c.base.Clone()
	mc.Addr = c.shim.Stack.Addr(primary)
	mc.Logger = &mysql.NopLogger{}
	mc.DialFunc = nil
	if mc.Timeout == 0 {
		mc.Timeout = 3 * time.Second
	}
	wconn, err := mysql.NewConnector(mc)
	if err != nil {
		return nil, err
	}
	rraw, err := c.reader.Connect(ctx)
	if err != nil {
		return nil, err
	}
	wraw, err := wconn.Connect(ctx)
	if err != nil {
		rraw.Close()
		return nil, err
	}
	w, ok := wraw.(baseConn)
	if !ok {
		rraw.Close()
		wraw.Close()
		return nil, errors.New("aurorashim: the driver's connection lacks the context interfaces")
	}
	c.shim.forwardedOpen(1)
	return &fwdConn{shim: c.shim, r: rraw.(*conn), w: w}, nil
}

func (c *fwdConnector) Driver() driver.Driver { return c.reader.Driver() }

// fwdConn is one forwarding session; database/sql uses it from one
// goroutine at a time.
type fwdConn struct {
	shim    *Shim
	r       *conn    // the reader's connection (rewrites names)
	w       baseConn // the primary's connection
	session bool     // aurora_replica_read_consistency = SESSION
	inTx    bool
	dirty   bool   // a write since the last read of @@last_gtid
	gtid    string // the session's last write
	closed  sync.Once
}

var _ baseConn = (*fwdConn)(nil)

func restricted(msg string) error {
	return &mysql.MySQLError{Number: ErrCodeForwardingRestricted, SQLState: [5]byte{'4', '2', '0', '0', '0'},
		Message: "This version of MySQL doesn't yet support '" + msg + " with write forwarding'"}
}

// kind says where q goes: "read" (the reader), "write" (the primary), or a
// restriction ("" means none).
func kind(q string) (read bool, restrict string) {
	u := strings.ToUpper(strings.TrimSpace(q))
	first, _, _ := strings.Cut(u, " ")
	switch first {
	case "CREATE", "ALTER", "DROP", "TRUNCATE", "RENAME":
		return false, "DDL"
	case "XA":
		return false, "XA transactions"
	case "SAVEPOINT", "RELEASE":
		return false, "SAVEPOINT"
	case "LOAD":
		return false, "LOAD DATA"
	case "LOCK", "UNLOCK":
		return false, "LOCK TABLES"
	case "ROLLBACK":
		return false, "ROLLBACK TO SAVEPOINT"
	case "SELECT", "SHOW", "WITH", "(":
		return !strings.Contains(u, " FOR UPDATE") && !strings.Contains(u, " FOR SHARE") &&
			!strings.Contains(u, "LOCK IN SHARE MODE") && !strings.Contains(u, "GET_LOCK"), ""
	}
	return false, ""
}

// beforeRead makes a read on the reader wait, under SESSION consistency,
// for the session's last write.
func (c *fwdConn) beforeRead(ctx context.Context) error {
	if c.dirty {
		g, err := queryOne(ctx, c.w, "SELECT @@last_gtid")
		if err != nil {
			return err
		}
		if g != "" {
			c.gtid = g
		}
		c.dirty = false
	}
	if !c.session || c.gtid == "" || c.shim.ForwardEventual {
		return nil
	}
	got, err := queryOne(ctx, c.r.baseConn, "SELECT MASTER_GTID_WAIT('"+c.gtid+"', 10)")
	if err != nil {
		return err
	}
	if got != "0" {
		return fmt.Errorf("aurorashim: the reader did not apply the session's write %s in 10 s", c.gtid)
	}
	return nil
}

func (c *fwdConn) ExecContext(ctx context.Context, q string, args []driver.NamedValue) (driver.Result, error) {
	q, err := Rewrite(q)
	if err != nil {
		return nil, err
	}
	if strings.HasPrefix(q, forwardSession) {
		_, v, _ := strings.Cut(q, "=")
		v = strings.ToUpper(strings.Trim(strings.TrimSpace(v), "'\""))
		c.session = v == "SESSION" || v == "GLOBAL"
		return c.r.baseConn.ExecContext(ctx, q, args)
	}
	read, rs := kind(q)
	if rs != "" {
		return nil, restricted(rs)
	}
	if read && !c.inTx {
		if err := c.beforeRead(ctx); err != nil {
			return nil, err
		}
		return c.r.baseConn.ExecContext(ctx, q, args)
	}
	res, err := c.w.ExecContext(ctx, q, args)
	if err == nil {
		c.dirty = true
	}
	return res, err
}

func (c *fwdConn) QueryContext(ctx context.Context, q string, args []driver.NamedValue) (driver.Rows, error) {
	q, err := Rewrite(q)
	if err != nil {
		return nil, err
	}
	read, rs := kind(q)
	if rs != "" {
		return nil, restricted(rs)
	}
	if read && !c.inTx {
		if err := c.beforeRead(ctx); err != nil {
			return nil, err
		}
		return c.r.baseConn.QueryContext(ctx, q, args)
	}
	rows, err := c.w.QueryContext(ctx, q, args)
	if err == nil {
		c.dirty = true
	}
	return rows, err
}

func (c *fwdConn) Prepare(q string) (driver.Stmt, error) {
	return c.PrepareContext(context.Background(), q)
}

func (c *fwdConn) PrepareContext(ctx context.Context, q string) (driver.Stmt, error) {
	q, err := Rewrite(q)
	if err != nil {
		return nil, err
	}
	read, rs := kind(q)
	if rs != "" {
		return nil, restricted(rs)
	}
	// Inside a transaction every statement runs on the primary (a
	// forwarded transaction sees its own writes).
	read = read && !c.inTx
	var st driver.Stmt
	if read {
		st, err = c.r.baseConn.PrepareContext(ctx, q)
	} else {
		st, err = c.w.PrepareContext(ctx, q)
	}
	if err != nil {
		return nil, err
	}
	if read {
		return &fwdStmt{Stmt: st, c: c, read: true}, nil
	}
	return &fwdStmt{Stmt: st, c: c}, nil
}

func (c *fwdConn) Begin() (driver.Tx, error) {
	return c.BeginTx(context.Background(), driver.TxOptions{})
}

func (c *fwdConn) BeginTx(ctx context.Context, opts driver.TxOptions) (driver.Tx, error) {
	if opts.Isolation != 0 && opts.Isolation != driver.IsolationLevel(4) { // sql.LevelRepeatableRead
		return nil, restricted("isolation levels other than REPEATABLE READ")
	}
	tx, err := c.w.BeginTx(ctx, opts)
	if err != nil {
		return nil, err
	}
	c.inTx = true
	return &fwdTx{Tx: tx, c: c}, nil
}

func (c *fwdConn) Ping(ctx context.Context) error { return c.r.Ping(ctx) }

func (c *fwdConn) ResetSession(ctx context.Context) error {
	c.inTx = false
	if err := c.w.ResetSession(ctx); err != nil {
		return err
	}
	return c.r.ResetSession(ctx)
}

func (c *fwdConn) IsValid() bool { return c.w.IsValid() && c.r.IsValid() }

func (c *fwdConn) CheckNamedValue(nv *driver.NamedValue) error { return c.w.CheckNamedValue(nv) }

func (c *fwdConn) Close() error {
	c.closed.Do(func() { c.shim.forwardedOpen(-1) })
	return errors.Join(c.w.Close(), c.r.Close())
}

type fwdTx struct {
	driver.Tx
	c *fwdConn
}

func (tx *fwdTx) Commit() error {
	tx.c.inTx = false
	err := tx.Tx.Commit()
	if err == nil {
		tx.c.dirty = true
	}
	return err
}

func (tx *fwdTx) Rollback() error {
	tx.c.inTx = false
	return tx.Tx.Rollback()
}

type fwdStmt struct {
	driver.Stmt
	c    *fwdConn
	read bool
}

func (s *fwdStmt) ExecContext(ctx context.Context, args []driver.NamedValue) (driver.Result, error) {
	if s.read && !s.c.inTx {
		if err := s.c.beforeRead(ctx); err != nil {
			return nil, err
		}
	}
	res, err := s.Stmt.(driver.StmtExecContext).ExecContext(ctx, args)
	if err == nil && !s.read {
		s.c.dirty = true
	}
	return res, err
}

func (s *fwdStmt) QueryContext(ctx context.Context, args []driver.NamedValue) (driver.Rows, error) {
	if s.read && !s.c.inTx {
		if err := s.c.beforeRead(ctx); err != nil {
			return nil, err
		}
	}
	rows, err := s.Stmt.(driver.StmtQueryContext).QueryContext(ctx, args)
	if err == nil && !s.read {
		s.c.dirty = true
	}
	return rows, err
}

func (s *fwdStmt) CheckNamedValue(nv *driver.NamedValue) error {
	if ch, ok := s.Stmt.(driver.NamedValueChecker); ok {
		return ch.CheckNamedValue(nv)
	}
	return driver.ErrSkip
}
