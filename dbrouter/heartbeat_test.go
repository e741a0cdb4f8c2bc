package dbrouter

import (
	"database/sql"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/regiondb/regiondb/internal/testserver"
)

// beatRate measures how fast the heartbeat counter on m1 grows, in beats
// per second, over d.
func beatRate(t *testing.T, db *sql.DB, table string, d time.Duration) float64 {
	t.Helper()
	read := func() int64 {
		var n int64
		if err := db.QueryRow("SELECT seq FROM " + table + " WHERE id = 1").Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	a, start := read(), time.Now()
	time.Sleep(d) // measuring a rate over real time
	return float64(read()-a) / time.Since(start).Seconds()
}

// TestHeartbeatOneBeater: of 12 routers with HeartbeatPeriod set, one
// beats (the counter grows at one beater's rate, not twelve), routers
// outside the writer's region never do, and when the beater closes another
// takes over within about the election interval.
func TestHeartbeatOneBeater(t *testing.T) {
	s := testserver.Require(t)
	const table = "hb_election"
	const period = 20 * time.Millisecond
	stackConfig(t, s, testserver.PrimaryRegion) // creates the test database
	m1, err := sql.Open("mysql", s.DSN("m1", testDB))
	if err != nil {
		t.Fatal(err)
	}
	defer m1.Close()
	if _, err := m1.Exec("DROP TABLE IF EXISTS " + table); err != nil {
		t.Fatal(err)
	}
	var routers []*Router
	for i := range 12 {
		region := testserver.PrimaryRegion
		if i%4 == 3 {
			region = testserver.SecondaryRegion // not the writer's: never beats
		}
		cfg := stackConfig(t, s, region)
		cfg.Writer.Region = testserver.PrimaryRegion
		cfg.Dialect, cfg.HeartbeatTable, cfg.HeartbeatPeriod = DialectHeartbeat, table, period
		rt, err := Open(cfg)
		if err != nil {
			t.Fatal(err)
		}
		defer rt.Close()
		routers = append(routers, rt)
	}
	waitFor(t, 10*time.Second, "the heartbeat table", func() bool {
		var n int
		return m1.QueryRow("SELECT COUNT(*) FROM "+table).Scan(&n) == nil && n == 2
	})
	one := float64(time.Second / period)
	rate := beatRate(t, m1, table, time.Second)
	t.Logf("12 routers (9 in the writer's region), period %v: %.0f beats/s (one beater: %.0f)", period, rate, one)
	if rate > 1.5*one || rate < one/3 {
		t.Fatalf("counter grew %.0f/s, want about %.0f (one beater); 9 beaters would make %.0f", rate, one, 9*one)
	}
	var writer int64
	if err := m1.QueryRow("SELECT seq FROM " + table + " WHERE id = 2").Scan(&writer); err != nil || writer != 1 {
		t.Fatalf("row 2 (writer id) = %d, %v; want m1's server id 1", writer, err)
	}

	// Close the writer-region routers one by one but the last: the beater
	// is among them, so at least one takeover happens, and the counter
	// must keep growing after every close.
	var local []*Router
	for i, rt := range routers {
		if i%4 != 3 {
			local = append(local, rt)
		}
	}
	for _, rt := range local[:len(local)-1] {
		rt.Close()
		waitFor(t, 3*electionInterval, "a beater after a close", func() bool {
			return beatRate(t, m1, table, 100*time.Millisecond) > one/3
		})
	}
}

// TestHeartbeatWriterStreams: positions carry the writer's server id, so a
// write on another writer is never covered by this writer's counter (the
// position of a write before the new writer's first beat names the new
// writer; readers show the old one's).
func TestHeartbeatWriterStreams(t *testing.T) {
	d := heartbeatDialect{table: "t"}
	old, err := d.parseReader("1:1000")
	if err != nil {
		t.Fatal(err)
	}
	afterFailover, err := d.parseWriter("2:991")
	if err != nil {
		t.Fatal(err)
	}
	if old.covers(afterFailover) {
		t.Fatal("the old writer's counter at 1000 covers the new writer's 991")
	}
	legacy, err := d.parseReader("990")
	if err != nil || legacy.String() != "hb:990" {
		t.Fatalf("bare counter: %v, %v", legacy, err)
	}
	if p, err := parsePositionText(afterFailover.String()); err != nil || !p.covers(afterFailover) || !afterFailover.covers(p) {
		t.Fatalf("text round trip of %v: %v, %v", afterFailover, p, err)
	}
}

// TestHeartbeatTableNotOnReaderYet: a reader that lacks the heartbeat table
// (on a new cluster the beater creates it when the monitors start, and an
// Aurora instance that joins can be polled before it has it) answers and
// has applied nothing, as with a missing row: it stays usable for reads
// that need no position (before, its monitor excluded it as failed, and
// the writer served them), and the router logs it once.
func TestHeartbeatTableNotOnReaderYet(t *testing.T) {
	s := testserver.Require(t)
	const table = "hb_not_replicated"
	cfg := stackConfig(t, s, testserver.PrimaryRegion) // creates the test database
	m1, err := sql.Open("mysql", s.AdminDSN("m1"))
	if err != nil {
		t.Fatal(err)
	}
	defer m1.Close()
	// On m1 only (not logged): the replicas never get the table.
	conn, err := m1.Conn(ctxT(t))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	for _, q := range []string{
		"SET SESSION sql_log_bin = 0",
		"USE " + testDB,
		"DROP TABLE IF EXISTS " + table,
		"CREATE TABLE " + table + " (id INT PRIMARY KEY, seq BIGINT UNSIGNED NOT NULL, ts TIMESTAMP(6) NOT NULL)",
		"INSERT INTO " + table + " (id, seq, ts) VALUES (1, 1, NOW(6)), (2, @@server_id, NOW(6))",
	} {
		if _, err := conn.ExecContext(ctxT(t), q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	defer conn.ExecContext(ctxT(t), "DROP TABLE IF EXISTS "+table) // before conn.Close
	var logMu sync.Mutex
	var logs strings.Builder
	cfg.Logger = slog.New(slog.NewTextHandler(&auroraLogWriter{mu: &logMu, w: &logs}, nil))
	cfg.Readers = cfg.Readers[:1] // r1, local
	cfg.Dialect, cfg.HeartbeatTable = DialectHeartbeat, table
	cfg.MonitorInterval = time.Minute
	rt, err := Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer rt.Close()
	r := rt.rdrs()[0]
	// The first poll is done when r is polled and, if it answered, its
	// round trip measured; a failed one leaves r unhealthy.
	waitFor(t, 10*time.Second, "r1's first monitor poll", func() bool {
		return r.polls.Load() > 0 && (r.rtt.get() > 0 || !r.healthy.Load())
	})
	if !r.healthy.Load() {
		t.Fatalf("r1 without the heartbeat table was excluded as failed; stats %+v", rt.Stats())
	}
	var one int
	if err := rt.QueryRowContext(ctxT(t), "SELECT 1").Scan(&one); err != nil {
		t.Fatal(err)
	}
	if st := rt.Stats(); st.ReadsLocal != 1 || st.ReadsWriter != 0 {
		t.Errorf("a read that needs no position: %d on r1, %d on the writer; want 1, 0", st.ReadsLocal, st.ReadsWriter)
	}
	logMu.Lock()
	defer logMu.Unlock()
	if n := strings.Count(logs.String(), "no heartbeat table on the reader yet"); n != 1 {
		t.Errorf("%d warnings about the missing table, want 1:\n%s", n, logs.String())
	}
}
