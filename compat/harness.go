// Package compat proves that the data layers Go services use (GORM, sqlx,
// ent, bun, sqlc, database/sql wrapped by otelsql) work on dbrouter's
// routing *sql.DB against the real stack: reads on readers, writes on the
// writer, read-your-writes while the local reader is stalled, and a span
// for every statement. It is a module of its own so that the library's
// go.mod does not pull these layers into its users' builds.
package compat

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"strings"
	"time"

	gomysql "github.com/go-sql-driver/mysql"
	"go.opentelemetry.io/otel/attribute"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/regiondb/regiondb/dbrouter"
	"github.com/regiondb/regiondb/internal/testserver"
)

// Database is the suite's database on the stack.
const Database = "regiondb_compat"

// Server ids of the stack: m1 1, r1 2, r2 3.
const idWriter = 1

// Mode is what a layer is opened on.
type Mode string

const (
	// ModeRouter: the routing pool of a dbrouter.Router.
	ModeRouter Mode = "router"
	// ModeWriter: a plain *sql.DB of the writer (control: no read on a reader).
	ModeWriter Mode = "writer"
	// ModeNaive: reads on a plain *sql.DB of the local reader, writes on one
	// of the writer (control: reads miss writes while the reader is stalled).
	ModeNaive Mode = "naive"
)

// Config sizes a run.
type Config struct {
	// Reads is the number of eventual reads whose endpoint is checked
	// (default 40).
	Reads int
	// Writes is the number of write-then-read pairs with the local reader
	// stalled (default 10).
	Writes int
	// GeneralLog counts the statements the servers executed (general log)
	// and compares them with the spans: it sets the servers' global
	// general_log, so only one run may use it at a time.
	GeneralLog bool
}

// Result is one layer's outcome in one mode.
type Result struct {
	OK             bool    `json:"ok"`
	ReadsOnReaders float64 `json:"reads_on_readers"`
	RYWViolations  int     `json:"ryw_violations"`
	// SpansMissing is the number of the suite's statements the servers
	// executed without a router span (with Config.GeneralLog).
	SpansMissing int `json:"-"`
	// Executed and Spans are the suite's statements in the general logs
	// and the router spans of them.
	Executed, Spans int `json:"-"`
	// WritesOffWriter counts INSERT spans served elsewhere than the writer.
	WritesOffWriter int      `json:"-"`
	Errors          []string `json:"-"`
}

// Env is a stack with the suite's table.
type Env struct {
	S     *testserver.Stack
	admin map[string]*sql.DB // by server name, for the general log
}

// Setup creates the suite's database and table and waits until the
// replicas have them.
func Setup(ctx context.Context, s *testserver.Stack) (*Env, error) {
	db, err := sql.Open("mysql", s.DSN("m1", ""))
	if err != nil {
		return nil, err
	}
	defer db.Close()
	for _, q := range []string{
		"CREATE DATABASE IF NOT EXISTS " + Database,
		"CREATE TABLE IF NOT EXISTS " + Database + "." + Table +
			" (id BIGINT AUTO_INCREMENT PRIMARY KEY, name VARCHAR(64) NOT NULL UNIQUE, n INT NOT NULL)",
	} {
		if _, err := db.ExecContext(ctx, q); err != nil {
			return nil, fmt.Errorf("%s: %w", q, err)
		}
	}
	if err := s.WaitReplicated(ctx); err != nil {
		return nil, err
	}
	e := &Env{S: s, admin: map[string]*sql.DB{}}
	for _, name := range []string{"m1", "r1", "r2"} {
		a, err := sql.Open("mysql", s.AdminDSN(name))
		if err != nil {
			e.Close()
			return nil, err
		}
		e.admin[name] = a
	}
	return e, nil
}

// Close closes the admin pools.
func (e *Env) Close() {
	for _, a := range e.admin {
		a.Close()
	}
}

// RouterConfig is the router of the suite: writer m1, local reader r1
// (ap-northeast-1), r2 in us-east-1.
func RouterConfig(s *testserver.Stack) dbrouter.Config {
	return dbrouter.Config{
		Region: testserver.PrimaryRegion,
		Writer: dbrouter.Endpoint{Name: "m1", DSN: s.DSN("m1", Database)},
		Readers: []dbrouter.Endpoint{
			{Name: "r1", DSN: s.DSN("r1", Database), Region: testserver.PrimaryRegion},
			{Name: "r2", DSN: s.DSN("r2", Database), Region: testserver.SecondaryRegion},
		},
		TokenKeys: []dbrouter.TokenKey{{ID: 1, Secret: []byte("compat-suite-key-0123456789abcdef")}},
	}
}

// source opens what mode needs; closeFn releases it.
func (e *Env) source(mode Mode, tp *sdktrace.TracerProvider) (src Source, rt *dbrouter.Router, closeFn func(), err error) {
	src.Tracer = tp
	switch mode {
	case ModeRouter:
		cfg := RouterConfig(e.S)
		cfg.TracerProvider = tp
		if rt, err = dbrouter.Open(cfg); err != nil {
			return src, nil, nil, err
		}
		src.Read, src.Write = rt.DB(), rt.DB()
		src.ReadConnector = rt.Connector()
		src.WriteConnector = src.ReadConnector
		return src, rt, func() { rt.Close() }, nil
	case ModeWriter, ModeNaive:
		wc, err := connector(e.S.DSN("m1", Database))
		if err != nil {
			return src, nil, nil, err
		}
		src.WriteConnector, src.ReadConnector = wc, wc
		if mode == ModeNaive {
			if src.ReadConnector, err = connector(e.S.DSN("r1", Database)); err != nil {
				return src, nil, nil, err
			}
		}
		src.Write = sql.OpenDB(src.WriteConnector)
		src.Read = src.Write
		if mode == ModeNaive {
			src.Read = sql.OpenDB(src.ReadConnector)
		}
		return src, nil, func() {
			src.Write.Close()
			src.Read.Close()
		}, nil
	}
	return src, nil, nil, fmt.Errorf("compat: unknown mode %q", mode)
}

func connector(dsn string) (driver.Connector, error) {
	c, err := gomysql.ParseDSN(dsn)
	if err != nil {
		return nil, err
	}
	return gomysql.NewConnector(c)
}

// Run runs the suite for one layer in one mode.
func (e *Env) Run(ctx context.Context, l Layer, mode Mode, cfg Config) (res Result) {
	if cfg.Reads <= 0 {
		cfg.Reads = 40
	}
	if cfg.Writes <= 0 {
		cfg.Writes = 10
	}
	fail := func(format string, args ...any) {
		res.Errors = append(res.Errors, fmt.Sprintf(format, args...))
	}
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	defer tp.Shutdown(context.Background())
	src, _, closeSrc, err := e.source(mode, tp)
	if err != nil {
		fail("open %s: %v", mode, err)
		return res
	}
	defer closeSrc()
	ops, err := l.Open(src)
	if err != nil {
		fail("open %s on %s: %v", l.Name, mode, err)
		return res
	}
	defer ops.Close()
	if cfg.GeneralLog {
		if err := e.startGeneralLog(ctx); err != nil {
			fail("general log: %v", err)
			return res
		}
		defer e.stopGeneralLog()
	}

	// Eventual reads: where do they go?
	onReaders := 0
	for range cfg.Reads {
		id, err := ops.ServerID(ctx)
		if err != nil {
			fail("read: %v", err)
			break
		}
		if id != idWriter {
			onReaders++
		}
	}
	res.ReadsOnReaders = float64(onReaders) / float64(cfg.Reads)

	// Write, then read in the same scope, with the local reader stalled.
	if err := e.S.Stall(ctx, "r1"); err != nil {
		fail("stall r1: %v", err)
		return res
	}
	run := fmt.Sprintf("%s-%s-%d", l.Name, mode, time.Now().UnixNano())
	for i := range cfg.Writes {
		rctx := dbrouter.NewContext(ctx)
		name := fmt.Sprintf("%s-%d", run, i)
		if err := ops.Insert(rctx, name, i+1); err != nil {
			fail("insert: %v", err)
			break
		}
		n, found, err := ops.Get(rctx, name)
		if err != nil {
			fail("read own write: %v", err)
			break
		}
		if !found || n != i+1 {
			res.RYWViolations++
		}
	}
	if err := e.S.Resume(ctx, "r1"); err != nil {
		fail("resume r1: %v", err)
	}

	// Every statement of the suite has a router span with its endpoint.
	spans := 0
	for _, s := range rec.Ended() {
		if s.InstrumentationScope().Name != dbrouter.ScopeName {
			continue
		}
		text := attr(s.Attributes(), "db.query.text")
		if !strings.Contains(text, Table) {
			continue
		}
		spans++
		// A statement sent again elsewhere (a failed position guard, a
		// failed reader) reached the servers once more.
		for _, ev := range s.Events() {
			if ev.Name == "regiondb.retry" {
				spans++
			}
		}
		ep := attr(s.Attributes(), "regiondb.endpoint")
		if ep == "" {
			fail("span %q has no endpoint", s.Name())
		}
		if s.Name() == "INSERT" && ep != "m1" {
			res.WritesOffWriter++
		}
	}
	if cfg.GeneralLog {
		executed, err := e.countGeneralLog(ctx)
		if err != nil {
			fail("general log: %v", err)
		}
		res.Executed, res.Spans = executed, spans
		res.SpansMissing = max(executed-spans, 0)
		if executed == 0 {
			fail("the general logs show none of the suite's statements")
		}
	}
	if mode == ModeRouter && spans == 0 {
		fail("no spans")
	}
	res.OK = len(res.Errors) == 0 && res.RYWViolations == 0 && res.WritesOffWriter == 0
	if mode == ModeRouter {
		res.OK = res.OK && res.SpansMissing == 0 && res.ReadsOnReaders >= 0.9
	}
	return res
}

func attr(kvs []attribute.KeyValue, key attribute.Key) string {
	for _, kv := range kvs {
		if kv.Key == key {
			return kv.Value.Emit()
		}
	}
	return ""
}

// startGeneralLog empties the servers' general logs and starts logging to
// their mysql.general_log tables.
// The admin user bypasses read_only, so the TRUNCATE runs with the binary
// log off on its session: binlogged, it would replicate from m1, and on a
// replica it would make an errant GTID that breaks replication.
func (e *Env) startGeneralLog(ctx context.Context) error {
	for name, a := range e.admin {
		c, err := a.Conn(ctx)
		if err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		for _, q := range []string{"SET SESSION sql_log_bin = 0", "SET GLOBAL general_log = 0",
			"SET GLOBAL log_output = 'TABLE'", "TRUNCATE TABLE mysql.general_log", "SET GLOBAL general_log = 1",
			"SET SESSION sql_log_bin = 1"} {
			if _, err = c.ExecContext(ctx, q); err != nil {
				err = fmt.Errorf("%s: %s: %w", name, q, err)
				break
			}
		}
		c.Close()
		if err != nil {
			return err
		}
	}
	return nil
}

func (e *Env) stopGeneralLog() {
	for _, a := range e.admin {
		a.Exec("SET GLOBAL general_log = 0")
	}
}

// countGeneralLog counts the statements of the suite's table the servers
// executed (text statements and executions of prepared ones).
func (e *Env) countGeneralLog(ctx context.Context) (int, error) {
	total := 0
	var errs []error
	for name, a := range e.admin {
		var n int
		// The router's own statements are not the suite's: its lookup of
		// the table (information_schema, before the first INSERT it
		// combines with its position read) names the table too.
		err := a.QueryRowContext(ctx, "SELECT COUNT(*) FROM mysql.general_log WHERE command_type IN ('Query', 'Execute') "+
			"AND CONVERT(argument USING utf8mb4) LIKE ? AND CONVERT(argument USING utf8mb4) NOT LIKE '%general_log%' "+
			"AND CONVERT(argument USING utf8mb4) NOT LIKE '%information_schema.TABLES%'", "%"+Table+"%").Scan(&n)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", name, err))
		}
		total += n
	}
	return total, errors.Join(errs...)
}
