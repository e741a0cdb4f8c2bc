package dbrouter

import (
	"context"
	"database/sql"
	"errors"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	tracenoop "go.opentelemetry.io/otel/trace/noop"
)

type telTestEnv struct {
	tel     *telemetry
	spans   *tracetest.SpanRecorder
	reader  *sdkmetric.ManualReader
	writer  *telEndpoint
	reader1 *telEndpoint
}

func newTelTestEnv(t *testing.T) *telTestEnv {
	t.Helper()
	env := &telTestEnv{spans: tracetest.NewSpanRecorder(), reader: sdkmetric.NewManualReader()}
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(env.spans))
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(env.reader))
	t.Cleanup(func() {
		_ = tp.Shutdown(context.Background())
		_ = mp.Shutdown(context.Background())
	})
	env.writer = newTelEndpoint("mysql", "writer", "ap-northeast-1", "db-w.example:3306", "app")
	env.reader1 = newTelEndpoint("mysql", "reader-1", "us-east-1", "10.0.0.7:3307", "app")
	readers := func(yield func(telReaderStat) bool) {
		yield(telReaderStat{ep: env.reader1, lag: 250 * time.Millisecond, positionAge: 40 * time.Millisecond, known: true})
	}
	pools := func(yield func(telPoolStat) bool) {
		if !yield(telPoolStat{ep: env.writer, route: telRouteWriter, stats: sql.DBStats{MaxOpenConnections: 20, InUse: 3, Idle: 2}}) {
			return
		}
		yield(telPoolStat{ep: env.reader1, route: telRouteReader, stats: sql.DBStats{MaxOpenConnections: 10, InUse: 1, Idle: 4}})
	}
	env.tel = newTelemetry(telemetryConfig{tracerProvider: tp, meterProvider: mp,
		readers: readers, pools: pools})
	t.Cleanup(env.tel.close)
	return env
}

func telSpanAttr(attrs []attribute.KeyValue, key attribute.Key) (attribute.Value, bool) {
	for _, kv := range attrs {
		if kv.Key == key {
			return kv.Value, true
		}
	}
	return attribute.Value{}, false
}

func TestTelemetrySpans(t *testing.T) {
	env := newTelTestEnv(t)
	ctx := context.Background()
	const q = "/* list */ SELECT name FROM users WHERE email = ?"
	sctx, o := env.tel.startStatement(ctx, q, env.reader1, telRouteReader, telReasonTokenWait)
	if sctx == ctx {
		t.Fatal("the statement context does not carry the span")
	}
	env.tel.endStatement(sctx, o, env.reader1, telRouteReader, telReasonTokenWait, nil)

	dup := &mysql.MySQLError{Number: 1062, Message: "Duplicate entry 'alice@example.com' for key 'email'"}
	_, o = env.tel.startStatement(ctx, "INSERT INTO users VALUES (?)", env.writer, telRouteWriter, telReasonWrite)
	env.tel.endStatement(ctx, o, env.writer, telRouteWriter, telReasonWrite, dup)

	_, o = env.tel.startStatement(ctx, "UPDATE t SET x = 1", env.writer, telRouteWriter, telReasonWrite)
	env.tel.endStatement(ctx, o, env.writer, telRouteWriter, telReasonWrite, newOutcomeUnknown("writer", false, mysql.ErrInvalidConn))

	spans := env.spans.Ended()
	if len(spans) != 3 {
		t.Fatalf("%d spans, want 3", len(spans))
	}
	read := spans[0]
	if read.Name() != "SELECT" {
		t.Errorf("span name %q, want SELECT", read.Name())
	}
	want := map[attribute.Key]string{
		"db.system.name":    "mysql",
		"db.operation.name": "SELECT",
		"db.namespace":      "app",
		"server.address":    "10.0.0.7",
		"regiondb.route":    "reader",
		"regiondb.region":   "us-east-1",
		"regiondb.reason":   "token_wait",
		"regiondb.endpoint": "reader-1",
	}
	for k, v := range want {
		if got, ok := telSpanAttr(read.Attributes(), k); !ok || got.Emit() != v {
			t.Errorf("attribute %s = %q (present %v), want %q", k, got.Emit(), ok, v)
		}
	}
	if got, _ := telSpanAttr(read.Attributes(), "server.port"); got.AsInt64() != 3307 {
		t.Errorf("server.port = %v", got.Emit())
	}
	if got, _ := telSpanAttr(read.Attributes(), "db.query.text"); got.AsString() != "SELECT name FROM users WHERE email = ?" {
		t.Errorf("db.query.text = %q, want the parameterised text without its comment", got.AsString())
	}
	if got, _ := telSpanAttr(spans[2].Attributes(), "db.query.text"); got.AsString() != "UPDATE t SET x = ?" {
		t.Errorf("db.query.text = %q, want its literal replaced", got.AsString())
	}
	ins := spans[1]
	if ins.Status().Code != codes.Error || strings.Contains(ins.Status().Description, "alice") {
		t.Errorf("status = %+v: want an error without the server's message", ins.Status())
	}
	if got, _ := telSpanAttr(ins.Attributes(), "error.type"); got.Emit() != "1062" {
		t.Errorf("error.type = %q, want 1062", got.Emit())
	}
	if got, _ := telSpanAttr(ins.Attributes(), "db.response.status_code"); got.Emit() != "1062" {
		t.Errorf("db.response.status_code = %q", got.Emit())
	}
	for _, s := range spans {
		for _, kv := range s.Attributes() {
			if strings.Contains(kv.Value.Emit(), "alice") || strings.Contains(kv.Value.Emit(), "@tcp(") {
				t.Errorf("span %s leaks %s=%q", s.Name(), kv.Key, kv.Value.Emit())
			}
		}
		if len(s.Events()) != 0 {
			t.Errorf("span %s has events (error messages may quote arguments)", s.Name())
		}
	}
	if got, _ := telSpanAttr(spans[2].Attributes(), "error.type"); got.Emit() != "outcome_unknown" {
		t.Errorf("error.type = %q, want outcome_unknown", got.Emit())
	}

	t.Run("literals never", func(t *testing.T) {
		for _, tc := range []struct{ in, want string }{
			{"SELECT a FROM t WHERE id = ?", "SELECT a FROM t WHERE id = ?"},
			{"SELECT a FROM t1 WHERE b = 'x''y' AND c = \"z\" AND d = 12.5e-3", "SELECT a FROM t1 WHERE b = ? AND c = ? AND d = ?"},
			{"SELECT `col 1` FROM t -- secret 42\nWHERE h = X'0A' AND n = .5", "SELECT `col 1` FROM t  \nWHERE h = ? AND n = ?"},
			{"INSERT INTO t (a) VALUES ('it\\'s', 0x1F, -7)", "INSERT INTO t (a) VALUES (?, ?, -?)"},
		} {
			if got := sanitizeQuery(tc.in); got != tc.want {
				t.Errorf("sanitizeQuery(%q) = %q, want %q", tc.in, got, tc.want)
			}
		}
		if a := testing.AllocsPerRun(100, func() { sanitizeQuery("SELECT a FROM t WHERE id = ?") }); a != 0 {
			t.Errorf("sanitizeQuery allocates %v times for a parameterised statement", a)
		}
	})
}

func telCollect(t *testing.T, r *sdkmetric.ManualReader) map[string]metricdata.Aggregation {
	t.Helper()
	var rm metricdata.ResourceMetrics
	if err := r.Collect(context.Background(), &rm); err != nil {
		t.Fatal(err)
	}
	out := map[string]metricdata.Aggregation{}
	for _, sm := range rm.ScopeMetrics {
		if sm.Scope.Name != ScopeName {
			t.Errorf("scope %q, want %q", sm.Scope.Name, ScopeName)
		}
		for _, m := range sm.Metrics {
			out[m.Name] = m.Data
		}
	}
	return out
}

func TestTelemetryMetrics(t *testing.T) {
	env := newTelTestEnv(t)
	ctx := context.Background()
	for range 3 {
		_, o := env.tel.startStatement(ctx, "SELECT 1", env.reader1, telRouteReader, telReasonFreshReader)
		env.tel.endStatement(ctx, o, env.reader1, telRouteReader, telReasonFreshReader, nil)
	}
	_, o := env.tel.startStatement(ctx, "SELECT 1", env.writer, telRouteWriter, telReasonFallback)
	env.tel.endStatement(ctx, o, env.writer, telRouteWriter, telReasonFallback, nil)
	env.tel.recordFallback(ctx, telFallbackNoReader)
	env.tel.recordTokenWait(ctx, 30*time.Millisecond)
	env.tel.recordFailover(ctx, env.reader1)

	got := telCollect(t, env.reader)
	stmts, ok := got[metricStatements].(metricdata.Sum[int64])
	if !ok {
		t.Fatalf("%s missing: %v", metricStatements, got)
	}
	counts := map[string]int64{}
	for _, dp := range stmts.DataPoints {
		r, _ := dp.Attributes.Value(attrRoute)
		why, _ := dp.Attributes.Value(attrReason)
		counts[r.AsString()+"/"+why.AsString()] = dp.Value
		want := env.reader1.region
		if r.AsString() == "writer" {
			want = env.writer.region
		}
		if region, _ := dp.Attributes.Value(attrRegion); region.AsString() != want || want == "" {
			t.Errorf("%s/%s statements have region %q, want the serving endpoint's %q", r.AsString(), why.AsString(), region.AsString(), want)
		}
	}
	if counts["reader/fresh_reader"] != 3 || counts["writer/writer_fallback"] != 1 || len(counts) != 2 {
		t.Errorf("statements = %v", counts)
	}
	// The operation duration, in seconds, by operation name; failures
	// with error.type and db.response.status_code.
	_, o = env.tel.startStatement(ctx, "INSERT INTO t VALUES (?)", env.writer, telRouteWriter, telReasonWrite)
	env.tel.endStatement(ctx, o, env.writer, telRouteWriter, telReasonWrite, &mysql.MySQLError{Number: 1062})
	got = telCollect(t, env.reader)
	dur, ok := got[metricOperationDuration].(metricdata.Histogram[float64])
	if !ok {
		t.Fatalf("%s missing", metricOperationDuration)
	}
	ops := map[string]uint64{}
	for _, dp := range dur.DataPoints {
		op, _ := dp.Attributes.Value("db.operation.name")
		et, _ := dp.Attributes.Value("error.type")
		sc, _ := dp.Attributes.Value("db.response.status_code")
		ops[op.AsString()+"/"+et.AsString()+"/"+sc.AsString()] += dp.Count
		if m, _ := dp.Max.Value(); m >= 1 {
			t.Errorf("duration %v: not in seconds", dp.Max)
		}
	}
	if ops["SELECT//"] != 4 || ops["INSERT/1062/1062"] != 1 {
		t.Errorf("operation durations by name/error.type/status = %v", ops)
	}
	if fb := got[metricFallbacks].(metricdata.Sum[int64]); len(fb.DataPoints) != 1 || fb.DataPoints[0].Value != 1 {
		t.Errorf("fallbacks = %+v", fb.DataPoints)
	}
	if fo := got[metricFailovers].(metricdata.Sum[int64]); len(fo.DataPoints) != 1 || fo.DataPoints[0].Value != 1 {
		t.Errorf("failovers = %+v", fo.DataPoints)
	}
	if tw := got[metricTokenWait].(metricdata.Histogram[float64]); len(tw.DataPoints) != 1 || tw.DataPoints[0].Count != 1 {
		t.Errorf("token wait = %+v", tw.DataPoints)
	}
	if d := got[metricOperationDuration].(metricdata.Histogram[float64]); len(d.DataPoints) != 3 {
		t.Errorf("operation duration has %d series, want 3 (reader SELECT, writer SELECT, writer INSERT failed)", len(d.DataPoints))
	}
	lag := got[metricReaderLag].(metricdata.Gauge[float64])
	if len(lag.DataPoints) != 1 || lag.DataPoints[0].Value != 250 {
		t.Errorf("reader lag = %+v", lag.DataPoints)
	}
	if age := got[metricPositionAge].(metricdata.Gauge[float64]); len(age.DataPoints) != 1 || age.DataPoints[0].Value != 40 {
		t.Errorf("position age = %+v", age.DataPoints)
	}
	conns := got[metricConnectionCount].(metricdata.Sum[int64])
	pool := map[string]int64{}
	for _, dp := range conns.DataPoints {
		n, _ := dp.Attributes.Value("db.client.connection.pool.name")
		st, _ := dp.Attributes.Value("db.client.connection.state")
		pool[n.AsString()+"/"+st.AsString()] = dp.Value
	}
	wantPool := map[string]int64{"writer/used": 3, "writer/idle": 2, "reader-1/used": 1, "reader-1/idle": 4}
	for k, v := range wantPool {
		if pool[k] != v {
			t.Errorf("connections %s = %d, want %d (all: %v)", k, pool[k], v, pool)
		}
	}
	if mx := got[metricConnectionMax].(metricdata.Sum[int64]); len(mx.DataPoints) != 2 {
		t.Errorf("connection max = %+v", mx.DataPoints)
	}

	// After close the callback is gone.
	env.tel.close()
	env.tel.close()
	if _, ok := telCollect(t, env.reader)[metricReaderLag].(metricdata.Gauge[float64]); ok {
		t.Error("reader lag still observed after close")
	}
}

// TestTelemetryNoSDKAllocs: without an SDK (the otel globals untouched) or
// with the no-op provider, a statement's instrumentation allocates nothing.
func TestTelemetryNoSDKAllocs(t *testing.T) {
	ep := newTelEndpoint("mysql", "w", "r", "127.0.0.1:3306", "db")
	ctx := context.Background()
	run := func(t *testing.T, tel *telemetry) {
		t.Helper()
		allocs := testing.AllocsPerRun(1000, func() {
			sctx, o := tel.startStatement(ctx, "SELECT 1", ep, telRouteReader, telReasonFreshReader)
			tel.endStatement(sctx, o, ep, telRouteReader, telReasonFreshReader, nil)
			tel.recordTokenWait(ctx, time.Millisecond)
			tel.recordFallback(ctx, telFallbackNoReader)
		})
		if allocs != 0 {
			t.Fatalf("%v allocs per statement, want 0", allocs)
		}
	}
	t.Run("globals without SDK", func(t *testing.T) {
		if !isDefaultGlobalTracerProvider(otel.GetTracerProvider()) {
			t.Skip("skipped: an earlier test installed a global TracerProvider in this process")
		}
		tel := newTelemetry(telemetryConfig{})
		if tel.globalTP == nil || tel.tracing() {
			t.Fatal("the default global provider was not recognised")
		}
		run(t, tel)
	})
	t.Run("noop provider", func(t *testing.T) {
		run(t, newTelemetry(telemetryConfig{tracerProvider: tracenoop.NewTracerProvider()}))
	})
	t.Run("uninstrumented", func(t *testing.T) {
		run(t, nil)
	})
}

// TestTelemetryGlobalSDKInstalledLater: a router opened before the
// application installs its SDK starts tracing once it is installed. It
// changes the process's otel globals, so it runs in a child process.
func TestTelemetryGlobalSDKInstalledLater(t *testing.T) {
	if os.Getenv("DBROUTER_TEST_GLOBAL_SDK") != "1" {
		cmd := exec.Command(os.Args[0], "-test.run=^TestTelemetryGlobalSDKInstalledLater$", "-test.count=1")
		cmd.Env = append(os.Environ(), "DBROUTER_TEST_GLOBAL_SDK=1")
		out, err := cmd.CombinedOutput()
		if err != nil || !strings.Contains(string(out), "PASS") {
			t.Fatalf("child: %v\n%s", err, out)
		}
		return
	}
	tel := newTelemetry(telemetryConfig{})
	if tel.tracing() {
		t.Fatal("tracing without an SDK")
	}
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	defer tp.Shutdown(context.Background())
	otel.SetTracerProvider(tp)
	ep := newTelEndpoint("mysql", "w", "r", "127.0.0.1:3306", "db")
	_, o := tel.startStatement(context.Background(), "DELETE FROM t", ep, telRouteWriter, telReasonWrite)
	tel.endStatement(context.Background(), o, ep, telRouteWriter, telReasonWrite, nil)
	if n := len(rec.Ended()); n != 1 {
		t.Fatalf("%d spans after installing the SDK, want 1", n)
	}
}

var sqlOperationTests = []struct {
	query, want string
}{
	{"SELECT 1", "SELECT"},
	{"  select * from t", "SELECT"},
	{"/* a */ /* b */ Insert INTO t VALUES (1)", "INSERT"},
	{"-- c\nUPDATE t SET x=1", "UPDATE"},
	{"# c\ndelete from t", "DELETE"},
	{"(SELECT 1) UNION (SELECT 2)", "SELECT"},
	{"WITH x AS (SELECT 1) SELECT * FROM x", "WITH"},
	{"show tables", "SHOW"},
	{"FROBNICATE", ""},
	{"", ""},
	{"/* unterminated", ""},
	{"--", ""},
	{"x", ""},
	{"selectx", ""},
}

func TestSQLOperationName(t *testing.T) {
	for _, tt := range sqlOperationTests {
		if got := sqlOperationName(tt.query); got != tt.want {
			t.Errorf("sqlOperationName(%q) = %q, want %q", tt.query, got, tt.want)
		}
	}
	if a := testing.AllocsPerRun(100, func() { sqlOperationName("/* x */ SELECT 1") }); a != 0 {
		t.Errorf("%v allocs", a)
	}
}

func FuzzSQLOperationName(f *testing.F) {
	for _, tt := range sqlOperationTests {
		f.Add(tt.query)
	}
	f.Fuzz(func(t *testing.T, q string) {
		op := sqlOperationName(q)
		if op != "" && !slices.Contains(sqlKeywords[:], op) {
			t.Fatalf("sqlOperationName(%q) = %q, not a keyword", q, op)
		}
	})
}

func TestTelErrorType(t *testing.T) {
	ctx := context.Background()
	canceled, cancel := context.WithCancel(ctx)
	cancel()
	tests := []struct {
		ctx  context.Context
		err  error
		want string
	}{
		{ctx, &mysql.MySQLError{Number: 1290}, "1290"},
		{ctx, newOutcomeUnknown("w", false, mysql.ErrInvalidConn), "outcome_unknown"},
		{ctx, &noWriterError{}, "no_writer"},
		{ctx, mysql.ErrInvalidConn, "connection_lost"},
		{canceled, context.Canceled, "canceled"},
		{ctx, &connectError{err: errors.New("x")}, "not_sent"},
	}
	for _, tt := range tests {
		if got := telErrorType(tt.ctx, tt.err); got != tt.want {
			t.Errorf("telErrorType(%v) = %q, want %q", tt.err, got, tt.want)
		}
	}
}
