package dbrouter

import (
	"context"
	"database/sql/driver"
	"fmt"
	"io"
	"strings"
	"sync"
	"testing"
	"time"
)

// fakeServer answers the position queries of one dialect. It stands in for
// MySQL 8 and Aurora MySQL, which do not run here (the stack is MariaDB):
// their GTID functions and variables do not exist on MariaDB.
type fakeServer struct {
	mu     sync.Mutex // protects the fields below
	seq    uint64     // writer: committed transactions; reader: applied
	reads  int        // application reads served
	mysql  bool       // gtid_executed sets; else heartbeat rows
	writer bool
}

func (s *fakeServer) set(seq uint64) { s.mu.Lock(); s.seq = seq; s.mu.Unlock() }
func (s *fakeServer) served() int    { s.mu.Lock(); defer s.mu.Unlock(); return s.reads }

func (s *fakeServer) Connect(context.Context) (driver.Conn, error) { return &fakeConn{s: s}, nil }
func (s *fakeServer) Driver() driver.Driver                        { return nopDriver{} }

type fakeConn struct{ s *fakeServer }

func (c *fakeConn) Prepare(string) (driver.Stmt, error) { return nil, driver.ErrSkip }
func (c *fakeConn) Close() error                        { return nil }
func (c *fakeConn) Begin() (driver.Tx, error)           { return nopTx{}, nil }
func (c *fakeConn) ExecContext(context.Context, string, []driver.NamedValue) (driver.Result, error) {
	c.s.mu.Lock()
	if c.s.mysql { // a write is a GTID; the heartbeat moves on its own
		c.s.seq++
	}
	c.s.mu.Unlock()
	return driver.RowsAffected(1), nil
}

func (c *fakeConn) QueryContext(_ context.Context, q string, _ []driver.NamedValue) (driver.Rows, error) {
	s := c.s
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case strings.Contains(q, "gtid_executed"):
		return &nopRows{val: fmt.Sprintf("%s:1-%d", uuidA, s.seq)}, nil
	case strings.HasPrefix(q, "SELECT WAIT_FOR_EXECUTED_GTID_SET('"):
		var want uint64
		fmt.Sscanf(q[strings.Index(q, ":1-")+3:], "%d", &want)
		if s.seq >= want {
			return &nopRows{val: int64(0)}, nil
		}
		return &nopRows{val: int64(1)}, nil // timed out (at once)
	case strings.Contains(q, "seq + 1"): // the heartbeat's last-write query (writer id 7)
		return &nopRows{val: fmt.Sprintf("7:%d", s.seq+1)}, nil
	case strings.Contains(q, "FROM regiondb_heartbeat WHERE id = 1"): // its position query
		return &nopRows{val: fmt.Sprintf("7:%d", s.seq)}, nil
	}
	s.reads++
	return &nopRows{}, nil
}

var _ io.Closer = (*fakeConn)(nil)

// TestDialectsWithFakes runs the router's read-your-writes logic with the
// MySQL GTID dialect and the heartbeat dialect (the one for Aurora, whose
// readers share storage) against fake servers: no MySQL 8 or Aurora runs
// here, so this checks the router's side of the protocol only.
func TestDialectsWithFakes(t *testing.T) {
	for _, d := range []Dialect{DialectMySQL, DialectHeartbeat} {
		t.Run(d.String(), func(t *testing.T) {
			w := &fakeServer{seq: 10, writer: true, mysql: d == DialectMySQL}
			r := &fakeServer{seq: 10, mysql: d == DialectMySQL}
			rt, err := Open(Config{
				Region:       "a",
				Dialect:      d,
				Writer:       Endpoint{Name: "w", Connector: w},
				Readers:      []Endpoint{{Name: "r", Connector: r, Region: "a"}},
				MaxWait:      30 * time.Millisecond,
				PollInterval: time.Millisecond,
			})
			if err != nil {
				t.Fatal(err)
			}
			defer rt.Close()
			ctx := NewContext(t.Context())
			if _, err := rt.ExecContext(ctx, "UPDATE t SET a = 1"); err != nil {
				t.Fatal(err)
			}
			tok := rt.Token(ctx)
			if tok == "" || len(tok) >= 100 {
				t.Fatalf("token %q", tok)
			}
			read := func() {
				t.Helper()
				if err := rt.QueryRowContext(ctx, "SELECT v FROM t").Scan(new(int64)); err != nil {
					t.Fatal(err)
				}
			}
			// The reader has not applied the write: after the wait the
			// read goes to the writer.
			read()
			if w.served() != 1 || r.served() != 0 {
				t.Fatalf("behind reader: writer served %d, reader %d", w.served(), r.served())
			}
			// The reader applies it: reads go there again.
			r.set(11)
			waitFor(t, 5*time.Second, "the reader to serve", func() bool {
				read()
				return r.served() > 0
			})
			// Another router (another region) restores the token.
			r2 := &fakeServer{seq: 10, mysql: d == DialectMySQL}
			other, err := Open(Config{
				Region: "b", Dialect: d, TokenKeys: rt.tokens.keys,
				Writer:  Endpoint{Name: "w", Connector: w},
				Readers: []Endpoint{{Name: "r2", Connector: r2, Region: "b"}},
				MaxWait: 30 * time.Millisecond, PollInterval: time.Millisecond,
			})
			if err != nil {
				t.Fatal(err)
			}
			defer other.Close()
			octx, err := other.WithToken(t.Context(), tok)
			if err != nil {
				t.Fatal(err)
			}
			if err := other.QueryRowContext(octx, "SELECT v FROM t").Scan(new(int64)); err != nil {
				t.Fatal(err)
			}
			if r2.served() != 0 {
				t.Errorf("reader behind the token served a read")
			}
		})
	}
}

func TestWaitQueries(t *testing.T) {
	p := mustPos(t, "0:8,1:5")
	if got := (mariaDialect{}).waitQuery(p, 500*time.Millisecond); got != "SELECT IF(@@global.read_only = 0, NULL, MASTER_GTID_WAIT('0-0-8,1-0-5', 0.500))" {
		t.Errorf("mariadb: %s", got)
	}
	p = mustPos(t, uuidA+":42")
	if got := (mysqlDialect{}).waitQuery(p, time.Second); got != "SELECT WAIT_FOR_EXECUTED_GTID_SET('"+uuidA+":1-42', 1.000)" {
		t.Errorf("mysql: %s", got)
	}
}
