package dbrouter

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"

	"github.com/regiondb/regiondb/internal/testserver"
)

func TestClassifyFailure(t *testing.T) {
	canceled, cancel := context.WithCancel(context.Background())
	cancel()
	live := context.Background()
	refused := &net.OpError{Op: "dial", Net: "tcp", Err: os.NewSyscallError("connect", syscall.ECONNREFUSED)}
	tests := []struct {
		name string
		ctx  context.Context
		err  error
		want failureKind
	}{
		{"nil", live, nil, failNone},
		{"caller canceled", canceled, context.Canceled, failCaller},
		{"caller canceled, driver says invalid conn", canceled, mysql.ErrInvalidConn, failCaller},
		{"caller canceled, even a 1290", canceled, &mysql.MySQLError{Number: 1290}, failCaller},
		{"internal timeout, caller alive", live, context.DeadlineExceeded, failLost},
		{"internal timeout wrapped", live, fmt.Errorf("probe: %w", context.DeadlineExceeded), failLost},
		{"1290 read_only", live, &mysql.MySQLError{Number: 1290, Message: "The MariaDB server is running with the --read-only option"}, failReadOnly},
		{"1836 read-only mode", live, &mysql.MySQLError{Number: 1836}, failReadOnly},
		{"1874 innodb read only", live, &mysql.MySQLError{Number: 1874}, failReadOnly},
		{"1290 wrapped", live, fmt.Errorf("x: %w", &mysql.MySQLError{Number: 1290}), failReadOnly},
		{"1792 read-only transaction is the caller's", live, &mysql.MySQLError{Number: 1792}, failStatement},
		{"1062 duplicate key", live, &mysql.MySQLError{Number: 1062}, failStatement},
		{"1064 syntax", live, &mysql.MySQLError{Number: 1064}, failStatement},
		{"1053 shutdown", live, &mysql.MySQLError{Number: 1053}, failServerGone},
		{"1927 killed", live, &mysql.MySQLError{Number: 1927}, failServerGone},
		{"ErrBadConn after database/sql retries", live, driver.ErrBadConn, failNotSent},
		{"dial refused", live, refused, failNotSent},
		{"dial timeout", live, &net.OpError{Op: "dial", Net: "tcp", Err: failTimeoutError{}}, failNotSent},
		{"dns", live, &net.DNSError{Err: "no such host", Name: "db.example", IsNotFound: true}, failNotSent},
		{"connect error: handshake 1040", live, &connectError{err: &mysql.MySQLError{Number: 1040}}, failOverloaded},
		{"connect error: 1203 max_user_connections", live, &connectError{err: &mysql.MySQLError{Number: 1203}}, failOverloaded},
		{"1226 resource limit", live, &mysql.MySQLError{Number: 1226}, failOverloaded},
		{"1041 out of resources", live, &mysql.MySQLError{Number: 1041}, failOverloaded},
		{"connect error: handshake 1045 denied", live, &connectError{err: &mysql.MySQLError{Number: 1045}}, failNotSent},
		{"connect error: EOF during handshake", live, &connectError{err: mysql.ErrInvalidConn}, failNotSent},
		{"invalid conn after send", live, mysql.ErrInvalidConn, failLost},
		{"EOF", live, io.EOF, failLost},
		{"unexpected EOF", live, io.ErrUnexpectedEOF, failLost},
		{"short write", live, io.ErrShortWrite, failLost},
		{"write reset", live, &net.OpError{Op: "write", Net: "tcp", Err: os.NewSyscallError("write", syscall.ECONNRESET)}, failLost},
		{"read timeout", live, &net.OpError{Op: "read", Net: "tcp", Err: failTimeoutError{}}, failLost},
		{"bare ECONNRESET", live, syscall.ECONNRESET, failLost},
		{"bare EPIPE", live, syscall.EPIPE, failLost},
		{"bare ECONNREFUSED", live, syscall.ECONNREFUSED, failNotSent},
		{"sql.ErrNoRows", live, sql.ErrNoRows, failStatement},
		{"sql.ErrTxDone", live, sql.ErrTxDone, failStatement},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := classifyFailure(tt.ctx, tt.err); got != tt.want {
				t.Fatalf("classifyFailure(%v) = %v, want %v", tt.err, got, tt.want)
			}
		})
	}
}

type failTimeoutError struct{}

func (failTimeoutError) Error() string   { return "i/o timeout" }
func (failTimeoutError) Timeout() bool   { return true }
func (failTimeoutError) Temporary() bool { return true }

func TestOutcomeUnknownError(t *testing.T) {
	cause := fmt.Errorf("exec: %w", mysql.ErrInvalidConn)
	err := newOutcomeUnknown("writer-1", false, cause)
	if !errors.Is(err, ErrOutcomeUnknown) {
		t.Fatal("errors.Is(err, ErrOutcomeUnknown) = false")
	}
	if !errors.Is(err, mysql.ErrInvalidConn) {
		t.Fatal("the cause is not reachable with errors.Is")
	}
	if errors.Is(err, ErrNoWriter) {
		t.Fatal("outcome unknown must not match ErrNoWriter")
	}
	if got := err.Error(); !strings.HasPrefix(got, "dbrouter: outcome unknown") || !strings.Contains(got, `"writer-1"`) {
		t.Fatalf("Error() = %q", got)
	}
	tx := newOutcomeUnknown("w", true, io.EOF)
	if !strings.Contains(tx.Error(), "transaction") {
		t.Fatalf("Error() = %q, want it to say transaction", tx.Error())
	}
	if classifyFailure(context.Background(), err) != failLost {
		t.Fatal("an outcome-unknown error must classify as lost")
	}
}

// failCountingDriver is an in-process driver whose connections fail every
// statement with a fixed error. It shows how database/sql retries.
type failCountingDriver struct {
	connects atomic.Int32
	execs    atomic.Int32
	execErr  error
	connErr  error
}

func (d *failCountingDriver) Open(string) (driver.Conn, error) {
	return d.Connect(context.Background())
}
func (d *failCountingDriver) Connect(context.Context) (driver.Conn, error) {
	d.connects.Add(1)
	if d.connErr != nil {
		return nil, d.connErr
	}
	return &failCountingConn{d: d}, nil
}
func (d *failCountingDriver) Driver() driver.Driver { return d }

type failCountingConn struct{ d *failCountingDriver }

func (c *failCountingConn) Prepare(string) (driver.Stmt, error) { return nil, errors.New("no prepare") }
func (c *failCountingConn) Close() error                        { return nil }
func (c *failCountingConn) Begin() (driver.Tx, error)           { return failCountingTx{}, nil }
func (c *failCountingConn) ExecContext(context.Context, string, []driver.NamedValue) (driver.Result, error) {
	c.d.execs.Add(1)
	return nil, c.d.execErr
}

type failCountingTx struct{}

func (failCountingTx) Commit() error   { return nil }
func (failCountingTx) Rollback() error { return nil }

// TestDatabaseSQLBadConnRetries pins down the database/sql behaviour that
// classifyFailure relies on: a *sql.DB call is tried three times when the
// driver says driver.ErrBadConn (so ErrBadConn reaching the router means
// three attempts failed before sending), other errors are not retried,
// nothing is retried inside a transaction, and Connect errors come back
// unchanged (here marked by failureConnector).
func TestDatabaseSQLBadConnRetries(t *testing.T) {
	ctx := context.Background()
	t.Run("ErrBadConn tried 3 times", func(t *testing.T) {
		d := &failCountingDriver{execErr: driver.ErrBadConn}
		db := sql.OpenDB(d)
		defer db.Close()
		_, err := db.ExecContext(ctx, "INSERT")
		if !errors.Is(err, driver.ErrBadConn) {
			t.Fatalf("err = %v", err)
		}
		if n := d.execs.Load(); n != 3 {
			t.Fatalf("execs = %d, want 3", n)
		}
		if classifyFailure(ctx, err) != failNotSent {
			t.Fatal("not classified as not sent")
		}
	})
	t.Run("ErrInvalidConn not retried", func(t *testing.T) {
		d := &failCountingDriver{execErr: mysql.ErrInvalidConn}
		db := sql.OpenDB(d)
		defer db.Close()
		_, err := db.ExecContext(ctx, "INSERT")
		if !errors.Is(err, mysql.ErrInvalidConn) || d.execs.Load() != 1 {
			t.Fatalf("err = %v, execs = %d", err, d.execs.Load())
		}
		if classifyFailure(ctx, err) != failLost {
			t.Fatal("not classified as lost")
		}
	})
	t.Run("no retry in a transaction", func(t *testing.T) {
		d := &failCountingDriver{execErr: driver.ErrBadConn}
		db := sql.OpenDB(d)
		defer db.Close()
		tx, err := db.BeginTx(ctx, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer tx.Rollback()
		_, err = tx.ExecContext(ctx, "INSERT")
		if !errors.Is(err, driver.ErrBadConn) || d.execs.Load() != 1 {
			t.Fatalf("err = %v, execs = %d", err, d.execs.Load())
		}
	})
	t.Run("Connect error marked and unchanged", func(t *testing.T) {
		d := &failCountingDriver{connErr: &mysql.MySQLError{Number: 1040, Message: "Too many connections"}}
		db := sql.OpenDB(failureConnector{Connector: d})
		defer db.Close()
		_, err := db.ExecContext(ctx, "INSERT")
		var ce *connectError
		if !errors.As(err, &ce) {
			t.Fatalf("err = %T %v, want *connectError", err, err)
		}
		var me *mysql.MySQLError
		if !errors.As(err, &me) || me.Number != 1040 {
			t.Fatalf("cause lost: %v", err)
		}
		if d.execs.Load() != 0 || classifyFailure(ctx, err) != failOverloaded {
			t.Fatalf("execs = %d, kind = %v", d.execs.Load(), classifyFailure(ctx, err))
		}
		if got := unwrapConnectError(err); got != error(me) {
			t.Fatalf("unwrapConnectError = %v", got)
		}
	})
}

// failOpenStackDB opens a pool on the named server of the stack through
// failureConnector, as the router does.
func failOpenStackDB(t *testing.T, s *testserver.Stack, server, database string) *sql.DB {
	t.Helper()
	cfg, err := mysql.ParseDSN(s.DSN(server, database))
	if err != nil {
		t.Fatal(err)
	}
	cfg.Timeout = 2 * time.Second
	conn, err := mysql.NewConnector(cfg)
	if err != nil {
		t.Fatal(err)
	}
	db := sql.OpenDB(failureConnector{Connector: conn})
	t.Cleanup(func() { db.Close() })
	return db
}

// TestClassifyFailureStack produces each kind of failure for real against
// the stack's MariaDB servers (no fault that changes the topology).
func TestClassifyFailureStack(t *testing.T) {
	s := testserver.Require(t)
	ctx := context.Background()
	w := failOpenStackDB(t, s, "m1", "")
	if _, err := w.ExecContext(ctx, "CREATE DATABASE IF NOT EXISTS regiondb_failover"); err != nil {
		t.Fatal(err)
	}
	if _, err := w.ExecContext(ctx, "CREATE TABLE IF NOT EXISTS regiondb_failover.classify (id INT PRIMARY KEY)"); err != nil {
		t.Fatal(err)
	}

	t.Run("write on a replica is read-only", func(t *testing.T) {
		r := failOpenStackDB(t, s, "r1", "")
		// Wait until the table has replicated, then write: 1290.
		deadline := time.Now().Add(10 * time.Second)
		for {
			_, err := r.ExecContext(ctx, "INSERT INTO regiondb_failover.classify VALUES (1)")
			if k := classifyFailure(ctx, err); k == failReadOnly {
				return
			} else if time.Now().After(deadline) {
				t.Fatalf("err = %v (kind %v), want read-only", err, k)
			}
			time.Sleep(20 * time.Millisecond) // polling the replica, not synchronising goroutines
		}
	})

	t.Run("refused port never reached a server", func(t *testing.T) {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := ln.Addr().String()
		ln.Close()
		cfg := mysql.NewConfig()
		cfg.User, cfg.Passwd, cfg.Net, cfg.Addr = "regiondb", "regiondb", "tcp", addr
		conn, err := mysql.NewConnector(cfg)
		if err != nil {
			t.Fatal(err)
		}
		for _, db := range []*sql.DB{sql.OpenDB(conn), sql.OpenDB(failureConnector{Connector: conn})} {
			_, err = db.ExecContext(ctx, "SELECT 1")
			db.Close()
			if !errors.Is(err, syscall.ECONNREFUSED) || classifyFailure(ctx, err) != failNotSent {
				t.Fatalf("err = %v (kind %v), want refused and not sent", err, classifyFailure(ctx, err))
			}
		}
	})

	t.Run("connection killed after send", func(t *testing.T) {
		db := failOpenStackDB(t, s, "m1", "")
		admin := failOpenStackDB(t, s, "m1", "")
		c, err := db.Conn(ctx)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		var id int64
		if err := c.QueryRowContext(ctx, "SELECT CONNECTION_ID()").Scan(&id); err != nil {
			t.Fatal(err)
		}
		errc := make(chan error, 1)
		go func() {
			_, err := c.ExecContext(ctx, "DO SLEEP(30)")
			errc <- err
		}()
		// Kill the session once the statement runs on the server.
		failWaitFor(t, 10*time.Second, func() bool {
			var n int
			err := admin.QueryRowContext(ctx, "SELECT COUNT(*) FROM information_schema.processlist WHERE id = ? AND info LIKE 'DO SLEEP%'", id).Scan(&n)
			return err == nil && n == 1
		})
		if _, err := admin.ExecContext(ctx, fmt.Sprintf("KILL CONNECTION %d", id)); err != nil {
			t.Fatal(err)
		}
		err = <-errc
		if k := classifyFailure(ctx, err); k != failLost && k != failServerGone {
			t.Fatalf("err = %v (kind %v), want lost or server gone", err, k)
		}
	})

	t.Run("caller cancellation mid-query is the caller's", func(t *testing.T) {
		db := failOpenStackDB(t, s, "m1", "")
		cctx, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
		defer cancel()
		_, err := db.ExecContext(cctx, "DO SLEEP(5)")
		if err == nil || classifyFailure(cctx, err) != failCaller {
			t.Fatalf("err = %v (kind %v), want caller", err, classifyFailure(cctx, err))
		}
		// The same error under a context the caller did not cancel (an
		// internal statement timeout) is a stalled server.
		if classifyFailure(ctx, err) != failLost {
			t.Fatalf("internal timeout err = %v classified %v, want lost", err, classifyFailure(ctx, err))
		}
	})
}

// failWaitFor polls cond until it holds or the deadline passes.
func failWaitFor(t *testing.T, d time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("condition not met within %v", d)
		}
		time.Sleep(10 * time.Millisecond) // polling a server, not synchronising goroutines
	}
}
