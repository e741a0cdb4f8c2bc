package dbrouter

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"strings"
	"time"

	"github.com/go-sql-driver/mysql"
)

// Aurora write forwarding (see [Config].WriteForwarding).
//
// A router whose region has a forwarding endpoint sends its writes there
// while the writer is in another region: the local reader endpoint forwards
// them to the writer over Aurora's own connections, so the processes of a
// secondary region hold no connections to the writer. Each connection of
// the forwarding pool sets aurora_replica_read_consistency = SESSION when it
// opens, so that a read on it after a write waits until the reader shows
// the write; the read-your-writes position of a forwarded write is read on
// the same session right after it (the heartbeat as the reader then shows
// it, plus one beat), which is therefore at or after the write.

// Defaults of the forwarding pool ([Config].ForwardingPool).
const (
	// DefaultForwardingMaxOpenConns is the default maximum number of open
	// connections to the forwarding endpoint. Each forwarded session also
	// holds a session on the writer (capped there by
	// aurora_fwd_writer_max_connections_pct), so the pool is small.
	DefaultForwardingMaxOpenConns = 4
	// DefaultForwardingMaxIdleConns is the default number of idle
	// forwarding connections kept.
	DefaultForwardingMaxIdleConns = 2
	// DefaultForwardingConnMaxIdleTime is the default time a forwarding
	// connection may be idle: shorter than Aurora's default
	// aurora_fwd_writer_idle_timeout (60 s), so the pool closes a session
	// before the writer does.
	DefaultForwardingConnMaxIdleTime = 30 * time.Second
)

// forwardConsistencyQuery is run on every new forwarding connection.
const forwardConsistencyQuery = "SET aurora_replica_read_consistency = 'SESSION'"

// erNotSupportedYet is MySQL's ER_NOT_SUPPORTED_YET, which Aurora returns
// for a statement that write forwarding does not support.
const erNotSupportedYet = 1235

// forwardError returns err typed as a forwarding restriction when the
// forwarding endpoint refused the statement as unsupported, or nil.
func forwardError(endpoint string, err error) error {
	var me *mysql.MySQLError
	if errors.As(err, &me) && me.Number == erNotSupportedYet {
		return &forwardRestrictedError{endpoint: endpoint, err: err}
	}
	return nil
}

// forwardable reports whether the router may send q to the forwarding
// endpoint: an allow-list of data statements (INSERT, UPDATE, DELETE,
// REPLACE, SELECT and WITH, the latter without INTO OUTFILE or DUMPFILE).
// Anything else (DDL, XA, SAVEPOINT, LOAD DATA, SET, LOCK TABLES, CALL,
// statements it cannot read) goes to the writer.
func forwardable(q string) bool {
	i := skipSpaceAndComments(q, 0)
	if i < 0 || i >= len(q) {
		return false
	}
	w, _ := word(q, i)
	switch {
	case keywordIs(w, "INSERT"), keywordIs(w, "UPDATE"), keywordIs(w, "DELETE"), keywordIs(w, "REPLACE"):
	case keywordIs(w, "SELECT"), keywordIs(w, "WITH"):
		u := strings.ToUpper(q)
		if strings.Contains(u, "OUTFILE") || strings.Contains(u, "DUMPFILE") {
			return false
		}
	default:
		return false
	}
	// Executable comments may hide any statement.
	return !strings.Contains(q, "/*!") && !strings.Contains(q, "/*M!")
}

// consistencyConnector sets SESSION read consistency on every connection.
type consistencyConnector struct{ inner driver.Connector }

func (c consistencyConnector) Connect(ctx context.Context) (driver.Conn, error) {
	conn, err := c.inner.Connect(ctx)
	if err != nil {
		return nil, err
	}
	e, ok := conn.(driver.ExecerContext)
	if !ok {
		conn.Close()
		return nil, errors.New("dbrouter: forwarding endpoint: driver connection does not implement driver.ExecerContext")
	}
	if _, err := e.ExecContext(ctx, forwardConsistencyQuery, nil); err != nil {
		conn.Close()
		return nil, err
	}
	return conn, nil
}

func (c consistencyConnector) Driver() driver.Driver { return c.inner.Driver() }

// openForwarding opens the forwarding pool of the router's region, or
// returns nil when there is none.
func (rt *Router) openForwarding(spec *endpointSpec, dbSystem string) *writerTarget {
	if spec == nil {
		return nil
	}
	w := &writerTarget{
		endpointDB: endpointDB{spec: *spec, local: true,
			db: sql.OpenDB(&writeConnector{inner: failureConnector{consistencyConnector{spec.connector}, &rt.stats.connsOpened, nil},
				rt: rt, name: spec.Name, forward: true})},
		cand: -1,
		tel:  endpointTel(dbSystem, *spec),
	}
	p := rt.cfg.ForwardingPool
	if p.MaxOpenConns == 0 {
		p.MaxOpenConns = DefaultForwardingMaxOpenConns
	}
	if p.MaxIdleConns == 0 {
		p.MaxIdleConns = min(DefaultForwardingMaxIdleConns, max(p.MaxOpenConns, 0))
		if p.MaxOpenConns < 0 {
			p.MaxIdleConns = DefaultForwardingMaxIdleConns
		}
	}
	if p.ConnMaxIdleTime == 0 {
		p.ConnMaxIdleTime = DefaultForwardingConnMaxIdleTime
	}
	p.apply(w.db)
	return w
}

// forwarding reports whether writes go to the forwarding endpoint now: it
// is configured and the writer is in another region.
func (rt *Router) forwarding() bool {
	if rt.fwd == nil {
		return false
	}
	r := rt.curWriter().spec.Region
	return r != "" && r != rt.cfg.Region
}

// forwardTarget returns where the call goes when routing chose t: the
// forwarding pool instead of the writer for a write the forwarding endpoint
// supports (see forwardable) while the writer is in another region.
func (rt *Router) forwardTarget(c stmtCall, t target) target {
	if t.err != nil || t.route != telRouteWriter || t.reason != telReasonWrite || !rt.forwarding() {
		return t
	}
	switch c.op {
	case opExec, opQuery:
		if !forwardable(c.query) {
			return t
		}
	case opBegin:
		if c.iso != driver.IsolationLevel(sql.LevelDefault) && c.iso != driver.IsolationLevel(sql.LevelRepeatableRead) {
			return t
		}
	default:
		return t
	}
	rt.stats.forwarded.Add(1)
	f := rt.fwd
	return target{db: f.db, ep: f.tel, w: f, route: telRouteWriter, reason: telReasonWrite}
}

// forwardFailed handles err of a call on the forwarding pool: a refused
// statement gets [ErrForwardingRestricted]; one that provably did not run
// (the endpoint unreachable, full, or read-only because forwarding is off,
// as after a switchover) runs once on the writer; a connection lost after
// the statement was sent leaves a write's outcome unknown.
func (rt *Router) forwardFailed(ctx context.Context, t target, c stmtCall, err error, b *retryBudget) (target, bool, error) {
	if e := forwardError(t.w.spec.Name, err); e != nil {
		return t, false, e
	}
	switch classifyFailure(ctx, err) {
	case failNotSent, failReadOnly, failOverloaded:
		if !b.writer {
			return t, false, unwrapConnectError(err)
		}
		b.writer = false
		return rt.toWriter(telReasonWrite), true, nil
	case failLost, failServerGone:
		if c.write(rt) {
			return t, false, newOutcomeUnknown(t.w.spec.Name, false, err)
		}
	}
	return t, false, unwrapConnectError(err)
}
