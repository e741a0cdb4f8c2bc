// Command aurora-check settles, once, against a real Aurora MySQL cluster,
// what dbrouter assumes about Aurora but cannot verify on the MariaDB stack
// its tests run on (the list is in dbrouter's documentation, "Aurora"):
//
//   - what each instance reports: @@aurora_server_id, @@read_only,
//     @@innodb_read_only (dbrouter recognises the writer by
//     innodb_read_only = 0);
//   - whether a reader's @@gtid_executed moves when the writer writes
//     (Aurora readers do not replicate through the binary log, so
//     DialectMySQL cannot tell what they applied; this shows it);
//   - the rows of information_schema.replica_host_status (and, on a Global
//     Database, aurora_global_db_instance_status) as seen from each
//     instance, including the secondary region's;
//   - how long after a write a heartbeat row becomes visible on each reader
//     (the distribution that sizes DialectHeartbeat's waits);
//   - whether LAST_UPDATE_TIMESTAMP is UTC (its newest value against
//     UTC_TIMESTAMP() on each instance);
//   - with -forward, write forwarding on a secondary region's reader
//     endpoint: whether aurora_replica_read_consistency = SESSION is
//     accepted, whether a read on the session right after a forwarded write
//     sees it, and the error number and text Aurora returns for the statements
//     forwarding does not support (DDL, SAVEPOINT, XA, another isolation
//     level), which dbrouter takes as ER_NOT_SUPPORTED_YET (1235);
//   - with -watch-failover, how long the cluster writer endpoint keeps
//     leading new connections to an instance that is no longer the writer
//     while you run a failover (aws rds failover-db-cluster, or a
//     switchover of the Global Database) from another terminal.
//
// Usage:
//
//	go run ./examples/aurora-check -writer 'user:pw@tcp(cluster-endpoint:3306)/db' \
//	    -reader 'user:pw@tcp(instance-1:3306)/db' -reader 'user:pw@tcp(instance-2:3306)/db' \
//	    [-forward 'user:pw@tcp(secondary-cluster-ro-endpoint:3306)/db']
//
// It creates and drops one table, regiondb_aurora_check, in the writer's
// database, and writes at most 50 rows a second to it for -duration. It
// prints one JSON report. Against a server that is not Aurora (the local
// MariaDB stack), the Aurora-only parts say "unavailable" with the server's
// error, and the rest still runs.
package main

import (
	"context"
	"database/sql"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"time"

	_ "github.com/go-sql-driver/mysql"
)

type dsns []string

func (d *dsns) String() string     { return strings.Join(*d, ",") }
func (d *dsns) Set(s string) error { *d = append(*d, s); return nil }

// instance is what one instance reports about itself and the cluster.
type instance struct {
	Role            string           `json:"role"` // "writer" or "reader N"
	ServerID        string           `json:"aurora_server_id"`
	ReadOnly        string           `json:"read_only"`
	InnoDBReadOnly  string           `json:"innodb_read_only"`
	GTIDMode        string           `json:"gtid_mode"`
	GTIDMovesOnRead *bool            `json:"gtid_executed_moves_after_a_write,omitempty"`
	Topology        []map[string]any `json:"replica_host_status,omitempty"`
	Global          []map[string]any `json:"aurora_global_db_instance_status,omitempty"`
	TopologyAgeMS   *float64         `json:"replica_host_status_newest_age_vs_utc_ms,omitempty"`
	Visibility      *visibility      `json:"heartbeat_visibility_ms,omitempty"`
	Unavailable     []string         `json:"unavailable,omitempty"`
}

type visibility struct {
	Beats int     `json:"beats"`
	Seen  int     `json:"seen"`
	P50   float64 `json:"p50"`
	P90   float64 `json:"p90"`
	P99   float64 `json:"p99"`
	Max   float64 `json:"max"`
}

func main() {
	os.Exit(run(os.Args[1:], os.Stdout))
}

func run(args []string, out io.Writer) int {
	flags := flag.NewFlagSet("aurora-check", flag.ContinueOnError)
	var readers dsns
	writer := flags.String("writer", "", "DSN of the writer (the cluster endpoint)")
	flags.Var(&readers, "reader", "DSN of one reader instance (repeat for each; include the secondary region's)")
	dur := flags.Duration("duration", 20*time.Second, "how long to measure heartbeat visibility")
	fwd := flags.String("forward", "", "DSN of a reader endpoint with write forwarding enabled (a secondary region's cluster-ro endpoint)")
	watch := flags.Duration("watch-failover", 0, "watch the writer endpoint for this long while you run a failover")
	if err := flags.Parse(args); err != nil {
		return 2
	}
	if *writer == "" {
		fmt.Fprintln(os.Stderr, "aurora-check: -writer is required")
		return 2
	}
	ctx := context.Background()
	w, err := sql.Open("mysql", *writer)
	if err != nil {
		fmt.Fprintln(os.Stderr, "aurora-check: writer DSN:", err)
		return 2
	}
	defer w.Close()
	report := map[string]any{}
	var insts []*instance
	dbs := []*sql.DB{w}
	for i, d := range readers {
		db, err := sql.Open("mysql", d)
		if err != nil {
			fmt.Fprintf(os.Stderr, "aurora-check: reader %d DSN: %v\n", i+1, err)
			return 2
		}
		defer db.Close()
		dbs = append(dbs, db)
	}
	for i, db := range dbs {
		role := "writer"
		if i > 0 {
			role = fmt.Sprintf("reader %d", i)
		}
		insts = append(insts, describe(ctx, role, db))
	}
	if err := gtidMoves(ctx, w, dbs[1:], insts[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "aurora-check:", err)
		return 1
	}
	if *fwd != "" {
		report["write_forwarding"] = forwarding(ctx, *fwd)
	}
	heartbeat(ctx, w, dbs[1:], insts[1:], *dur)
	report["instances"] = insts
	if *watch > 0 {
		report["writer_endpoint_after_failover"] = watchFailover(ctx, *writer, *watch)
	}
	b, _ := json.MarshalIndent(report, "", "  ")
	fmt.Fprintln(out, string(b))
	return 0
}

// describe reads what an instance reports about itself and the topology.
func describe(ctx context.Context, role string, db *sql.DB) *instance {
	in := &instance{Role: role}
	one := func(name, q string, dst *string) {
		var v sql.NullString
		if err := db.QueryRowContext(ctx, q).Scan(&v); err != nil {
			in.Unavailable = append(in.Unavailable, name+": "+err.Error())
			return
		}
		*dst = v.String
	}
	one("aurora_server_id", "SELECT @@aurora_server_id", &in.ServerID)
	one("read_only", "SELECT @@global.read_only", &in.ReadOnly)
	one("innodb_read_only", "SELECT @@global.innodb_read_only", &in.InnoDBReadOnly)
	one("gtid_mode", "SELECT @@global.gtid_mode", &in.GTIDMode)
	var err error
	if in.Topology, err = rows(ctx, db, "SELECT SERVER_ID, SESSION_ID, LAST_UPDATE_TIMESTAMP, REPLICA_LAG_IN_MILLISECONDS FROM information_schema.replica_host_status"); err != nil {
		in.Unavailable = append(in.Unavailable, "replica_host_status: "+err.Error())
	}
	if in.Global, err = rows(ctx, db, "SELECT SERVER_ID, SESSION_ID, AWS_REGION, VISIBILITY_LAG_IN_MSEC FROM information_schema.aurora_global_db_instance_status"); err != nil {
		in.Unavailable = append(in.Unavailable, "aurora_global_db_instance_status: "+err.Error())
	}
	// Small and positive if LAST_UPDATE_TIMESTAMP is UTC; hours off if not.
	var age sql.NullFloat64
	if err := db.QueryRowContext(ctx, "SELECT TIMESTAMPDIFF(MICROSECOND, MAX(LAST_UPDATE_TIMESTAMP), UTC_TIMESTAMP(6)) / 1000 "+
		"FROM information_schema.replica_host_status").Scan(&age); err == nil && age.Valid {
		in.TopologyAgeMS = &age.Float64
	}
	return in
}

// forwarding checks write forwarding on one session of the endpoint dsn.
func forwarding(ctx context.Context, dsn string) map[string]any {
	out := map[string]any{}
	db, err := sql.Open("mysql", dsn)
	if err != nil {
		out["error"] = err.Error()
		return out
	}
	defer db.Close()
	conn, err := db.Conn(ctx)
	if err != nil {
		out["error"] = err.Error()
		return out
	}
	defer conn.Close()
	res := func(err error) string {
		if err == nil {
			return "ok"
		}
		return err.Error() // "Error NNNN (SQLSTATE): text" with go-sql-driver/mysql
	}
	out["set_session_consistency"] = res(func() error {
		_, err := conn.ExecContext(ctx, "SET aurora_replica_read_consistency = 'SESSION'")
		return err
	}())
	seq := time.Now().UnixNano()
	_, err = conn.ExecContext(ctx, "REPLACE INTO "+table+" VALUES (2, ?)", seq)
	out["forwarded_write"] = res(err)
	if err == nil {
		var got int64
		err := conn.QueryRowContext(ctx, "SELECT seq FROM "+table+" WHERE id = 2").Scan(&got)
		out["read_after_write_on_session"] = res(err)
		out["read_after_write_sees_it"] = err == nil && got == seq
	}
	for name, stmts := range map[string][]string{
		"ddl":            {"CREATE TABLE " + table + "_ddl (a INT)"},
		"savepoint":      {"BEGIN", "REPLACE INTO " + table + " VALUES (3, 0)", "SAVEPOINT s"},
		"xa":             {"XA START 'regiondb_aurora_check'"},
		"read_committed": {"SET TRANSACTION ISOLATION LEVEL READ COMMITTED", "BEGIN", "REPLACE INTO " + table + " VALUES (3, 0)"},
	} {
		var err error
		for _, q := range stmts {
			if _, err = conn.ExecContext(ctx, q); err != nil {
				break
			}
		}
		conn.ExecContext(ctx, "ROLLBACK")
		out["restricted_"+name] = res(err)
	}
	conn.ExecContext(ctx, "DROP TABLE IF EXISTS "+table+"_ddl")
	return out
}

func rows(ctx context.Context, db *sql.DB, q string) ([]map[string]any, error) {
	rs, err := db.QueryContext(ctx, q)
	if err != nil {
		return nil, err
	}
	defer rs.Close()
	cols, _ := rs.Columns()
	var out []map[string]any
	for rs.Next() {
		vals := make([]sql.NullString, len(cols))
		ptrs := make([]any, len(cols))
		for i := range vals {
			ptrs[i] = &vals[i]
		}
		if err := rs.Scan(ptrs...); err != nil {
			return nil, err
		}
		m := map[string]any{}
		for i, c := range cols {
			m[c] = vals[i].String
		}
		out = append(out, m)
	}
	return out, rs.Err()
}

const table = "regiondb_aurora_check"

// gtidMoves writes on the writer and reports, per reader, whether its
// @@gtid_executed changed within two seconds.
func gtidMoves(ctx context.Context, w *sql.DB, readers []*sql.DB, insts []*instance) error {
	before := make([]string, len(readers))
	for i, r := range readers {
		if err := r.QueryRowContext(ctx, "SELECT @@global.gtid_executed").Scan(&before[i]); err != nil {
			insts[i].Unavailable = append(insts[i].Unavailable, "gtid_executed: "+err.Error())
			before[i] = "\x00"
		}
	}
	if _, err := w.ExecContext(ctx, "CREATE TABLE IF NOT EXISTS "+table+" (id INT PRIMARY KEY, seq BIGINT NOT NULL)"); err != nil {
		return fmt.Errorf("create table: %w", err)
	}
	if _, err := w.ExecContext(ctx, "REPLACE INTO "+table+" VALUES (1, 0)"); err != nil {
		return fmt.Errorf("write: %w", err)
	}
	deadline := time.Now().Add(2 * time.Second)
	for i, r := range readers {
		if before[i] == "\x00" {
			continue
		}
		moved := false
		for !moved && time.Now().Before(deadline) {
			var now string
			if r.QueryRowContext(ctx, "SELECT @@global.gtid_executed").Scan(&now) == nil && now != before[i] {
				moved = true
			}
			time.Sleep(20 * time.Millisecond)
		}
		insts[i].GTIDMovesOnRead = &moved
	}
	return nil
}

// heartbeat increments a row on the writer every 20 ms for d and measures,
// on each reader, when each value first becomes visible.
func heartbeat(ctx context.Context, w *sql.DB, readers []*sql.DB, insts []*instance, d time.Duration) {
	defer w.ExecContext(ctx, "DROP TABLE IF EXISTS "+table)
	ctx, cancel := context.WithTimeout(ctx, d+2*time.Second)
	defer cancel()
	written := make(chan map[int64]time.Time, 1)
	go func() {
		at := map[int64]time.Time{}
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		for seq, end := int64(1), time.Now().Add(d); time.Now().Before(end); seq++ {
			<-tick.C
			if _, err := w.ExecContext(ctx, "UPDATE "+table+" SET seq = ? WHERE id = 1", seq); err == nil {
				at[seq] = time.Now() // acknowledged: a lower bound of visibility delay
			}
		}
		written <- at
	}()
	seen := make([]map[int64]time.Time, len(readers))
	done := make(chan int, len(readers))
	for i, r := range readers {
		seen[i] = map[int64]time.Time{}
		go func() {
			defer func() { done <- i }()
			for ctx.Err() == nil {
				var seq int64
				if r.QueryRowContext(ctx, "SELECT seq FROM "+table+" WHERE id = 1").Scan(&seq) == nil {
					if _, ok := seen[i][seq]; !ok {
						seen[i][seq] = time.Now()
					}
				}
				time.Sleep(2 * time.Millisecond)
			}
		}()
	}
	at := <-written
	cancel()
	for range readers {
		<-done
	}
	for i := range readers {
		var ms []float64
		for seq, t := range at {
			// A value first seen at s was visible no later than s; values
			// skipped over were visible no later than the next one seen.
			var first time.Time
			for s := seq; s < seq+50; s++ {
				if v, ok := seen[i][s]; ok {
					first = v
					break
				}
			}
			if !first.IsZero() {
				ms = append(ms, float64(max(first.Sub(t), 0))/1e6)
			}
		}
		slices.Sort(ms)
		v := &visibility{Beats: len(at), Seen: len(ms)}
		if n := len(ms); n > 0 {
			v.P50, v.P90, v.P99, v.Max = ms[n/2], ms[n*9/10], ms[n*99/100], ms[n-1]
		}
		insts[i].Visibility = v
	}
}

// watchFailover connects anew to the writer endpoint every 100 ms for d and
// records which instance answered and whether it was writable, so that the
// window in which the endpoint led to a read-only instance can be read off.
func watchFailover(ctx context.Context, dsn string, d time.Duration) []string {
	var log []string
	last := ""
	for end := time.Now().Add(d); time.Now().Before(end); time.Sleep(100 * time.Millisecond) {
		db, err := sql.Open("mysql", dsn)
		if err != nil {
			return append(log, err.Error())
		}
		db.SetMaxIdleConns(0)
		var id, ro sql.NullString
		cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		err = db.QueryRowContext(cctx, "SELECT @@aurora_server_id, @@global.innodb_read_only").Scan(&id, &ro)
		cancel()
		db.Close()
		state := fmt.Sprintf("%s innodb_read_only=%s", id.String, ro.String)
		if err != nil {
			state = "error: " + err.Error()
		}
		if state != last {
			log = append(log, time.Now().UTC().Format("15:04:05.000")+" "+state)
			last = state
		}
	}
	return log
}
