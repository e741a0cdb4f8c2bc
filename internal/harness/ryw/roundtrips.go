package ryw

import (
	"context"
	"database/sql"
	"fmt"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/regiondb/regiondb/dbrouter"
	"github.com/regiondb/regiondb/internal/testserver"
)

// RoundTrips is what the round-trip phase counted: round trips the servers
// received beyond the ones the workload's statements needed, per workload
// read (on the readers) and per write (on the writer).
type RoundTrips struct {
	Reads       int64 `json:"reads"`
	Writes      int64 `json:"writes"`
	ReaderExtra int64 `json:"reader_extra"`
	WriterExtra int64 `json:"writer_extra"`
	// MonitorQueries are the routers' own count of position queries to
	// readers (monitor polls and waits, bounds of monotonic reads); Waits
	// the reads that waited for a reader.
	MonitorQueries int64 `json:"monitor_queries"`
	Waits          int64 `json:"waits"`
	// CountedBy says how the servers counted round trips.
	CountedBy string `json:"counted_by"`
}

// countedBy is RoundTrips.CountedBy.
const countedBy = "general log rows of clients (one per command the server answers, the replication applier's left out: a COM_QUERY text " +
	"counts once however many statements it holds; Questions counts each statement of a multi-statement " +
	"text, so it would count a read's guard and sample, sent in the read's own text, as round trips)"

// roundTrips returns the number of client commands the server answered
// that its general log holds; the query itself is one of them.
func roundTrips(ctx context.Context, admin *sql.Conn) (int64, error) {
	var n int64
	err := admin.QueryRowContext(ctx, "SELECT COUNT(*) FROM mysql.general_log WHERE command_type NOT IN ('Close stmt', 'Quit', 'Connect') "+
		"AND user_host NOT LIKE '[<replication_slave>]%'").Scan(&n)
	return n, err
}

// generalLogOn turns on the general log (to a table, emptied) of the
// servers behind admins, and returns the function that turns it off. The
// connections do not write the binary log: a TRUNCATE binlogged on a
// replica would be an errant transaction that stops its replication.
func generalLogOn(ctx context.Context, admins []*sql.Conn) (func(), error) {
	off := func() {
		for _, c := range admins {
			c.ExecContext(context.Background(), "SET GLOBAL general_log = 0")
			c.ExecContext(context.Background(), "TRUNCATE mysql.general_log")
		}
	}
	for _, c := range admins {
		for _, q := range []string{"SET SESSION sql_log_bin = 0", "SET GLOBAL log_output = 'TABLE'", "SET GLOBAL general_log = 1", "TRUNCATE mysql.general_log"} {
			if _, err := c.ExecContext(ctx, q); err != nil {
				off()
				return nil, fmt.Errorf("%s: %w", q, err)
			}
		}
	}
	return off, nil
}

// measureRoundTrips runs the workload's mix (one request in ten writes,
// exponential think times, each user in its home region) through a fresh
// pair of routers and their middleware, and counts on the servers, after a
// warm-up, the statements that were not the workload's: monitor polls and
// waits and the bounds of monotonic reads on the readers, position reads on
// the writer. Nothing else may use the servers meanwhile.
func measureRoundTrips(ctx context.Context, s *testserver.Stack, cfg Config, open func(region string) (*dbrouter.Router, error), users, firstID int, warmup, d time.Duration) (RoundTrips, error) {
	var admins []*sql.Conn
	for _, name := range []string{"r1", "r2", "m1"} {
		db, err := sql.Open("mysql", s.AdminDSN(name))
		if err != nil {
			return RoundTrips{}, err
		}
		defer db.Close()
		c, err := db.Conn(ctx)
		if err != nil {
			return RoundTrips{}, err
		}
		defer c.Close()
		admins = append(admins, c)
	}
	off, err := generalLogOn(ctx, admins)
	if err != nil {
		return RoundTrips{}, err
	}
	defer off()
	var routers [2]*dbrouter.Router
	for i, region := range regions {
		rt, err := open(region)
		if err != nil {
			return RoundTrips{}, err
		}
		defer rt.Close()
		routers[i] = rt
	}
	st := newRouterStrategy(routers)
	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	t := &tally{}
	for i := range users {
		u := &user{id: firstID + i, follow: firstID + (i+1)%users, home: i % 2}
		rng := rand.New(rand.NewPCG(cfg.Seed, uint64(u.id)))
		wg.Go(func() { runUser(runCtx, cfg, st, u, false, rng, t) })
	}
	defer wg.Wait()
	snap := func() (q [3]int64, s [2]dbrouter.Stats, err error) {
		for i, db := range admins {
			if q[i], err = roundTrips(ctx, db); err != nil {
				return q, s, err
			}
		}
		return q, [2]dbrouter.Stats{routers[0].Stats(), routers[1].Stats()}, nil
	}
	if !sleep(ctx, warmup) {
		return RoundTrips{}, ctx.Err()
	}
	q0, s0, err := snap()
	if err != nil {
		return RoundTrips{}, err
	}
	if !sleep(ctx, d) {
		return RoundTrips{}, ctx.Err()
	}
	q1, s1, err := snap()
	if err != nil {
		return RoundTrips{}, err
	}
	cancel()
	rt := RoundTrips{CountedBy: countedBy}
	var writerReads int64
	for i := range 2 {
		rt.Reads += s1[i].ReadsLocal + s1[i].ReadsRemote - s0[i].ReadsLocal - s0[i].ReadsRemote
		writerReads += s1[i].ReadsWriter + s1[i].ReadsForced - s0[i].ReadsWriter - s0[i].ReadsForced
		rt.Writes += s1[i].Writes - s0[i].Writes
		rt.MonitorQueries += s1[i].MonitorQueries - s0[i].MonitorQueries
		rt.Waits += s1[i].Waits - s0[i].Waits
	}
	// Each reader's and the writer's delta includes the count query of
	// the second snapshot.
	rt.ReaderExtra = (q1[0] - q0[0] - 1) + (q1[1] - q0[1] - 1) - rt.Reads
	rt.WriterExtra = (q1[2] - q0[2] - 1) - rt.Writes - writerReads
	if t.errors.Load() > 0 {
		cfg.Logf("round trips: %d requests failed", t.errors.Load())
	}
	return rt, nil
}

// InsertRoundTrips is what the INSERT phase counted on the writer: scoped
// INSERTs that leave the AUTO_INCREMENT column to the server (one round
// trip, position included, once the router has learned the table); counted
// the same way, scoped UPDATEs (one round trip), and, as the method's
// control, scoped INSERTs that give the AUTO_INCREMENT value explicitly,
// whose OK packet's insert id no SQL function returns, so their position
// takes a second round trip (an extra of 1 each).
type InsertRoundTrips struct {
	Inserts               int64 `json:"inserts"`
	WriterExtra           int64 `json:"writer_extra"`
	Updates               int64 `json:"updates"`
	UpdateWriterExtra     int64 `json:"update_writer_extra"`
	ExplicitIDInserts     int64 `json:"explicit_id_inserts"`
	ExplicitIDWriterExtra int64 `json:"explicit_id_writer_extra"`
}

// insertTable is the INSERT phase's table (auto-increment ids).
const insertTable = Database + ".inserts"

// measureInsertRoundTrips runs n scoped INSERTs, n scoped UPDATEs, then n
// scoped INSERTs with explicit ids, one scope each (as in requests that
// write once), back to back through a fresh router, and counts the
// writer's general log rows beyond the statements sent. Nothing else may
// use the writer meanwhile.
func measureInsertRoundTrips(ctx context.Context, s *testserver.Stack, open func() (*dbrouter.Router, error), n int) (InsertRoundTrips, error) {
	db, err := sql.Open("mysql", s.AdminDSN("m1"))
	if err != nil {
		return InsertRoundTrips{}, err
	}
	defer db.Close()
	for _, q := range []string{
		"CREATE TABLE IF NOT EXISTS " + insertTable + " (id BIGINT AUTO_INCREMENT PRIMARY KEY, v BIGINT NOT NULL)",
		"DELETE FROM " + insertTable,
	} {
		if _, err := db.ExecContext(ctx, q); err != nil {
			return InsertRoundTrips{}, fmt.Errorf("%s: %w", q, err)
		}
	}
	admin, err := db.Conn(ctx)
	if err != nil {
		return InsertRoundTrips{}, err
	}
	defer admin.Close()
	off, err := generalLogOn(ctx, []*sql.Conn{admin})
	if err != nil {
		return InsertRoundTrips{}, err
	}
	defer off()
	rt, err := open()
	if err != nil {
		return InsertRoundTrips{}, err
	}
	defer rt.Close()
	// Warm the writer's pool and the router's writer measurements.
	for range 10 {
		if _, err := rt.ExecContext(dbrouter.NewContext(ctx), "INSERT INTO inserts (v) VALUES (?)", 0); err != nil {
			return InsertRoundTrips{}, err
		}
	}
	phase := func(query string, arg func(i int) []any) (int64, error) {
		q0, err := roundTrips(ctx, admin)
		if err != nil {
			return 0, err
		}
		for i := range n {
			if _, err := rt.ExecContext(dbrouter.NewContext(ctx), query, arg(i)...); err != nil {
				return 0, err
			}
		}
		q1, err := roundTrips(ctx, admin)
		if err != nil {
			return 0, err
		}
		// The delta includes the count query of the second snapshot.
		return (q1 - q0 - 1) - int64(n), nil
	}
	var r InsertRoundTrips
	r.Inserts, r.Updates = int64(n), int64(n)
	if r.WriterExtra, err = phase("INSERT INTO inserts (v) VALUES (?)", func(i int) []any { return []any{i} }); err != nil {
		return InsertRoundTrips{}, err
	}
	if r.UpdateWriterExtra, err = phase(updateQuery, func(i int) []any { return []any{i, 1} }); err != nil {
		return InsertRoundTrips{}, err
	}
	r.ExplicitIDInserts = int64(n)
	if r.ExplicitIDWriterExtra, err = phase("INSERT INTO inserts (id, v) VALUES (?, ?)", func(i int) []any { return []any{1_000_000_000 + i, i} }); err != nil {
		return InsertRoundTrips{}, err
	}
	return r, nil
}
