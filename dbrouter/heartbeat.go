package dbrouter

import (
	"context"
	"log/slog"
	"time"
)

// beat runs the heartbeat writer of [DialectHeartbeat] until ctx is done:
// it creates the heartbeat table if needed, then increments its one row
// every [Config.HeartbeatPeriod]. One goroutine per router that has
// HeartbeatPeriod set.
func (rt *Router) beat(ctx context.Context) {
	table := rt.cfg.HeartbeatTable
	if table == "" {
		table = DefaultHeartbeatTable
	}
	stmts := []string{
		"CREATE TABLE IF NOT EXISTS " + table + " (id INT PRIMARY KEY, seq BIGINT UNSIGNED NOT NULL, ts TIMESTAMP(6) NOT NULL)",
		"INSERT IGNORE INTO " + table + " (id, seq, ts) VALUES (1, 0, NOW(6))",
	}
	update := "UPDATE " + table + " SET seq = seq + 1, ts = NOW(6) WHERE id = 1"
	ready := false
	tick := time.NewTicker(rt.cfg.HeartbeatPeriod)
	defer tick.Stop()
	failing := false
	for {
		var err error
		qctx, cancel := context.WithTimeout(ctx, rt.cfg.MonitorTimeout)
		if !ready {
			for _, s := range stmts {
				if _, err = rt.wdb().ExecContext(qctx, s); err != nil {
					break
				}
			}
			ready = err == nil
		}
		if ready {
			_, err = rt.wdb().ExecContext(qctx, update)
		}
		cancel()
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
