package dbrouter

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"strings"
	"time"

	"github.com/go-sql-driver/mysql"
)

// Aurora topology queries (see [OpenAurora]). Rows of replica_host_status
// not updated for 300 s belong to instances that are gone, except the
// writer's row, which is kept so that the newest of two writer rows (during
// a failover) can win. LAST_UPDATE_TIMESTAMP is in UTC.
const (
	auroraHostsQuery = "SELECT SERVER_ID, SESSION_ID, LAST_UPDATE_TIMESTAMP FROM information_schema.replica_host_status " +
		"WHERE SESSION_ID = 'MASTER_SESSION_ID' OR LAST_UPDATE_TIMESTAMP >= UTC_TIMESTAMP() - INTERVAL 300 SECOND " +
		"ORDER BY LAST_UPDATE_TIMESTAMP DESC"
	auroraGlobalQuery = "SELECT SERVER_ID, SESSION_ID, AWS_REGION FROM information_schema.aurora_global_db_instance_status"
)

// auroraWriterSession is the SESSION_ID of the writer's row.
const auroraWriterSession = "MASTER_SESSION_ID"

// auroraConfirmRounds bounds how many times OpenAurora re-reads the
// topology from an instance that did not confirm it is the writer.
const auroraConfirmRounds = 3

// auroraReadTimeout bounds one topology read of OpenAurora (connect and
// three queries), also under a ctx without a deadline: long enough for a
// cross-region handshake.
const auroraReadTimeout = 5 * time.Second

// auroraTopology is what one instance says about its cluster.
type auroraTopology struct {
	self     string            // the answering instance's id
	readOnly bool              // its innodb_read_only
	writer   string            // the writer's id ("" if no row names one)
	regions  map[string]string // instance id → region
	order    []string          // instance ids, newest update first
	global   bool              // read from aurora_global_db_instance_status
}

// OpenAurora opens a [Router] for an Aurora MySQL cluster (or Global
// Database) that routes to each instance through its own endpoint, with one
// watermark per instance. It does network I/O, bounded by ctx (and each
// endpoint's part by five seconds): through the
// configured Writer (the cluster endpoint) or, if that does not answer, the
// configured Readers (cluster reader endpoints), it reads the topology from
// information_schema.replica_host_status (rows updated in the last 300 s;
// the writer is the newest row with SESSION_ID 'MASTER_SESSION_ID') and, on
// a Global Database, information_schema.aurora_global_db_instance_status
// (each instance's AWS_REGION). Every instance then gets an endpoint built
// from cfg.AuroraInstanceHosts of its region and the Writer's DSN with the
// host replaced (an instance of a region without a pattern is left out, and
// logged). The configured endpoints are used for this bootstrap only: a
// cluster reader endpoint, which DNS balances across instances, never
// becomes a reader with one watermark for several instances.
//
// The writer is confirmed on its instance endpoint by its own id
// (@@aurora_server_id) and innodb_read_only = 0. When the cluster writer
// endpoint led to a reader (DNS that still names the instance that was the
// writer before a failover: Aurora's TTL is 5 s, and clients cache longer),
// OpenAurora logs it and uses the instance the topology names; when the
// named writer does not confirm, it re-reads the topology from that instance
// (at most three rounds). Later failovers are found by the writer search
// among the instance endpoints, which no failover moves, so stale DNS of the
// cluster endpoints cannot make a reader the writer.
//
// cfg needs Aurora, AuroraInstanceHosts, [DialectHeartbeat] and a Writer
// with a DSN (its user, password, database and parameters are reused).
// The Router reads the topology again every [Config].AuroraTopologyInterval
// (and, within that bound, after writer searches), on a pooled connection:
// an instance that joined the cluster becomes a reader (so does the former
// writer after a failover), one that left gets no reads until it is back,
// and a writer it does not write to starts a writer search. An instance
// that joined is also a writer candidate from then on, so a failover to it
// is found like one to an instance known at OpenAurora.
//
// # Unverified without a real Aurora cluster
//
// The tests run this against the MariaDB stack through a shim that renames
// Aurora's tables and variables (internal/aurorashim), so what follows is
// taken from Aurora's documentation and the AWS wrappers, not observed:
// readers' @@read_only (assumed 0, hence the use of innodb_read_only);
// whether readers' @@gtid_executed moves (assumed not, hence no
// DialectMySQL); which rows a secondary region's replica_host_status shows
// (assumed that region's instances, without a writer row, hence the global
// table); that LAST_UPDATE_TIMESTAMP is UTC; how long the cluster writer
// endpoint keeps leading to the old writer after a failover; the
// distribution of the heartbeat's visibility delay on readers; and, for
// [Config].WriteForwarding, that aurora_replica_read_consistency = SESSION
// makes a read on the session right after a forwarded write wait for it
// (so the position read there covers the write), and that Aurora refuses
// the statements forwarding does not support with ER_NOT_SUPPORTED_YET
// (1235), which is what [ErrForwardingRestricted] matches. The command
// examples/aurora-check (with -forward for the last two) settles them in
// one run against a real cluster.
func OpenAurora(ctx context.Context, cfg Config) (*Router, error) {
	if !cfg.Aurora {
		return nil, &ConfigError{Field: "Aurora", Reason: "false, but OpenAurora needs an Aurora cluster"}
	}
	if cfg.Dialect != DialectHeartbeat {
		return nil, &ConfigError{Field: "Dialect", Reason: "Aurora readers have no binlog position: use DialectHeartbeat"}
	}
	if len(cfg.AuroraInstanceHosts) == 0 {
		return nil, &ConfigError{Field: "AuroraInstanceHosts", Reason: "empty"}
	}
	patterns := map[string]string{}
	for region, p := range cfg.AuroraInstanceHosts {
		if strings.Count(p, "?") != 1 || strings.ContainsAny(p, "/@()") || strings.Contains(p, "??") {
			return nil, &ConfigError{Field: "AuroraInstanceHosts[" + region + "]", Reason: "not a host pattern with one \"?\""}
		}
		patterns[region] = p
	}
	if cfg.Writer.DSN == "" {
		return nil, &ConfigError{Field: "Writer.DSN", Reason: "empty: OpenAurora builds instance DSNs from it"}
	}
	base, err := mysql.ParseDSN(cfg.Writer.DSN)
	if err != nil {
		return nil, &ConfigError{Field: "Writer.DSN", Reason: "malformed", Err: err}
	}
	// Validate the bootstrap endpoints as Open would.
	boot := cfg
	boot.AuroraInstanceHosts, boot.auroraInstances = nil, false
	n, err := validate(boot)
	if err != nil {
		return nil, err
	}
	logger := n.Logger
	defRegion := cfg.Writer.Region
	if defRegion == "" {
		defRegion = cfg.Region
	}

	b := &auroraBuilder{cfg: &cfg, base: base, patterns: patterns, defRegion: defRegion}
	// Bootstrap: the writer endpoint, then the reader endpoints.
	var topo *auroraTopology
	var errs []error
	for i, spec := range append([]endpointSpec{n.writer}, n.readers...) {
		t, err := readAuroraTopology(ctx, spec.connector, defRegion)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", spec.Name, err))
			continue
		}
		if i == 0 && (t.self != t.writer || t.readOnly) {
			logger.LogAttrs(ctx, slog.LevelWarn, "dbrouter: the Aurora writer endpoint led to a reader (stale DNS after a failover?); using the writer's instance endpoint",
				slog.String("endpoint", spec.Name), slog.String("instance", t.self), slog.String("writer", t.writer))
		}
		topo = t
		break
	}
	if topo == nil {
		return nil, &EndpointError{Endpoint: n.writer.Name, Op: "read Aurora topology", Err: errors.Join(errs...)}
	}
	// Confirm the writer on its own instance endpoint.
	for round := 0; ; round++ {
		if topo.writer == "" {
			return nil, &EndpointError{Endpoint: n.writer.Name, Op: "read Aurora topology", Err: ErrNoWriter}
		}
		wspec, err := b.endpoint(topo.writer, topo.regions[topo.writer])
		if err != nil {
			return nil, err
		}
		t, err := readAuroraTopology(ctx, wspec.Connector, defRegion)
		if err == nil && t.self == topo.writer && !t.readOnly && (t.writer == topo.writer || t.writer == "") {
			if t.writer == topo.writer {
				topo = t
			}
			break
		}
		if round+1 >= auroraConfirmRounds {
			if err == nil {
				err = fmt.Errorf("instance %s answers as %s (innodb_read_only=%v, writer row %s)", topo.writer, t.self, t.readOnly, t.writer)
			}
			return nil, &EndpointError{Endpoint: topo.writer, Op: "confirm Aurora writer", Err: errors.Join(ErrNoWriter, err)}
		}
		if err == nil {
			topo = t // the instance knows better: refresh the topology from it
		}
	}

	out := cfg
	out.auroraInstances = true
	if cfg.AuroraTopologyInterval >= 0 {
		dbSystem := "mysql"
		out.auroraState = &auroraState{builder: b, interval: cfg.AuroraTopologyInterval, defRegion: defRegion,
			dbSystem: dbSystem, kick: make(chan struct{}, 1)}
		if out.auroraState.interval == 0 {
			out.auroraState.interval = DefaultAuroraTopologyInterval
		}
	}
	out.Readers = nil
	if out.Writer, err = b.endpoint(topo.writer, topo.regions[topo.writer]); err != nil {
		return nil, err
	}
	for _, id := range topo.order {
		if id == topo.writer {
			continue
		}
		ep, err := b.endpoint(id, topo.regions[id])
		if errors.Is(err, errNoPattern) {
			logger.LogAttrs(ctx, slog.LevelWarn, "dbrouter: Aurora instance left out: no AuroraInstanceHosts pattern for its region",
				slog.String("instance", id), slog.String("region", topo.regions[id]))
			continue
		}
		if err != nil {
			return nil, err
		}
		out.Readers = append(out.Readers, ep)
	}
	return Open(out)
}

// errNoPattern is returned by auroraBuilder.endpoint for a region without a
// host pattern.
var errNoPattern = errors.New("dbrouter: no AuroraInstanceHosts pattern for the region")

// auroraBuilder makes instance endpoints.
type auroraBuilder struct {
	cfg       *Config
	base      *mysql.Config
	patterns  map[string]string
	defRegion string
}

// endpoint returns the endpoint of instance id in region.
func (b *auroraBuilder) endpoint(id, region string) (Endpoint, error) {
	if region == "" {
		region = b.defRegion
	}
	p, ok := b.patterns[region]
	if !ok {
		return Endpoint{}, errNoPattern
	}
	if id == "" || strings.ContainsAny(id, "/@():?[] \t\r\n") {
		return Endpoint{}, fmt.Errorf("dbrouter: Aurora instance id %q is not a host name label", id)
	}
	addr := strings.Replace(p, "?", id, 1)
	if _, _, err := net.SplitHostPort(addr); err != nil {
		port := "3306"
		if _, p, err := net.SplitHostPort(b.base.Addr); err == nil {
			port = p
		}
		addr = net.JoinHostPort(addr, port)
	}
	mc := b.base.Clone()
	mc.Addr = addr
	dsn := mc.FormatDSN()
	ep := Endpoint{Name: id, DSN: dsn, Region: region}
	if b.cfg.NewConnector != nil {
		c, err := b.cfg.NewConnector(dsn)
		if err != nil {
			return Endpoint{}, &ConfigError{Field: "NewConnector", Reason: "failed for instance " + id, Err: err}
		}
		ep.Connector = c
	} else {
		// Same connector as Open builds for a DSN (its defaults included).
		spec, err := endpoint("instance "+id, ep, false)
		if err != nil {
			return Endpoint{}, err
		}
		ep.Connector = spec.connector
	}
	return ep, nil
}

// readAuroraTopology asks the instance behind c who it is and what the
// cluster looks like, on one fresh connection.
func readAuroraTopology(ctx context.Context, c driver.Connector, defRegion string) (*auroraTopology, error) {
	ctx, cancel := context.WithTimeout(ctx, auroraReadTimeout)
	defer cancel()
	db := sql.OpenDB(c)
	defer db.Close()
	return readAuroraTopologyDB(ctx, db, defRegion)
}

// readAuroraTopologyDB is readAuroraTopology on a connection of db.
func readAuroraTopologyDB(ctx context.Context, db *sql.DB, defRegion string) (*auroraTopology, error) {
	ctx, cancel := context.WithTimeout(ctx, auroraReadTimeout)
	defer cancel()
	conn, err := db.Conn(ctx)
	if err != nil {
		return nil, unwrapConnectError(err)
	}
	defer conn.Close()
	t := &auroraTopology{regions: map[string]string{}}
	var self sql.NullString
	if err := conn.QueryRowContext(ctx, probeAuroraIDQuery).Scan(&self, &t.readOnly); err != nil {
		return nil, err
	}
	t.self = self.String
	rows, err := conn.QueryContext(ctx, auroraHostsQuery)
	if err != nil {
		return nil, err
	}
	for rows.Next() {
		var id, session string
		var updated sql.RawBytes
		if err := rows.Scan(&id, &session, &updated); err != nil {
			rows.Close()
			return nil, err
		}
		if session == auroraWriterSession && t.writer == "" {
			t.writer = id // newest writer row
		}
		if !slices.Contains(t.order, id) {
			t.order = append(t.order, id)
			t.regions[id] = defRegion
		}
	}
	if err := rows.Close(); err != nil {
		return nil, err
	}
	// A Global Database lists every region's instances; a regional cluster
	// has no such table (an error, ignored).
	grows, err := conn.QueryContext(ctx, auroraGlobalQuery)
	if err == nil {
		t.global = true
		for grows.Next() {
			var id, session, region string
			if err := grows.Scan(&id, &session, &region); err != nil {
				grows.Close()
				return nil, err
			}
			if !slices.Contains(t.order, id) {
				t.order = append(t.order, id)
			}
			t.regions[id] = region
			if session == auroraWriterSession && t.writer == "" {
				t.writer = id // a secondary region's table has no writer row
			}
		}
		if err := grows.Close(); err != nil {
			return nil, err
		}
	} else if ctx.Err() != nil {
		return nil, ctx.Err()
	}
	if t.self == "" {
		return nil, errors.New("dbrouter: @@aurora_server_id is empty: not an Aurora MySQL instance")
	}
	return t, nil
}
