package dbrouter

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"io"
	"strings"
	"testing"

	"github.com/regiondb/regiondb/internal/testserver"
)

// nopConnector is a driver that does no I/O: every query returns one row
// with one int64 column. It isolates the router's CPU cost.
type nopConnector struct{}

func (nopConnector) Connect(context.Context) (driver.Conn, error) { return nopConn{}, nil }
func (nopConnector) Driver() driver.Driver                        { return nopDriver{} }

type nopDriver struct{}

func (nopDriver) Open(string) (driver.Conn, error) { return nopConn{}, nil }

type nopConn struct{}

func (nopConn) Prepare(string) (driver.Stmt, error) { return nil, driver.ErrSkip }
func (nopConn) Close() error                        { return nil }
func (nopConn) Begin() (driver.Tx, error)           { return nopTx{}, nil }
func (nopConn) QueryContext(_ context.Context, q string, _ []driver.NamedValue) (driver.Rows, error) {
	if strings.HasPrefix(q, "SELECT @@") { // monitor and write-position queries
		return &nopRows{val: "0-1-10"}, nil
	}
	return &nopRows{}, nil
}
func (nopConn) ExecContext(context.Context, string, []driver.NamedValue) (driver.Result, error) {
	return driver.RowsAffected(1), nil
}

type nopTx struct{}

func (nopTx) Commit() error   { return nil }
func (nopTx) Rollback() error { return nil }

type nopRows struct {
	done bool
	val  driver.Value // nil means int64(1)
}

func (*nopRows) Columns() []string { return []string{"v"} }
func (*nopRows) Close() error      { return nil }
func (r *nopRows) Next(dest []driver.Value) error {
	if r.done {
		return io.EOF
	}
	r.done = true
	dest[0] = r.val
	if r.val == nil {
		dest[0] = int64(1)
	}
	return nil
}

const benchQuery = "SELECT v FROM kv WHERE k = ?"

// openNopRouter opens a raw pool and a Router over drivers that do no I/O,
// and a scope whose position the Router's reader already has: a scoped read
// needs no wait. Both are closed when tb ends.
func openNopRouter(tb testing.TB) (raw *sql.DB, rt *Router, scoped context.Context) {
	tb.Helper()
	raw = sql.OpenDB(nopConnector{})
	tb.Cleanup(func() { raw.Close() })
	rt, err := Open(Config{
		Region:  "a",
		Writer:  Endpoint{Name: "w", Connector: nopConnector{}},
		Readers: []Endpoint{{Name: "r", Connector: nopConnector{}, Region: "a"}},
	})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { rt.Close() })
	rt.rdrs()[0].wm.Store(&position{parts: []posPart{{key: domainKey(0), seq: 10}}})
	scoped = NewContext(context.Background())
	trackerFrom(scoped).advance(&position{parts: []posPart{{key: domainKey(0), seq: 5}}}, true)
	return raw, rt, scoped
}

// BenchmarkReadCPU compares a read through the Router with the same read on
// a raw *sql.DB, both over a driver that does no I/O: the difference is the
// router's own cost per read (routing, scope, counters).
func BenchmarkReadCPU(b *testing.B) {
	raw, rt, scoped := openNopRouter(b)
	var v int64
	b.Run("impl=raw", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if err := raw.QueryRowContext(context.Background(), benchQuery, "k").Scan(&v); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("impl=router", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if err := rt.QueryRowContext(context.Background(), benchQuery, "k").Scan(&v); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("impl=db-scope", func(b *testing.B) {
		db := rt.DB()
		b.ReportAllocs()
		for b.Loop() {
			if err := db.QueryRowContext(scoped, benchQuery, "k").Scan(&v); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("impl=router-scope", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if err := rt.QueryRowContext(scoped, benchQuery, "k").Scan(&v); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkQueryRow compares a primary-key SELECT on the stack's reader
// through the Router and through a raw *sql.DB (compare with benchstat;
// make bench-overhead measures the ratio in paired batches). The raw pools
// interpolate arguments as the router's do; raw-sampled sends the text of
// a scope's read (see sampledQ).
func BenchmarkQueryRow(b *testing.B) {
	s := testserver.Require(b)
	cfg := stackConfig(b, s, testserver.PrimaryRegion)
	cfg.Readers = cfg.Readers[:1]
	rt := openRouter(b, cfg)
	raw, err := sql.Open("mysql", s.DSN("r1", testDB)+"&interpolateParams=true")
	if err != nil {
		b.Fatal(err)
	}
	defer raw.Close()
	rawMulti, err := sql.Open("mysql", s.DSN("r1", testDB)+"&interpolateParams=true&multiStatements=true")
	if err != nil {
		b.Fatal(err)
	}
	defer rawMulti.Close()
	ctx := context.Background()
	if _, err := raw.ExecContext(ctx, "SELECT 1"); err != nil {
		b.Fatal(err)
	}
	var v int64
	// A scope after a write that r1 is known to have applied (the
	// read-your-writes steady state): its reads carry the served-position
	// sample in their text.
	wctx := NewContext(ctx)
	if _, err := rt.ExecContext(wctx, "UPDATE kv SET v = v WHERE k = 'bench'"); err != nil {
		b.Fatal(err)
	}
	for rt.Stats().ReadsLocal == 0 {
		if err := rt.QueryRowContext(wctx, "SELECT COUNT(*) FROM kv WHERE k = ?", "x").Scan(&v); err != nil {
			b.Fatal(err)
		}
	}
	for _, tc := range []struct {
		name  string
		scope context.Context
		q     interface {
			QueryRowContext(context.Context, string, ...any) *sql.Row
		}
	}{{"impl=raw", ctx, raw}, {"impl=raw-multi", ctx, rawMulti}, {"impl=raw-sampled", ctx, sampledQ{rawMulti}}, {"impl=router", ctx, rt}, {"impl=db", ctx, rt.DB()},
		{"impl=router-scope", wctx, rt}, {"impl=db-scope", wctx, rt.DB()}} {
		b.Run(tc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				err := tc.q.QueryRowContext(tc.scope, "SELECT COUNT(*) FROM kv WHERE k = ?", "x").Scan(&v)
				if err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// sampledQ sends a query as the router sends a read of a scope to a
// MariaDB reader whose pool combines statements: followed by the
// served-position sample (readconn.go), whose result set the driver reads
// when the rows close. It separates the sample's cost (server and driver)
// from the router's own.
type sampledQ struct{ db *sql.DB }

func (q sampledQ) QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row {
	return q.db.QueryRowContext(ctx, query+"\n;\nSELECT @@global.gtid_current_pos", args...)
}
