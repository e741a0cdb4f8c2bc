// Package aurorashim makes the local MariaDB stack answer the SQL that
// dbrouter sends to Aurora MySQL, for tests and benchmarks of the Aurora
// paths without an Aurora cluster.
//
// It wraps go-sql-driver/mysql connectors (dbrouter's Endpoint.Connector
// hook). Every statement is rewritten by name substitution only (see
// [Renames]): Aurora's information_schema.replica_host_status and
// aurora_global_db_instance_status become real tables of the database
// [Database], kept separately on each server (written with sql_log_bin = 0,
// so they never replicate), @@aurora_server_id becomes a session variable set
// from the server's own row when the connection opens, and innodb_read_only
// becomes read_only (an Aurora reader reports innodb_read_only = 1 where a
// MariaDB replica reports read_only = 1). A statement that names any other
// Aurora-only identifier fails, so new production SQL cannot slip past the
// shim untranslated.
//
// [Shim.Sync] rewrites every server's tables from the stack's state (the
// fault controls' promote moves the writer row); [Shim.SetRows] lets a
// scenario give one server another view (two writer rows during a
// failover). [Resolver] is a scripted name service for the connectors' dial
// hook: it maps endpoint names to stack addresses and can keep giving a
// name's old answer for a while after it changed (stale DNS).
//
// What the shim cannot show is listed in dbrouter's documentation ("Aurora")
// and settled on a real cluster with examples/aurora-check.
package aurorashim

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-sql-driver/mysql"

	"github.com/regiondb/regiondb/internal/testserver"
)

// Database is the database that holds the shim's tables on each server.
// Its name starts with "regiondb" so the stack's application user may read it.
const Database = "regiondb_aurorashim"

// Renames are the name substitutions, production name first. They are the
// only change the shim makes to a statement.
var Renames = [][2]string{
	{"information_schema.replica_host_status", Database + ".replica_host_status"},
	{"information_schema.aurora_global_db_instance_status", Database + ".global_db_instance_status"},
	{"@@aurora_server_id", "@aurora_server_id"},
	{"@@global.innodb_read_only", "@@global.read_only"},
	{"@@innodb_read_only", "@@read_only"},
	// A user variable that the forwarding emulation interprets (see
	// Shim.ForwardingConnector).
	{"SET aurora_replica_read_consistency", "SET @aurora_replica_read_consistency"},
}

var (
	rewriter   = newReplacer(false)
	unrewriter = newReplacer(true)
)

func newReplacer(inverse bool) *strings.Replacer {
	var pairs []string
	for _, r := range Renames {
		if inverse {
			pairs = append(pairs, r[1], r[0])
		} else {
			pairs = append(pairs, r[0], r[1])
		}
	}
	return strings.NewReplacer(pairs...)
}

// ErrUnknownAuroraName is returned for a statement that names an Aurora-only
// identifier the shim does not translate.
var ErrUnknownAuroraName = errors.New("aurorashim: statement names an Aurora-only identifier the shim does not translate")

// Rewrite returns q with the production names replaced (see [Renames]).
func Rewrite(q string) (string, error) {
	out := rewriter.Replace(q)
	rest := strings.NewReplacer("@aurora_server_id", "", "@aurora_replica_read_consistency", "").Replace(out)
	if strings.Contains(strings.ToLower(rest), "aurora_") {
		return "", fmt.Errorf("%w: %q", ErrUnknownAuroraName, q)
	}
	return out, nil
}

// Unrewrite is the inverse of Rewrite.
func Unrewrite(q string) string { return unrewriter.Replace(q) }

// Instance is one stack MariaDB server playing an Aurora instance.
type Instance struct {
	Server string // stack server name (m1, r1, r2)
	ID     string // the instance id (@@aurora_server_id)
	Region string // AWS_REGION
}

// Row is one row of replica_host_status or, with Region set, of
// aurora_global_db_instance_status.
type Row struct {
	ServerID  string
	SessionID string // "MASTER_SESSION_ID" for the writer
	Region    string
	Updated   time.Time
	LagMillis float64
}

// WriterSession is the SESSION_ID of the writer's row.
const WriterSession = "MASTER_SESSION_ID"

// Shim holds the instances of one fake Aurora cluster on the stack. It is
// safe for concurrent use.
type Shim struct {
	Stack     *testserver.Stack
	Instances []Instance
	// Global makes aurora_global_db_instance_status exist (a Global
	// Database); without it, querying it fails as on a regional cluster.
	Global bool
	// Resolver, if not nil, dials the connectors' addresses.
	Resolver *Resolver
	// ForwardEventual makes the sessions of ForwardingConnector ignore
	// aurora_replica_read_consistency = SESSION and read without waiting
	// for their writes (EVENTUAL): the naive control of read-your-writes
	// with forwarding.
	ForwardEventual bool

	connects atomic.Int64
	mu       sync.Mutex       // protects counts, open, peak, fwdOpen and fwdPeak
	counts   map[string]int64 // connections opened per instance id
	open     map[string]int64 // connections open per instance id
	peak     map[string]int64 // most connections open at once per instance id
	fwdOpen  int64            // forwarded sessions open on the primary
	fwdPeak  int64            // most of them open at once
}

// Failover moves the writer role to server as Aurora does: the current
// writer stops taking writes first (read_only, like a writer that
// restarts), then the stack promotes server, then every server's tables
// are rewritten (the writer row moves).
func (s *Shim) Failover(ctx context.Context, server string) error {
	old, err := s.Stack.Primary(ctx)
	if err != nil {
		return err
	}
	if err := s.SetWritable(ctx, old, false); err != nil {
		return err
	}
	if err := s.Stack.Promote(ctx, server); err != nil {
		return err
	}
	return s.Sync(ctx)
}

// SetWritable sets server's read_only (innodb_read_only through the shim).
func (s *Shim) SetWritable(ctx context.Context, server string, writable bool) error {
	v := "1"
	if writable {
		v = "0"
	}
	return s.admin(ctx, server, "SET GLOBAL read_only = "+v)
}

// PeakOpen returns the most connections of this shim's connectors that
// were open at once to the instance with id.
func (s *Shim) PeakOpen(id string) int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.peak[id]
}

// ResetPeak restarts [Shim.PeakOpen] and [Shim.ForwardedPeak] from the
// connections open now (to measure a steady state after start-up).
func (s *Shim) ResetPeak() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for id := range s.peak {
		s.peak[id] = s.open[id]
	}
	s.fwdPeak = s.fwdOpen
}

func (s *Shim) opened(id string, d int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.open == nil {
		s.open, s.peak = map[string]int64{}, map[string]int64{}
	}
	s.open[id] += d
	s.peak[id] = max(s.peak[id], s.open[id])
}

// Setup creates the shim's tables on every instance's server (dropping old
// ones) and fills them with [Shim.Sync].
func (s *Shim) Setup(ctx context.Context) error {
	for _, in := range s.Instances {
		stmts := []string{
			"DROP DATABASE IF EXISTS " + Database,
			"CREATE DATABASE " + Database,
			"CREATE TABLE " + Database + ".self (server_id VARCHAR(64) NOT NULL PRIMARY KEY)",
			"INSERT INTO " + Database + ".self VALUES ('" + in.ID + "')",
			"CREATE TABLE " + Database + ".replica_host_status (SERVER_ID VARCHAR(64) NOT NULL PRIMARY KEY, " +
				"SESSION_ID VARCHAR(64) NOT NULL, LAST_UPDATE_TIMESTAMP DATETIME(6) NOT NULL, " +
				"REPLICA_LAG_IN_MILLISECONDS DOUBLE NOT NULL DEFAULT 0)",
		}
		if s.Global {
			stmts = append(stmts, "CREATE TABLE "+Database+".global_db_instance_status (SERVER_ID VARCHAR(64) NOT NULL PRIMARY KEY, "+
				"SESSION_ID VARCHAR(64) NOT NULL, AWS_REGION VARCHAR(32) NOT NULL, VISIBILITY_LAG_IN_MSEC DOUBLE NULL)")
		}
		if err := s.admin(ctx, in.Server, stmts...); err != nil {
			return err
		}
	}
	return s.Sync(ctx)
}

// Sync rewrites every server's tables from the stack's state: the running
// primary's instance has the writer row; on a Global Database each region's
// replica_host_status lists that region's instances (the writer row only in
// the writer's region) and every server's global table lists all. Every
// instance but the writer is made read-only, as Aurora restarts a demoted
// writer as a reader.
func (s *Shim) Sync(ctx context.Context) error {
	st, err := s.Stack.State(ctx)
	if err != nil {
		return err
	}
	role := map[string]string{}
	for _, sv := range st.Servers {
		if sv.Running {
			role[sv.Name] = sv.Role
		}
	}
	now := time.Now()
	var all []Row
	for _, in := range s.Instances {
		r := Row{ServerID: in.ID, SessionID: "session-" + in.ID, Region: in.Region, Updated: now}
		switch role[in.Server] {
		case "primary":
			r.SessionID = WriterSession
		case "":
			continue // not running: no row
		}
		all = append(all, r)
	}
	for _, in := range s.Instances {
		if role[in.Server] == "" {
			continue
		}
		// An Aurora writer that loses its role restarts as a reader
		// (innodb_read_only = 1); the stack's promote leaves a former
		// primary that had applied no more than the new one writable.
		if role[in.Server] != "primary" {
			if err := s.admin(ctx, in.Server, "SET GLOBAL read_only = 1"); err != nil {
				return err
			}
		}
		var local []Row
		for _, r := range all {
			if !s.Global || r.Region == in.Region {
				local = append(local, r)
			}
		}
		if err := s.SetRows(ctx, in.Server, local, all); err != nil {
			return err
		}
	}
	return nil
}

// SetRows replaces server's replica_host_status with hosts and (on a Global
// Database) its global table with global, in one transaction: a topology
// read sees the old rows or the new ones, as on Aurora, never the empty
// tables between the DELETE and the INSERTs (which made every instance
// look gone for one refresh).
func (s *Shim) SetRows(ctx context.Context, server string, hosts, global []Row) error {
	stmts := []string{"START TRANSACTION", "DELETE FROM " + Database + ".replica_host_status"}
	for _, r := range hosts {
		stmts = append(stmts, fmt.Sprintf("INSERT INTO %s.replica_host_status VALUES ('%s', '%s', '%s', %g)",
			Database, r.ServerID, r.SessionID, r.Updated.UTC().Format("2006-01-02 15:04:05.000000"), r.LagMillis))
	}
	if s.Global {
		stmts = append(stmts, "DELETE FROM "+Database+".global_db_instance_status")
		for _, r := range global {
			stmts = append(stmts, fmt.Sprintf("INSERT INTO %s.global_db_instance_status VALUES ('%s', '%s', '%s', %g)",
				Database, r.ServerID, r.SessionID, r.Region, r.LagMillis))
		}
	}
	return s.admin(ctx, server, append(stmts, "COMMIT")...)
}

// admin runs stmts on server as the stack's admin, outside the binary log.
func (s *Shim) admin(ctx context.Context, server string, stmts ...string) error {
	db, err := sql.Open("mysql", s.Stack.AdminDSN(server))
	if err != nil {
		return err
	}
	defer db.Close()
	conn, err := db.Conn(ctx)
	if err != nil {
		return fmt.Errorf("aurorashim: %s: %w", server, err)
	}
	defer conn.Close()
	// UTC, like LAST_UPDATE_TIMESTAMP on Aurora.
	for _, q := range append([]string{"SET SESSION sql_log_bin = 0", "SET time_zone = '+00:00'"}, stmts...) {
		if _, err := conn.ExecContext(ctx, q); err != nil {
			return fmt.Errorf("aurorashim: %s: %s: %w", server, q, err)
		}
	}
	return nil
}

// Connector returns a connector for dsn (a go-sql-driver/mysql DSN whose
// address may be a name of the Resolver) that rewrites statements.
func (s *Shim) Connector(dsn string) (driver.Connector, error) {
	mc, err := mysql.ParseDSN(dsn)
	if err != nil {
		return nil, err
	}
	mc.Logger = &mysql.NopLogger{}
	if mc.Timeout == 0 {
		mc.Timeout = 3 * time.Second
	}
	if s.Resolver != nil {
		mc.DialFunc = s.Resolver.DialContext
	}
	base, err := mysql.NewConnector(mc)
	if err != nil {
		return nil, err
	}
	return &connector{shim: s, base: base}, nil
}

// Connects returns how many connections the shim's connectors opened.
func (s *Shim) Connects() int64 { return s.connects.Load() }

// ConnectsTo returns how many connections reached the instance with id.
func (s *Shim) ConnectsTo(id string) int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.counts[id]
}

func (s *Shim) counted(id string) {
	s.connects.Add(1)
	s.mu.Lock()
	if s.counts == nil {
		s.counts = map[string]int64{}
	}
	s.counts[id]++
	s.mu.Unlock()
	s.opened(id, 1)
}
