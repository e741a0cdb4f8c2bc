package dbrouter

import (
	"crypto/rand"
	"database/sql/driver"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"time"

	"github.com/go-sql-driver/mysql"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"
)

// Defaults used for zero fields of [Config].
const (
	// DefaultDialTimeout is the dial timeout of an endpoint whose DSN sets
	// none (the DSN's timeout parameter), so that an unreachable server
	// fails a statement in bounded time even under a context without a
	// deadline.
	DefaultDialTimeout = 3 * time.Second
	// DefaultMaxLag is the lag beyond which a reader gets no reads at all.
	DefaultMaxLag = 30 * time.Second
	// DefaultMaxWait caps how long a read waits for a reader to apply the
	// position it needs before it goes to another reader or the writer.
	DefaultMaxWait = time.Second
	// DefaultPollInterval is the least time between two polls of one reader
	// by one router while reads wait for it.
	DefaultPollInterval = 20 * time.Millisecond
	// DefaultMonitorInterval is the period of the background check of the
	// writer's and each reader's position (lag and health) when nothing
	// waits. See the package documentation for the load it puts on readers.
	DefaultMonitorInterval = 15 * time.Second
	// DefaultMonitorTimeout bounds one monitor query.
	DefaultMonitorTimeout = time.Second
	// DefaultTokenMaxAge is how long a read-your-writes token stays valid.
	DefaultTokenMaxAge = time.Hour
	// DefaultTokenCookie is the cookie that carries the token for browsers.
	DefaultTokenCookie = "regiondb_ryw"
	// DefaultTokenHeader is the request and response header that carries
	// the token for API clients.
	DefaultTokenHeader = "Regiondb-Token"
)

// Config configures a [Router]. The zero value plus a writer DSN works: all
// reads then go to the writer. Fields are read once by [Open]; changing the
// Config afterwards has no effect.
type Config struct {
	// Region is the region this process runs in, such as "us-east-1".
	// Reads prefer readers of this region. Required when there are readers.
	Region string

	// Writer is the endpoint that takes writes. Required.
	Writer Endpoint

	// Readers are the read replicas, each with its region. Empty means
	// every statement goes to the writer. No reader in Region is allowed
	// (reads then use other regions' readers or the writer); Open logs it.
	Readers []Endpoint

	// Dialect says how replication positions are read. Zero means
	// [DialectMariaDB].
	Dialect Dialect

	// HeartbeatTable is the table of [DialectHeartbeat]. Empty means
	// [DefaultHeartbeatTable].
	HeartbeatTable string

	// HeartbeatPeriod, with [DialectHeartbeat], makes this router compete
	// to write the heartbeat on the writer at this period. Every router of
	// a fleet may set it: one of those in the writer's region, elected with
	// a named lock on the writer, beats at a time, and another takes over
	// within a second when it stops. A read that needs a position waits
	// about half a period plus the reader's lag; each beat is one commit on
	// the writer, so 10–20 ms costs 50–100 small commits a second. Zero
	// means this router does not beat (another process must).
	HeartbeatPeriod time.Duration

	// TokenKeys sign and verify read-your-writes tokens: the first signs,
	// all verify (rotation). Every process and region of a service must
	// share them. Empty means a random key made by Open, so tokens are only
	// valid inside this process; Open then logs a warning.
	TokenKeys []TokenKey

	// TokenMaxAge is how long a token is honoured. If zero,
	// [DefaultTokenMaxAge] is used.
	TokenMaxAge time.Duration

	// TokenCookie is the cookie name used by [Router.Middleware]. If empty,
	// [DefaultTokenCookie] is used.
	TokenCookie string

	// TokenCookieSecure says when [Router.Middleware] marks the token
	// cookie Secure. Zero ([CookieSecureAuto]) marks it Secure only when
	// the request reached this process over TLS (r.TLS != nil), which is
	// never the case behind a load balancer that terminates TLS: set
	// [CookieSecureAlways] there.
	TokenCookieSecure CookieSecure

	// TokenHeader is the header name used by [Router.Middleware]. If
	// empty, [DefaultTokenHeader] is used.
	TokenHeader string

	// TokenCarrier, if not nil, loads and saves the token instead of the
	// cookie (for example in the user's server-side session). The header
	// is still honoured for API clients.
	TokenCarrier TokenCarrier

	// MaxLag excludes a reader from all reads while it is known to be
	// further behind than this. If zero, [DefaultMaxLag] is used.
	MaxLag time.Duration

	// MaxWait caps the time a read waits for a reader to catch up with the
	// position it needs. The wait is a little over the reader's recent
	// lag, at most MaxWait. If zero, [DefaultMaxWait] is used; if negative,
	// reads never wait.
	MaxWait time.Duration

	// PollInterval is the least time between two polls of one reader while
	// reads wait for it. If zero, [DefaultPollInterval] is used.
	PollInterval time.Duration

	// MonitorInterval is the period of the background check of positions,
	// lag and health. If zero, [DefaultMonitorInterval] is used.
	MonitorInterval time.Duration

	// MonitorTimeout bounds each monitor query. If zero,
	// [DefaultMonitorTimeout] is used.
	MonitorTimeout time.Duration

	// Watermarks, if not nil, shares the monitors' knowledge of readers
	// between the processes of the fleet: a process reads it before
	// querying a reader, and only the process that wins a claim queries.
	// Reader names must then be the same in every process. Each reader's
	// monitor calls the store from a goroutine of its own; a call that
	// fails or takes longer than half a PollInterval (plus 5/8 of the
	// reader's recent lag, as reads then wait longer) makes the process
	// query the reader itself. The store also shares the writer a search
	// found: another process's search probes that one alone first (one
	// connection instead of one per endpoint, when a fleet searches after a
	// failover). If nil, each process queries the readers and searches by
	// itself.
	Watermarks WatermarkStore

	// PreferWriter sends a read whose local readers are too far behind to
	// the writer before trying readers of other regions. By default the
	// other regions' readers come first, to keep load off the writer.
	PreferWriter bool

	// WriterProbeTimeout bounds each probe of a writer search (connect and
	// one query per endpoint; the probes of a search run concurrently). If
	// zero, each probe's timeout is sized to the endpoint's measured
	// connect time (see [DefaultWriterProbeTimeout]).
	WriterProbeTimeout time.Duration

	// WriterSearchInterval is the least time between two writer searches.
	// While searches find no writer, the time between them doubles up to
	// four intervals, lengthened at random by up to a quarter so that a
	// fleet's probes spread out. If zero, [DefaultWriterSearchInterval] is
	// used.
	WriterSearchInterval time.Duration

	// Aurora says the cluster is Aurora MySQL: [DialectMySQL] is then
	// refused (use [DialectHeartbeat]), and writer searches also ask which instance is
	// the writer (@@aurora_server_id and
	// information_schema.replica_host_status), trusting that over an
	// instance that still reports itself writable during a failover.
	Aurora bool

	// AuroraInstanceHosts, with Aurora, makes [OpenAurora] route to each
	// instance of the cluster through its own instance endpoint. It maps a
	// region to the host pattern of the instance endpoints in that region,
	// "?" standing for the instance id (@@aurora_server_id), with an
	// optional port, such as "?.abcdefghijkl.us-east-1.rds.amazonaws.com"
	// (the AWS wrappers' clusterInstanceHostPattern). [Open] refuses it:
	// use OpenAurora. Nil means no instance topology.
	AuroraInstanceHosts map[string]string

	// WriteForwarding, with Aurora and [DialectHeartbeat], maps a region to
	// the reader endpoint of that region's cluster on which Aurora write
	// forwarding is enabled (a Global Database's secondary cluster reader
	// endpoint, "…cluster-ro-…"). Only the entry of Region is used, and only
	// while the writer is in another region (its [Endpoint].Region, which
	// [OpenAurora] sets from the topology): the router's writes then go to
	// that endpoint through a small pool of its own (see ForwardingPool),
	// each connection opened with aurora_replica_read_consistency =
	// SESSION, and the region's processes hold no connections to the
	// writer for their writes. Reads still go to readers by position.
	//
	// Only statements the endpoint supports are forwarded: INSERT, UPDATE,
	// DELETE, REPLACE, writing SELECT and WITH statements, and read-write
	// transactions at the default or REPEATABLE READ isolation level.
	// Everything else (DDL, XA, SAVEPOINT, LOAD DATA, SET, LOCK TABLES,
	// CALL, other isolation levels) goes to the writer as without
	// forwarding. A statement the endpoint refuses as unsupported (inside a
	// forwarded transaction) fails with [ErrForwardingRestricted], never
	// [ErrOutcomeUnknown]; one that provably did not reach it (endpoint
	// down, forwarding disabled as after a switchover) runs on the writer.
	// A write's read-your-writes position is read on its forwarding session
	// right after it. While it forwards, the monitors' background checks
	// do not read the writer's position (a reader's lag is then measured
	// by the reads that wait for it); bounded-staleness reads
	// ([WithMaxStaleness]) and reads that fall back to the writer still use
	// the writer's pool. Nil means no forwarding.
	WriteForwarding map[string]Endpoint

	// ForwardingPool limits the pool of the forwarding endpoint. Zero
	// fields mean [DefaultForwardingMaxOpenConns],
	// [DefaultForwardingMaxIdleConns] and [DefaultForwardingConnMaxIdleTime]
	// (and [DefaultConnMaxLifetime]).
	ForwardingPool PoolConfig

	// AuroraTopologyInterval is how often a router opened with
	// [OpenAurora] reads the cluster's topology again (one read, on a pooled
	// connection of a local reader if one answers): instances added to the
	// cluster become readers, instances removed stop getting reads, and a
	// writer other than the current one starts a writer search. A writer
	// search asks for an early read, but there is never more than one read
	// per interval. If zero, [DefaultAuroraTopologyInterval] is used; if
	// negative, the topology is read only by OpenAurora.
	AuroraTopologyInterval time.Duration

	// NewConnector, if not nil, makes the connector of every endpoint that
	// the router builds itself from a DSN (the Aurora instances of
	// [OpenAurora]), such as a driver with IAM authentication or custom
	// TLS. If nil, go-sql-driver/mysql is used as for a DSN of [Endpoint].
	NewConnector func(dsn string) (driver.Connector, error) `json:"-"`

	// RecordQueryText is ignored: every span records the statement's text
	// as db.query.text with its literals replaced by "?" (never its
	// arguments), as the database conventions recommend by default.
	//
	// Deprecated: the text is recorded without literals whatever its value.
	RecordQueryText bool

	// WriterPool and ReaderPool limit the connection pools (one per
	// endpoint) of the writer and of each reader. Zero values mean the
	// defaults of [PoolConfig].
	WriterPool PoolConfig
	ReaderPool PoolConfig

	// Logger receives background events (a reader excluded or back, a token
	// rejected). If nil, nothing is logged.
	Logger *slog.Logger

	// TracerProvider and MeterProvider are for OpenTelemetry
	// instrumentation. If nil, the global providers are used.
	TracerProvider trace.TracerProvider
	MeterProvider  metric.MeterProvider

	// DisableCombinedStatements turns off the one-round-trip path of
	// [DialectMariaDB] (on by default for endpoints given as a DSN): a
	// read that must observe a position, or a read or write of a
	// read-your-writes scope, then costs a second round trip (a server-side
	// wait before the read; the position read after it), as with the other
	// dialects and with endpoints given as a Connector.
	//
	// The path sets multiStatements=true and interpolateParams=true on the
	// router's own copy of each DSN: statements with arguments are sent as
	// one text with the arguments escaped by the driver (the text protocol:
	// no server-side prepared statement, one round trip instead of two).
	// Because such a connection would run every statement of a text, each
	// text a caller sends must then be ONE statement (a final ";" and
	// comments allowed): any other text is refused with an error before it
	// is sent (see the package documentation). A DSN that sets
	// multiStatements=true itself keeps its texts unchecked and its
	// statements separate.
	//
	// A combined INSERT or REPLACE needs its table's AUTO_INCREMENT column
	// and triggers, which the router reads from information_schema (see
	// "One round trip per statement" in the package documentation). A
	// stored function called by a combined write sees LAST_INSERT_ID() as
	// 0.
	DisableCombinedStatements bool

	// auroraInstances is set by OpenAurora on the Config it passes to Open.
	auroraInstances bool
	// auroraState, set by OpenAurora, makes Open run the topology refresh.
	auroraState *auroraState

	// unguardedPromotedWait restores, for the control of a test only, the
	// behaviour before issue 13: a reader that became the writer gets
	// unguarded server-side waits, which time out on MariaDB.
	unguardedPromotedWait bool
	// unwatched, for the control of a test only, turns the post-write
	// watch off (see Router.monitor).
	unwatched bool
	// unguardedStore, for the control of a test only, calls the
	// WatermarkStore on the monitor's goroutine with no time limit.
	unguardedStore bool
	// naiveInsertCombine, for the control of a test only, combines every
	// scoped INSERT and REPLACE with its position read (see
	// writeConn.combinable).
	naiveInsertCombine bool
	// auroraJoinedReadOnly restores, for the control of a test only, the
	// topology refresh before joined instances became writer candidates:
	// an instance that joined after OpenAurora is a reader only.
	auroraJoinedReadOnly bool
}

// Endpoint is one database server (or cluster endpoint).
type Endpoint struct {
	// Name identifies the endpoint in logs, errors and telemetry. If empty,
	// the DSN's address (host:port) is used.
	Name string
	// DSN is a go-sql-driver/mysql DSN. Required unless Connector is set.
	DSN string
	// Region is the endpoint's region. Required for readers.
	Region string
	// Connector, if not nil, opens connections instead of the DSN (a
	// custom driver, or a wrapper for tests). Name is then required.
	Connector driver.Connector
}

// LogValue describes the endpoint without its DSN (which holds a password).
func (e Endpoint) LogValue() slog.Value {
	return slog.GroupValue(slog.String("name", e.Name), slog.String("region", e.Region))
}

// String describes the endpoint with the DSN's password replaced by
// REDACTED (the whole DSN if it does not parse).
func (e Endpoint) String() string {
	return "{Name:" + e.Name + " DSN:" + redactDSN(e.DSN) + " Region:" + e.Region + " Connector:" + typeName(e.Connector) + "}"
}

// GoString is String in Go syntax, for %#v.
func (e Endpoint) GoString() string {
	return fmt.Sprintf("dbrouter.Endpoint{Name:%q, DSN:%q, Region:%q, Connector:%s}", e.Name, redactDSN(e.DSN), e.Region, typeName(e.Connector))
}

// Format makes every fmt verb print [Endpoint.String] (%#v:
// [Endpoint.GoString]), so that no format shows the password.
func (e Endpoint) Format(f fmt.State, verb rune) { formatRedacted(f, verb, e) }

// MarshalJSON encodes the endpoint with its DSN redacted like String's
// (and the Connector's type name, if set).
func (e Endpoint) MarshalJSON() ([]byte, error) {
	var conn string
	if e.Connector != nil {
		conn = typeName(e.Connector)
	}
	return json.Marshal(struct {
		Name, DSN, Region string
		Connector         string `json:",omitempty"`
	}{e.Name, redactDSN(e.DSN), e.Region, conn})
}

// formatRedacted implements Format for the types that hold secrets.
func formatRedacted(f fmt.State, verb rune, v interface {
	fmt.Stringer
	fmt.GoStringer
}) {
	if verb == 'v' && f.Flag('#') {
		io.WriteString(f, v.GoString())
		return
	}
	io.WriteString(f, v.String())
}

// redactDSN returns dsn with its password replaced by REDACTED, or
// REDACTED if dsn does not parse.
func redactDSN(dsn string) string {
	if dsn == "" {
		return ""
	}
	mc, err := mysql.ParseDSN(dsn)
	if err != nil {
		return "REDACTED"
	}
	if mc.Passwd != "" {
		mc.Passwd = "REDACTED"
	}
	return mc.FormatDSN()
}

func typeName(v any) string {
	if v == nil {
		return "nil"
	}
	return fmt.Sprintf("%T", v)
}

// normalized is a validated copy of a Config with defaults applied.
type normalized struct {
	Config
	writer    endpointSpec
	readers   []endpointSpec
	forward   *endpointSpec // WriteForwarding[Region], if any
	warnings  []string
	tokenKeys []TokenKey
}

type endpointSpec struct {
	Endpoint
	connector driver.Connector
	database  string
	mc        *mysql.Config // the parsed DSN (nil for a Connector)
	combine   bool          // connector has multiStatements set by the router
}

// combineOn rebuilds the connector of a DSN endpoint with multiStatements
// and interpolateParams (see Config.DisableCombinedStatements). A DSN that
// set multiStatements itself, or whose collation the driver does not
// interpolate for, keeps its connector.
func (s *endpointSpec) combineOn() {
	if s.mc == nil || s.mc.MultiStatements {
		return
	}
	mc := s.mc.Clone()
	mc.MultiStatements, mc.InterpolateParams = true, true
	conn, err := mysql.NewConnector(mc)
	if err != nil {
		return
	}
	s.connector, s.combine = conn, true
}

// validate copies cfg, applies defaults and checks every field.
func validate(cfg Config) (*normalized, error) {
	n := &normalized{Config: cfg}
	c := &n.Config
	c.Readers = append([]Endpoint(nil), cfg.Readers...)
	for _, d := range []struct {
		field string
		v     time.Duration
	}{
		{"TokenMaxAge", c.TokenMaxAge}, {"MaxLag", c.MaxLag}, {"PollInterval", c.PollInterval},
		{"MonitorInterval", c.MonitorInterval}, {"MonitorTimeout", c.MonitorTimeout},
		{"HeartbeatPeriod", c.HeartbeatPeriod},
		{"WriterProbeTimeout", c.WriterProbeTimeout}, {"WriterSearchInterval", c.WriterSearchInterval},
	} {
		if d.v < 0 {
			return nil, &ConfigError{Field: d.field, Reason: "negative duration"}
		}
	}
	if _, err := newDialect(c.Dialect, c.HeartbeatTable); err != nil {
		return nil, &ConfigError{Field: "Dialect", Reason: err.Error()}
	}
	if c.Aurora && c.Dialect == DialectMySQL {
		return nil, &ConfigError{Field: "Dialect", Reason: "DialectMySQL cannot tell what an Aurora reader has applied " +
			"(Aurora replicas do not replicate through the binary log): use DialectHeartbeat with Aurora"}
	}
	if len(c.AuroraInstanceHosts) > 0 && !c.auroraInstances {
		return nil, &ConfigError{Field: "AuroraInstanceHosts", Reason: "set, but the router was not opened with OpenAurora"}
	}
	if c.HeartbeatTable != "" && !validIdent(c.HeartbeatTable) {
		return nil, &ConfigError{Field: "HeartbeatTable", Reason: "not a plain table name"}
	}
	var err error
	if n.writer, err = endpoint("Writer", c.Writer, false); err != nil {
		return nil, err
	}
	combine := !c.DisableCombinedStatements && c.Dialect == DialectMariaDB
	if combine {
		n.writer.combineOn()
	}
	seen := map[string]string{n.writer.Name: "Writer"}
	seenAddr := map[string]string{n.writer.database: "Writer"}
	local := 0
	for i, r := range c.Readers {
		field := fmt.Sprintf("Readers[%d]", i)
		spec, err := endpoint(field, r, true)
		if err != nil {
			return nil, err
		}
		if combine {
			spec.combineOn()
		}
		if prev, dup := seen[spec.Name]; dup {
			return nil, &ConfigError{Field: field + ".Name", Reason: "duplicate endpoint " + spec.Name + " (also " + prev + ")"}
		}
		if prev, dup := seenAddr[spec.database]; dup && spec.database != "" {
			return nil, &ConfigError{Field: field + ".DSN", Reason: "duplicate endpoint address " + spec.Name + " (also " + prev + ")"}
		}
		seen[spec.Name], seenAddr[spec.database] = field, field
		if spec.Region == c.Region {
			local++
		}
		n.readers = append(n.readers, spec)
	}
	if len(c.Readers) > 0 && c.Region == "" {
		return nil, &ConfigError{Field: "Region", Reason: "empty, but readers are configured"}
	}
	if len(c.Readers) > 0 && local == 0 {
		n.warnings = append(n.warnings, "no reader in the local region "+c.Region+": reads go to other regions' readers or the writer")
	}
	if len(c.WriteForwarding) > 0 {
		if !c.Aurora || c.Dialect != DialectHeartbeat {
			return nil, &ConfigError{Field: "WriteForwarding", Reason: "needs Aurora and DialectHeartbeat"}
		}
		if e, ok := c.WriteForwarding[c.Region]; ok {
			field := "WriteForwarding[" + c.Region + "]"
			spec, err := endpoint(field, e, false)
			if err != nil {
				return nil, err
			}
			if spec.Region != "" && spec.Region != c.Region {
				return nil, &ConfigError{Field: field + ".Region", Reason: "not the key's region"}
			}
			spec.Region = c.Region
			if prev, dup := seen[spec.Name]; dup {
				return nil, &ConfigError{Field: field + ".Name", Reason: "duplicate endpoint " + spec.Name + " (also " + prev + ")"}
			}
			n.forward = &spec
		}
	}
	if err := c.ForwardingPool.validate("ForwardingPool"); err != nil {
		return nil, &ConfigError{Field: "ForwardingPool", Reason: "inconsistent limits", Err: err}
	}
	ids := map[uint8]bool{}
	for i, k := range c.TokenKeys {
		if len(k.Secret) < 16 {
			return nil, &ConfigError{Field: fmt.Sprintf("TokenKeys[%d].Secret", i), Reason: "shorter than 16 bytes"}
		}
		if ids[k.ID] {
			return nil, &ConfigError{Field: fmt.Sprintf("TokenKeys[%d].ID", i), Reason: "duplicate key id"}
		}
		ids[k.ID] = true
		n.tokenKeys = append(n.tokenKeys, TokenKey{ID: k.ID, Secret: append([]byte(nil), k.Secret...)})
	}
	if len(n.tokenKeys) == 0 {
		secret := make([]byte, 32)
		rand.Read(secret)
		n.tokenKeys = []TokenKey{{ID: 0, Secret: secret}}
	}
	if c.TokenMaxAge == 0 {
		c.TokenMaxAge = DefaultTokenMaxAge
	}
	if c.TokenCookie == "" {
		c.TokenCookie = DefaultTokenCookie
	}
	if c.TokenHeader == "" {
		c.TokenHeader = DefaultTokenHeader
	}
	if c.MaxLag == 0 {
		c.MaxLag = DefaultMaxLag
	}
	switch {
	case c.MaxWait == 0:
		c.MaxWait = DefaultMaxWait
	case c.MaxWait < 0:
		c.MaxWait = 0
	}
	if c.PollInterval == 0 {
		c.PollInterval = DefaultPollInterval
	}
	if c.MonitorInterval == 0 {
		c.MonitorInterval = DefaultMonitorInterval
	}
	if c.MonitorTimeout == 0 {
		c.MonitorTimeout = DefaultMonitorTimeout
	}
	if err := c.WriterPool.validate("WriterPool"); err != nil {
		return nil, &ConfigError{Field: "WriterPool", Reason: "inconsistent limits", Err: err}
	}
	if err := c.ReaderPool.validate("ReaderPool"); err != nil {
		return nil, &ConfigError{Field: "ReaderPool", Reason: "inconsistent limits", Err: err}
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return n, nil
}

// endpoint validates one endpoint and builds its connector. It does no I/O.
func endpoint(field string, e Endpoint, reader bool) (endpointSpec, error) {
	spec := endpointSpec{Endpoint: e}
	if e.Connector != nil {
		if e.Name == "" {
			return spec, &ConfigError{Field: field + ".Name", Reason: "required with a Connector"}
		}
		spec.connector = e.Connector
	} else {
		if e.DSN == "" {
			return spec, &ConfigError{Field: field + ".DSN", Reason: "empty"}
		}
		mc, err := mysql.ParseDSN(e.DSN)
		if err != nil {
			return spec, &ConfigError{Field: field + ".DSN", Reason: "malformed", Err: err}
		}
		if spec.Name == "" {
			spec.Name = mc.Addr
		}
		spec.database = mc.Net + "(" + mc.Addr + ")/" + mc.DBName
		// The driver's own logger writes to stderr; the router reports
		// what matters through errors, telemetry and Config.Logger.
		mc.Logger = &mysql.NopLogger{}
		if mc.Timeout == 0 {
			mc.Timeout = DefaultDialTimeout
		}
		conn, err := mysql.NewConnector(mc)
		if err != nil {
			return spec, &ConfigError{Field: field + ".DSN", Reason: "malformed", Err: err}
		}
		spec.connector, spec.mc = conn, mc
	}
	if reader && e.Region == "" {
		return spec, &ConfigError{Field: field + ".Region", Reason: "empty"}
	}
	return spec, nil
}

func validIdent(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c == '_' || c == '.' || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')) {
			return false
		}
	}
	return s != ""
}
