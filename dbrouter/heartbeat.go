package dbrouter

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"log/slog"
	"time"
)

// electionInterval is how often a router that does not beat tries to take
// over the heartbeat (so another takes over within about this long after
// the beater stops).
const electionInterval = time.Second

// beat runs the heartbeat writer of [DialectHeartbeat] until ctx is done.
//
// Of all the routers of a fleet with HeartbeatPeriod set, one beats at a
// time: the one that holds the named lock "regiondb_heartbeat.<table>" on
// the current writer (GET_LOCK, which one session holds until it releases
// it or ends; a beater that dies or loses its connection frees it, and
// another router takes over within [electionInterval]). A router competes
// only while the current writer is in its region (or the writer's region is
// not configured), so the beater stays beside the writer after a
// switchover. The beater holds one connection of the writer pool.
//
// Each beat is one statement that increments the counter (row 1) and
// records the writer's @@server_id (row 2), so that counters of different
// writers are different streams (see beatKey). The beater creates the table
// and its rows if they are missing.
func (rt *Router) beat(ctx context.Context) {
	table := rt.cfg.HeartbeatTable
	if table == "" {
		table = DefaultHeartbeatTable
	}
	lock := "regiondb_heartbeat." + table
	setup := []string{
		"CREATE TABLE IF NOT EXISTS " + table + " (id INT PRIMARY KEY, seq BIGINT UNSIGNED NOT NULL, ts TIMESTAMP(6) NOT NULL)",
		"INSERT IGNORE INTO " + table + " (id, seq, ts) VALUES (1, 0, NOW(6)), (2, @@server_id, NOW(6))",
	}
	update := "UPDATE " + table + " SET seq = IF(id = 1, seq + 1, @@server_id), ts = NOW(6) WHERE id IN (1, 2)"

	var held *sql.Conn       // the connection holding the lock, while this router beats
	var heldOn *writerTarget // the writer it was taken on
	drop := func() {
		if held != nil {
			// Discard the connection: the lock goes with its session, and
			// a session that still held it must not return to the pool.
			held.Raw(func(any) error { return driver.ErrBadConn })
			held.Close()
			held, heldOn = nil, nil
		}
	}
	defer drop()
	failing := false
	tick := time.NewTicker(rt.cfg.HeartbeatPeriod)
	defer tick.Stop()
	var nextElection time.Time
	for {
		w := rt.curWriter()
		if held != nil && (heldOn != w || !rt.beatsHere(w)) {
			drop() // a failover or a switchover to another region
		}
		var err error
		if held == nil && rt.beatsHere(w) && !time.Now().Before(nextElection) {
			nextElection = time.Now().Add(electionInterval)
			held, err = rt.elect(ctx, w, lock, setup)
			if held != nil {
				heldOn = w
				rt.cfg.Logger.LogAttrs(ctx, slog.LevelInfo, "dbrouter: this router now writes the heartbeat",
					slog.String("writer", w.spec.Name))
			}
		}
		if held != nil {
			qctx, cancel := context.WithTimeout(ctx, rt.cfg.MonitorTimeout)
			_, err = held.ExecContext(qctx, update)
			cancel()
			if err != nil {
				drop()
			}
		}
		if err != nil && ctx.Err() == nil && !failing {
			rt.cfg.Logger.LogAttrs(ctx, slog.LevelWarn, "dbrouter: heartbeat write failed", slog.String("error", err.Error()))
		}
		failing = err != nil
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// beatsHere reports whether this router may write the heartbeat while w is
// the writer: w is in the router's region, or w's region is not configured.
func (rt *Router) beatsHere(w *writerTarget) bool {
	return w.spec.Region == "" || w.spec.Region == rt.cfg.Region
}

// elect tries to take the heartbeat lock on w. It returns the connection
// that holds it (after making sure the table and its rows exist), or nil if
// another session holds it.
func (rt *Router) elect(ctx context.Context, w *writerTarget, lock string, setup []string) (*sql.Conn, error) {
	ctx, cancel := context.WithTimeout(ctx, rt.cfg.MonitorTimeout)
	defer cancel()
	conn, err := w.db.Conn(ctx)
	if err != nil {
		return nil, err
	}
	var got sql.NullInt64
	if err := conn.QueryRowContext(ctx, "SELECT GET_LOCK(?, 0)", lock).Scan(&got); err != nil {
		conn.Raw(func(any) error { return driver.ErrBadConn }) // it may hold the lock: do not pool it
		conn.Close()
		return nil, err
	}
	if got.Int64 != 1 {
		conn.Close() // another session beats; this one holds nothing
		return nil, nil
	}
	for _, q := range setup {
		if _, err := conn.ExecContext(ctx, q); err != nil {
			conn.Raw(func(any) error { return driver.ErrBadConn })
			conn.Close()
			return nil, err
		}
	}
	return conn, nil
}
