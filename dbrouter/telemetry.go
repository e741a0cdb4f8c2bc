package dbrouter

import (
	"context"
	"database/sql"
	"errors"
	"iter"
	"net"
	"reflect"
	"strconv"
	"time"

	"github.com/go-sql-driver/mysql"
	"github.com/regiondb/regiondb/internal/otelattr"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/metric"
	semconv "go.opentelemetry.io/otel/semconv/v1.40.0"
	"go.opentelemetry.io/otel/trace"
	tracenoop "go.opentelemetry.io/otel/trace/noop"
)

// ScopeName is the instrumentation scope name (the import path) of the
// tracer and the meter the router uses.
const ScopeName = "github.com/regiondb/regiondb/dbrouter"

// Attribute keys of regiondb's own span and metric attributes.
const (
	// attrRoute is the role that served a statement: "writer" or "reader".
	attrRoute = attribute.Key("regiondb.route")
	// attrRegion is the region of the endpoint that served it.
	attrRegion = otelattr.Region
	// attrReason says why the statement went where it went (see telReason).
	attrReason = attribute.Key("regiondb.reason")
	// attrEndpoint is the configured name of the endpoint (never a DSN).
	attrEndpoint = attribute.Key("regiondb.endpoint")
)

// Metric names (OpenTelemetry semantic conventions where one exists).
const (
	metricOperationDuration = "db.client.operation.duration"
	metricConnectionCount   = "db.client.connection.count"
	metricConnectionMax     = "db.client.connection.max"
	metricStatements        = "regiondb.dbrouter.statements"
	metricTokenWait         = "regiondb.dbrouter.token.wait.duration"
	metricFallbacks         = "regiondb.dbrouter.writer_fallbacks"
	metricFailovers         = "regiondb.dbrouter.failovers"
	metricReaderLag         = "regiondb.dbrouter.reader.lag"
	metricPositionAge       = "regiondb.dbrouter.reader.position_age"
)

// telemetryConfig configures newTelemetry.
type telemetryConfig struct {
	// tracerProvider and meterProvider: nil means the otel globals.
	tracerProvider trace.TracerProvider
	meterProvider  metric.MeterProvider
	// dbSystem is db.system.name: "mysql" (also for Aurora MySQL) or "mariadb".
	dbSystem string
	// readers and pools feed the observable instruments at each collection.
	// Either may be nil.
	readers iter.Seq[telReaderStat]
	pools   iter.Seq[telPoolStat]
}

// telReaderStat is one reader's replication state as the monitor knows it.
type telReaderStat struct {
	ep *telEndpoint
	// lag is the reader's replication lag; positionAge how long ago the
	// monitor last learned its applied position.
	lag, positionAge time.Duration
	// known is false when the monitor has no usable measurement (reader
	// down, NULL lag): then no value is reported.
	known bool
}

// telPoolStat is one endpoint's connection pool.
type telPoolStat struct {
	ep    *telEndpoint
	route telRoute
	stats sql.DBStats
}

// telEndpoint holds the attributes of one endpoint, built once.
type telEndpoint struct {
	name, region string
	// spanAttrs are set on the spans of statements it serves.
	spanAttrs []attribute.KeyValue
	// opOpts[route][op] identify it in db.client.operation.duration, with
	// the operation name (op indexes sqlKeywords plus one; 0: none).
	opOpts [telRouteCount][len(sqlKeywords) + 1][]metric.RecordOption
	// stmtOpts[route][reason] identify its statements in the statements
	// counter, with its region: local and other-region reads stay apart.
	stmtOpts [telRouteCount][telReasonCount][]metric.AddOption
	// readerSet identifies it in the reader gauges.
	readerOpts []metric.ObserveOption
	// poolOpts identify its pool in the connection metrics: used, idle, max.
	poolUsed, poolIdle, poolMax [telRouteCount][]metric.ObserveOption
}

// newTelEndpoint builds the attributes of an endpoint: its configured name,
// region, address (host:port as in the DSN) and database name.
func newTelEndpoint(dbSystem, name, region, addr, database string) *telEndpoint {
	ep := &telEndpoint{name: name, region: region}
	host, portStr, err := net.SplitHostPort(addr)
	if err != nil {
		host, portStr = addr, ""
	}
	port, _ := strconv.Atoi(portStr)
	base := []attribute.KeyValue{semconv.DBSystemNameKey.String(dbSystem), semconv.ServerAddress(host)}
	if port > 0 {
		base = append(base, semconv.ServerPort(port))
	}
	if database != "" {
		base = append(base, semconv.DBNamespace(database))
	}
	ep.spanAttrs = append(append([]attribute.KeyValue(nil), base...), attrRegion.String(region), attrEndpoint.String(name))
	for r := range telRouteCount {
		route := telRoute(r)
		opAttrs := append(append([]attribute.KeyValue(nil), base...), attrRoute.String(route.String()), attrRegion.String(region))
		ep.opOpts[r][0] = []metric.RecordOption{metric.WithAttributeSet(attribute.NewSet(opAttrs...))}
		for i, k := range sqlKeywords {
			withOp := append(append([]attribute.KeyValue(nil), opAttrs...), semconv.DBOperationName(k))
			ep.opOpts[r][i+1] = []metric.RecordOption{metric.WithAttributeSet(attribute.NewSet(withOp...))}
		}
		for why := range telReasonCount {
			ep.stmtOpts[r][why] = []metric.AddOption{metric.WithAttributeSet(attribute.NewSet(
				attrRoute.String(route.String()), attrReason.String(telReason(why).String()), attrRegion.String(region)))}
		}
		pool := []attribute.KeyValue{
			semconv.DBClientConnectionPoolName(name), attrRoute.String(route.String()), attrRegion.String(region),
		}
		ep.poolUsed[r] = []metric.ObserveOption{metric.WithAttributeSet(attribute.NewSet(append(pool, semconv.DBClientConnectionStateUsed)...))}
		ep.poolIdle[r] = []metric.ObserveOption{metric.WithAttributeSet(attribute.NewSet(append(pool, semconv.DBClientConnectionStateIdle)...))}
		ep.poolMax[r] = []metric.ObserveOption{metric.WithAttributeSet(attribute.NewSet(pool...))}
	}
	ep.readerOpts = []metric.ObserveOption{metric.WithAttributeSet(attribute.NewSet(
		attrEndpoint.String(name), attrRegion.String(region), semconv.ServerAddress(host)))}
	return ep
}

// telemetry is the router's OpenTelemetry instrumentation: one span per
// statement and the router's metrics. A nil *telemetry records nothing (the
// uninstrumented baseline of the overhead benchmark). It is safe for
// concurrent use.
type telemetry struct {
	tracer    trace.Tracer
	startOpts []trace.SpanStartOption
	// globalTP is the otel global TracerProvider as resolved when the router
	// was opened, if it was the global's default delegate (no SDK installed
	// yet); nil otherwise. While otel.GetTracerProvider still returns it, no
	// SDK is installed and spans are skipped without allocating.
	globalTP trace.TracerProvider
	// noopTP is set when the configured provider is the no-op one.
	noopTP   bool
	dbSystem attribute.KeyValue

	opDuration metric.Float64Histogram
	statements metric.Int64Counter
	tokenWait  metric.Float64Histogram
	fallbacks  metric.Int64Counter
	failovers  metric.Int64Counter

	stmtOpts     [telRouteCount][telReasonCount][]metric.AddOption
	fallbackOpts [telFallbackCount][]metric.AddOption
	reg          metric.Registration
}

// isDefaultGlobalTracerProvider reports whether tp is the global
// delegating TracerProvider that otel.GetTracerProvider returns until an SDK
// is installed with otel.SetTracerProvider. Its type is internal to otel,
// so it is recognised by name; if otel renames it, the check is simply
// false and spans are started (correct, only slower without an SDK).
func isDefaultGlobalTracerProvider(tp trace.TracerProvider) bool {
	t := reflect.TypeOf(tp)
	return t != nil && t.Kind() == reflect.Pointer &&
		t.Elem().PkgPath() == "go.opentelemetry.io/otel/internal/global" && t.Elem().Name() == "tracerProvider"
}

// newTelemetry creates the tracer, the meter and every instrument once.
// Instrument creation errors go to otel.Handle, never to the caller.
func newTelemetry(cfg telemetryConfig) *telemetry {
	t := &telemetry{}
	if cfg.dbSystem == "" {
		cfg.dbSystem = semconv.DBSystemNameMySQL.Value.AsString()
	}
	t.dbSystem = semconv.DBSystemNameKey.String(cfg.dbSystem)
	version := otelattr.Version()

	tp := cfg.tracerProvider
	if tp == nil {
		tp = otel.GetTracerProvider()
		if isDefaultGlobalTracerProvider(tp) {
			t.globalTP = tp
		}
	}
	if _, ok := tp.(tracenoop.TracerProvider); ok {
		t.noopTP = true
	}
	t.tracer = tp.Tracer(ScopeName, trace.WithInstrumentationVersion(version))
	t.startOpts = []trace.SpanStartOption{trace.WithSpanKind(trace.SpanKindClient)}

	mp := cfg.meterProvider
	if mp == nil {
		mp = otel.GetMeterProvider()
	}
	m := mp.Meter(ScopeName, metric.WithInstrumentationVersion(version))
	var err error
	handle := func(e error) {
		if e != nil {
			otel.Handle(e)
		}
	}
	t.opDuration, err = m.Float64Histogram(metricOperationDuration, metric.WithUnit("s"),
		metric.WithDescription("Duration of database client operations."),
		metric.WithExplicitBucketBoundaries(0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 10))
	handle(err)
	t.statements, err = m.Int64Counter(metricStatements, metric.WithUnit("{statement}"),
		metric.WithDescription("Statements routed, by the role that served them and why."))
	handle(err)
	t.tokenWait, err = m.Float64Histogram(metricTokenWait, metric.WithUnit("s"),
		metric.WithDescription("Time reads waited for a reader to apply their read-your-writes token."),
		metric.WithExplicitBucketBoundaries(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5))
	handle(err)
	t.fallbacks, err = m.Int64Counter(metricFallbacks, metric.WithUnit("{statement}"),
		metric.WithDescription("Reads sent to the writer because no reader could serve them."))
	handle(err)
	t.failovers, err = m.Int64Counter(metricFailovers, metric.WithUnit("{failover}"),
		metric.WithDescription("Times the router found a new writer."))
	handle(err)
	lag, err := m.Float64ObservableGauge(metricReaderLag, metric.WithUnit("ms"),
		metric.WithDescription("Replication lag of each reader as the monitor last measured it."))
	handle(err)
	posAge, err := m.Float64ObservableGauge(metricPositionAge, metric.WithUnit("ms"),
		metric.WithDescription("Age of each reader's applied position as the monitor knows it."))
	handle(err)
	conns, err := m.Int64ObservableUpDownCounter(metricConnectionCount, metric.WithUnit("{connection}"),
		metric.WithDescription("Connections of each endpoint's pool, by state (used or idle)."))
	handle(err)
	connMax, err := m.Int64ObservableUpDownCounter(metricConnectionMax, metric.WithUnit("{connection}"),
		metric.WithDescription("Maximum open connections of each endpoint's pool (0: unlimited)."))
	handle(err)

	for r := range telRouteCount {
		for why := range telReasonCount {
			t.stmtOpts[r][why] = []metric.AddOption{metric.WithAttributeSet(attribute.NewSet(
				attrRoute.String(telRoute(r).String()), attrReason.String(telReason(why).String())))}
		}
	}
	for f := range telFallbackCount {
		t.fallbackOpts[f] = []metric.AddOption{metric.WithAttributeSet(attribute.NewSet(
			attrReason.String(telFallbackNames[f])))}
	}

	readers, pools := cfg.readers, cfg.pools
	if readers != nil || pools != nil {
		var observed []metric.Observable
		for _, o := range []metric.Observable{lag, posAge, conns, connMax} {
			if o != nil {
				observed = append(observed, o)
			}
		}
		t.reg, err = m.RegisterCallback(func(_ context.Context, o metric.Observer) error {
			if readers != nil {
				for rs := range readers {
					if !rs.known {
						continue
					}
					o.ObserveFloat64(lag, float64(rs.lag)/float64(time.Millisecond), rs.ep.readerOpts...)
					o.ObserveFloat64(posAge, float64(rs.positionAge)/float64(time.Millisecond), rs.ep.readerOpts...)
				}
			}
			if pools != nil {
				for ps := range pools {
					o.ObserveInt64(conns, int64(ps.stats.InUse), ps.ep.poolUsed[ps.route]...)
					o.ObserveInt64(conns, int64(ps.stats.Idle), ps.ep.poolIdle[ps.route]...)
					o.ObserveInt64(connMax, int64(ps.stats.MaxOpenConnections), ps.ep.poolMax[ps.route]...)
				}
			}
			return nil
		}, observed...)
		handle(err)
	}
	return t
}

// close unregisters the observable callback. It is idempotent.
func (t *telemetry) close() {
	if t == nil || t.reg == nil {
		return
	}
	if err := t.reg.Unregister(); err != nil {
		otel.Handle(err)
	}
	t.reg = nil
}

// tracing reports whether statements may get spans: false when the
// provider is the no-op one, or is the otel global while no SDK is installed.
func (t *telemetry) tracing() bool {
	if t.noopTP {
		return false
	}
	if t.globalTP != nil && otel.GetTracerProvider() == t.globalTP {
		return false
	}
	return true
}

// stmtObs carries what endStatement needs about a statement in flight. It is
// a value, so starting and ending a statement allocates nothing when no SDK
// is installed.
type stmtObs struct {
	span  trace.Span // nil when not traced
	start time.Time  // zero when the duration is not recorded
	op    uint8      // operation: index in sqlKeywords plus one; 0: none
}

// startStatement starts the span of a statement that ep serves as route for
// reason. It returns the context to run the statement with (carrying the
// span, if any). Attributes are built only if the span is recording.
func (t *telemetry) startStatement(ctx context.Context, query string, ep *telEndpoint, route telRoute, reason telReason) (context.Context, stmtObs) {
	return t.startCall(ctx, query, true, ep, route, reason)
}

// startCall is startStatement for a call whose text is the statement's own
// (isQuery: recorded as db.query.text, without its literals) or only names
// the operation (BEGIN, COMMIT, ROLLBACK).
func (t *telemetry) startCall(ctx context.Context, query string, isQuery bool, ep *telEndpoint, route telRoute, reason telReason) (context.Context, stmtObs) {
	if t == nil {
		return ctx, stmtObs{}
	}
	var o stmtObs
	if t.opDuration != nil && t.opDuration.Enabled(ctx) {
		o.start = time.Now()
		o.op = uint8(sqlOperationIndex(query))
	}
	if !t.tracing() {
		return ctx, o
	}
	op := sqlOperationName(query)
	name := op
	if name == "" {
		name = t.dbSystem.Value.AsString()
	}
	ctx, span := t.tracer.Start(ctx, name, t.startOpts...)
	o.span = span
	if span.IsRecording() {
		attrs := make([]attribute.KeyValue, 0, len(ep.spanAttrs)+5)
		attrs = append(attrs, ep.spanAttrs...)
		attrs = append(attrs, attrRoute.String(route.String()), attrReason.String(reason.String()))
		if op != "" {
			attrs = append(attrs, semconv.DBOperationName(op))
		}
		if isQuery {
			attrs = append(attrs, semconv.DBQueryText(sanitizeQuery(query)))
		}
		span.SetAttributes(attrs...)
	}
	return ctx, o
}

// endStatement ends the statement's span and records its metrics. route and
// reason are where it was finally served (a retry may have moved it); err is
// its error (nil on success). The span's status description never holds the
// server's message, which may quote argument values ("Duplicate entry
// 'alice@example.com'"): only error numbers and regiondb's own classes.
func (t *telemetry) endStatement(ctx context.Context, o stmtObs, ep *telEndpoint, route telRoute, reason telReason, err error) {
	if t == nil {
		return
	}
	if t.statements != nil && t.statements.Enabled(ctx) {
		opts := t.stmtOpts[route][reason]
		if ep != nil {
			opts = ep.stmtOpts[route][reason]
		}
		t.statements.Add(ctx, 1, opts...)
	}
	var errType string
	if err != nil && (o.span != nil || !o.start.IsZero()) {
		errType = telErrorType(ctx, err)
	}
	if !o.start.IsZero() {
		d := time.Since(o.start).Seconds()
		opts := ep.opOpts[route][o.op]
		if errType == "" {
			t.opDuration.Record(ctx, d, opts...)
		} else if n := mysqlErrorNumber(err); n != "" {
			t.opDuration.Record(ctx, d, opts[0], metric.WithAttributes(semconv.ErrorTypeKey.String(errType), semconv.DBResponseStatusCode(n)))
		} else {
			t.opDuration.Record(ctx, d, opts[0], metric.WithAttributes(semconv.ErrorTypeKey.String(errType)))
		}
	}
	if o.span == nil {
		return
	}
	if err != nil && o.span.IsRecording() {
		o.span.SetAttributes(semconv.ErrorTypeKey.String(errType))
		if n := mysqlErrorNumber(err); n != "" {
			o.span.SetAttributes(semconv.DBResponseStatusCode(n))
		}
		o.span.SetStatus(codes.Error, errType)
	}
	o.span.End()
}

// telErrorType returns error.type for err: the MySQL error number, the
// failure class of connection failures, or semconv's type-derived name.
func telErrorType(ctx context.Context, err error) string {
	if errors.Is(err, ErrOutcomeUnknown) {
		return "outcome_unknown"
	}
	if errors.Is(err, ErrNoWriter) {
		return "no_writer"
	}
	var me *mysql.MySQLError
	if errors.As(err, &me) {
		return strconv.Itoa(int(me.Number))
	}
	switch k := classifyFailure(ctx, err); k {
	case failCaller, failNotSent, failLost:
		return k.String()
	}
	return semconv.ErrorType(err).Value.AsString()
}

// recordTokenWait records how long a read waited for its token.
func (t *telemetry) recordTokenWait(ctx context.Context, d time.Duration) {
	if t == nil || t.tokenWait == nil || !t.tokenWait.Enabled(ctx) {
		return
	}
	t.tokenWait.Record(ctx, d.Seconds())
}

// recordFallback counts a read sent to the writer.
func (t *telemetry) recordFallback(ctx context.Context, why telFallback) {
	if t == nil || t.fallbacks == nil || !t.fallbacks.Enabled(ctx) {
		return
	}
	t.fallbacks.Add(ctx, 1, t.fallbackOpts[why]...)
}

// recordFailover counts a change of writer to the endpoint ep.
func (t *telemetry) recordFailover(ctx context.Context, ep *telEndpoint) {
	if t == nil || t.failovers == nil || !t.failovers.Enabled(ctx) {
		return
	}
	t.failovers.Add(ctx, 1, metric.WithAttributes(attrEndpoint.String(ep.name), attrRegion.String(ep.region)))
}

// endpointTel builds the telemetry attributes of an endpoint from its DSN
// (address and database; for a Connector endpoint only its name).
func endpointTel(dbSystem string, spec endpointSpec) *telEndpoint {
	addr, database := spec.Name, ""
	if spec.DSN != "" {
		if mc, err := mysql.ParseDSN(spec.DSN); err == nil {
			addr, database = mc.Addr, mc.DBName
			if _, _, err := net.SplitHostPort(addr); err != nil {
				addr = spec.Name
			}
		}
	}
	return newTelEndpoint(dbSystem, spec.Name, spec.Region, addr, database)
}

// telReaders feeds the reader gauges: each reader's lag and the age of the
// position it is known to have applied (now minus the last time it had all
// the writer had).
func (rt *Router) telReaders(yield func(telReaderStat) bool) {
	now := time.Now()
	for _, r := range rt.rdrs() {
		st := telReaderStat{ep: r.tel, known: r.healthy.Load() && r.wm.Load() != nil}
		st.lag = time.Duration(r.lagNanos.Load())
		if f := r.freshAsOf.Load(); f > 0 {
			st.positionAge = now.Sub(time.Unix(0, f))
		} else {
			st.positionAge = now.Sub(rt.opened)
		}
		if !yield(st) {
			return
		}
	}
}

// telPools feeds the connection metrics from each pool's sql.DBStats.
func (rt *Router) telPools(yield func(telPoolStat) bool) {
	rt.wmu.Lock()
	ws := make([]*writerTarget, 0, len(rt.wpools))
	for _, w := range rt.wpools {
		if w != nil {
			ws = append(ws, w)
		}
	}
	rt.wmu.Unlock()
	for _, w := range ws {
		if !yield(telPoolStat{ep: w.tel, route: telRouteWriter, stats: w.db.Stats()}) {
			return
		}
	}
	for _, r := range rt.rdrs() {
		if !yield(telPoolStat{ep: r.tel, route: telRouteReader, stats: r.db.Stats()}) {
			return
		}
	}
}
