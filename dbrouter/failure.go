package dbrouter

import (
	"context"
	"database/sql/driver"
	"errors"
	"io"
	"net"
	"strconv"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/go-sql-driver/mysql"
)

// MySQL and MariaDB error numbers that say a server is not (or no longer)
// the writer. The statement was rejected without being executed.
const (
	// erOptionPreventsStatement (1290) is returned for writes under
	// read_only / super_read_only, and by Aurora during a failover.
	erOptionPreventsStatement = 1290
	// erReadOnlyMode (1836) is "Running in read-only mode" (MySQL and
	// MariaDB, e.g. with innodb_read_only or a read-only Aurora instance).
	erReadOnlyMode = 1836
	// erInnoDBReadOnly (1874) is "InnoDB is in read only mode".
	erInnoDBReadOnly = 1874
)

// MySQL and MariaDB error numbers that say the server is going away: the
// session was killed or the server is shutting down.
const (
	erServerShutdown   = 1053 // ER_SERVER_SHUTDOWN
	erConnectionKilled = 1927 // MariaDB ER_CONNECTION_KILLED
	erQueryInterrupted = 1317 // ER_QUERY_INTERRUPTED (also on shutdown)
)

// MySQL and MariaDB error numbers that say a server is alive but full: it
// refused a connection or a statement because a capacity limit was reached.
const (
	erConCount            = 1040 // ER_CON_COUNT_ERROR: Too many connections
	erTooManyUserConns    = 1203 // ER_TOO_MANY_USER_CONNECTIONS (max_user_connections)
	erUserLimitReached    = 1226 // ER_USER_LIMIT_REACHED (a resource limit of the account)
	erOutOfResources      = 1041 // ER_OUT_OF_RESOURCES
	erTooManyConcurrentTx = 1637 // ER_TOO_MANY_CONCURRENT_TRXS
)

// failureKind is what a statement's error says about the server that
// returned it and about the statement.
type failureKind uint8

const (
	// failNone: no error.
	failNone failureKind = iota
	// failCaller: the caller's own context was cancelled or its deadline
	// passed. Never a server failure: no endpoint is excluded, no writer
	// search starts, the error is returned unchanged.
	failCaller
	// failStatement: an ordinary SQL error (syntax, duplicate key, lock
	// wait, ...). The server is healthy; the error is returned unchanged.
	failStatement
	// failReadOnly: the server rejected a write because it is read-only
	// (1290, 1836, 1874): it is not the writer any more. The statement was
	// not executed, so it may be sent once to the new writer.
	failReadOnly
	// failNotSent: no connection could be made (refused, unreachable, dial
	// or handshake timeout, DNS) or the driver reported driver.ErrBadConn,
	// which go-sql-driver/mysql only does when nothing was written to the
	// socket. The statement provably never reached the server; it may be
	// retried once elsewhere.
	failNotSent
	// failLost: the connection broke (or timed out) after the statement may
	// have been sent: mysql.ErrInvalidConn, io.EOF, a reset or a failed
	// write part way. For a write the outcome is unknown.
	failLost
	// failServerGone: the server reported that it is shutting down or killed
	// the session. For a write the outcome is unknown.
	failServerGone
	// failOverloaded: the server answered that a capacity limit is reached
	// (too many connections, a per-user limit, out of resources). It is
	// alive: no endpoint is excluded and no writer search starts (a search
	// would add connections to a full server). The statement did not run.
	failOverloaded
)

// String returns the kind's name, used as the error.type of spans.
func (k failureKind) String() string {
	switch k {
	case failNone:
		return "none"
	case failCaller:
		return "canceled"
	case failStatement:
		return "statement"
	case failReadOnly:
		return "read_only"
	case failNotSent:
		return "not_sent"
	case failLost:
		return "connection_lost"
	case failServerGone:
		return "server_gone"
	case failOverloaded:
		return "overloaded"
	}
	return "unknown"
}

// serverFailure reports whether the kind says the server (not the caller,
// not the statement) failed, so that the endpoint should be avoided.
func (k failureKind) serverFailure() bool {
	return k == failReadOnly || k == failNotSent || k == failLost || k == failServerGone
}

// classifyFailure says what err, returned by a statement run under the
// caller's context ctx, means. Pass the caller's own context (not one derived
// from it with an internal timeout): an error caused by the caller's
// cancellation or deadline is failCaller, while the expiry of an internal
// timeout the caller did not ask for is a server failure (failLost, or
// failNotSent if it hit while connecting).
//
// How database/sql and go-sql-driver/mysql v1.10 report failures (which this
// relies on):
//   - The driver returns driver.ErrBadConn only when it wrote nothing to the
//     socket (its errBadConnNoWrite, turned into ErrBadConn by markBadConn),
//     when the connection was already closed, when a pooled connection failed
//     the liveness check in ResetSession, or, with rejectReadOnly=true, when a
//     server answered 1290/1792/1836 (the statement was not executed). In all
//     these cases the statement did not run.
//   - *sql.DB retries a call that got driver.ErrBadConn: twice on a cached or
//     new connection, then once on a new one (maxBadConnRetries = 2 in
//     database/sql). So driver.ErrBadConn reaches the caller only if all three
//     attempts failed that way. Inside a *sql.Tx or *sql.Conn there is no
//     retry and ErrBadConn is returned as is.
//   - An error from driver.Connector.Connect (a dial error such as "connect:
//     connection refused", a handshake failure, "Too many connections") is
//     returned unchanged and is not retried by database/sql; it is a
//     *net.OpError with Op "dial" for dial failures. Endpoints opened through
//     failureConnector mark every Connect error with *connectError, so
//     that handshake failures are recognised too.
//   - Once a command has been written, a read failure (EOF, reset, read
//     timeout) closes the connection and returns mysql.ErrInvalidConn, or
//     the context's error if the query's context was cancelled. A write that
//     failed part way returns the raw network error (a *net.OpError with Op
//     "write") or io.ErrShortWrite.
func classifyFailure(ctx context.Context, err error) failureKind {
	if err == nil {
		return failNone
	}
	// The caller's own context wins over everything: when it is done, the
	// error (whatever the driver made of it) is the caller's doing.
	if ctx != nil && ctx.Err() != nil {
		return failCaller
	}
	var me *mysql.MySQLError
	isMySQL := errors.As(err, &me)
	if isMySQL && overloadNumber(me.Number) {
		return failOverloaded
	}
	var ce *connectError
	if errors.As(err, &ce) {
		return failNotSent
	}
	if isMySQL {
		switch me.Number {
		case erOptionPreventsStatement, erReadOnlyMode, erInnoDBReadOnly:
			return failReadOnly
		case erServerShutdown, erConnectionKilled:
			return failServerGone
		case erQueryInterrupted:
			// Interrupted by KILL QUERY or a shutdown: the server may be
			// going away; treat as such (the outcome of a write is unknown).
			return failServerGone
		}
		return failStatement
	}
	if errors.Is(err, driver.ErrBadConn) {
		return failNotSent
	}
	if errors.Is(err, mysql.ErrInvalidConn) || errors.Is(err, io.EOF) ||
		errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.ErrShortWrite) {
		return failLost
	}
	var oe *net.OpError
	if errors.As(err, &oe) {
		if oe.Op == "dial" {
			return failNotSent
		}
		return failLost
	}
	var de *net.DNSError
	if errors.As(err, &de) {
		return failNotSent
	}
	if errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.EHOSTUNREACH) ||
		errors.Is(err, syscall.ENETUNREACH) {
		return failNotSent
	}
	if errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE) ||
		errors.Is(err, syscall.ECONNABORTED) || errors.Is(err, net.ErrClosed) {
		return failLost
	}
	// The caller's context is alive, so a context error here came from an
	// internal timeout (statement or probe timeout): the server is stalled.
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
		return failLost
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return failLost
	}
	return failStatement
}

// overloadNumber reports whether a MySQL error number says the server is
// full rather than failed.
func overloadNumber(n uint16) bool {
	switch n {
	case erConCount, erTooManyUserConns, erUserLimitReached, erOutOfResources, erTooManyConcurrentTx:
		return true
	}
	return false
}

// overloadedError is the error of a statement an endpoint refused because
// a capacity limit was reached. It matches ErrOverloaded and unwraps to the
// driver's error.
type overloadedError struct {
	endpoint string // endpoint name (never a DSN)
	err      error
}

func (e *overloadedError) Error() string {
	return "dbrouter: endpoint " + strconv.Quote(e.endpoint) + " overloaded: " + e.err.Error()
}

func (e *overloadedError) Unwrap() error { return e.err }

func (e *overloadedError) Is(target error) bool { return target == ErrOverloaded }

// ErrorType implements the interface that semconv.ErrorType looks for.
func (e *overloadedError) ErrorType() string { return "overloaded" }

// mysqlErrorNumber returns the MySQL error number in err's chain as a string
// ("1290"), or "" if there is none.
func mysqlErrorNumber(err error) string {
	var me *mysql.MySQLError
	if errors.As(err, &me) {
		return strconv.Itoa(int(me.Number))
	}
	return ""
}

// outcomeUnknownError is the error of a write whose outcome is unknown. It
// matches ErrOutcomeUnknown and unwraps to the driver's error.
type outcomeUnknownError struct {
	endpoint string // endpoint name (never a DSN)
	inTx     bool
	err      error
}

func (e *outcomeUnknownError) Error() string {
	where := "writer " + strconv.Quote(e.endpoint)
	if e.inTx {
		where = "transaction on " + where
	}
	return "dbrouter: outcome unknown: connection to " + where + " lost: " + e.err.Error()
}

func (e *outcomeUnknownError) Unwrap() error { return e.err }

func (e *outcomeUnknownError) Is(target error) bool { return target == ErrOutcomeUnknown }

// ErrorType implements the interface that semconv.ErrorType looks for.
func (e *outcomeUnknownError) ErrorType() string { return "outcome_unknown" }

// newOutcomeUnknown wraps err, lost on the named endpoint, as an outcome
// unknown error. err must not be nil.
func newOutcomeUnknown(endpoint string, inTx bool, err error) error {
	return &outcomeUnknownError{endpoint: endpoint, inTx: inTx, err: err}
}

// connectError marks an error returned by driver.Connector.Connect: no
// statement was sent on that connection. It unwraps to the driver's error so
// errors.Is/As (syscall.ECONNREFUSED, *mysql.MySQLError) keep working.
type connectError struct{ err error }

func (e *connectError) Error() string { return e.err.Error() }
func (e *connectError) Unwrap() error { return e.err }

// failureConnector wraps a driver.Connector so that every error of Connect
// is marked as a connectError (the statement that needed the connection
// never reached the server). database/sql returns Connect's error unchanged
// to the statement that asked for the connection.
// When opened is not nil, each new connection is counted there.
// When rtt is not nil, each successful Connect is timed there (see
// rttStat).
type failureConnector struct {
	driver.Connector
	opened *atomic.Int64
	rtt    *rttStat
}

func (c failureConnector) Connect(ctx context.Context) (driver.Conn, error) {
	start := time.Now()
	conn, err := c.Connector.Connect(ctx)
	if err != nil {
		return nil, &connectError{err: err}
	}
	c.rtt.record(time.Since(start))
	if c.opened != nil {
		c.opened.Add(1)
	}
	return conn, nil
}

// unwrapConnectError removes the connectError mark so that callers see the
// driver's own error.
func unwrapConnectError(err error) error {
	if ce, ok := err.(*connectError); ok {
		return ce.err
	}
	return err
}

func isErrno(err error, n uint16) bool {
	var me *mysql.MySQLError
	return errors.As(err, &me) && me.Number == n
}
