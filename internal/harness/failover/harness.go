// Package failover measures a writer failover on the local stack: a
// write load runs through a database handle while the primary (m1) is
// killed with SIGKILL and the replica r1 is promoted; the harness measures
// the time from the kill to the first acknowledged write after it, then
// reads every acknowledged write back from the new primary and counts the
// ones that are missing.
//
// Writes whose error says their outcome is unknown (dbrouter.ErrOutcomeUnknown)
// are counted apart: they were not acknowledged, so they may or may not
// exist. An acknowledged write that is missing is a lost write; a write
// reported as failed (any other error) whose row exists is a failure that
// was not definite (failed but applied), which a client must never report.
//
// Variants (Config) make the database itself lose or half-apply writes:
// promoting r2 (asynchronous, lagging) instead of r1, something done before
// the kill (such as delaying r1's link beyond the semi-sync timeout, so that
// the primary falls back to asynchronous replication), a slow promotion
// (PromoteDelay), the loss of the whole writer region (KillRegion). There
// lost writes are the database's; the client's duty is to report honestly.
//
// The harness drives the stack's fault controls; callers reset the stack
// afterwards (testserver.Stack.Reset).
package failover

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	_ "github.com/go-sql-driver/mysql" // the "mysql" driver for the read-back connection

	"github.com/regiondb/regiondb/internal/testserver"
)

// Database is the database the harness writes to.
const Database = "regiondb_failover"

// DB is the part of a database handle that the harness drives. *sql.DB and
// *dbrouter.Router satisfy it.
type DB interface {
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

// Config sets the workload. Zero values mean the defaults in brackets.
type Config struct {
	// Writers is the number of concurrent writers [4].
	Writers int
	// Warmup is how long the load runs before the kill [1s].
	Warmup time.Duration
	// RecoverTimeout is how long after the kill the harness waits for the
	// first acknowledged write before giving up [30s].
	RecoverTimeout time.Duration
	// After is how long the load goes on after the first acknowledged write
	// following the kill [1s].
	After time.Duration
	// PromoteDelay is the pause between the kill and the promotion of r1,
	// the failover's detection time [0].
	PromoteDelay time.Duration
	// WriteTimeout bounds each write [5s].
	WriteTimeout time.Duration
	// Promote is the replica promoted after the kill ["r1"].
	Promote string
	// KillRegion, if not "", kills every MariaDB server of that region
	// (testserver.Stack.KillRegion) instead of m1 alone.
	KillRegion string
	// BeforeKill, if not nil, runs after the warm-up, just before the kill
	// (to make the database lossy: stall or delay a replica).
	BeforeKill func(ctx context.Context, s *testserver.Stack) error
	// Scope, if not nil, makes each writer read its write back after it
	// was acknowledged, in Scope(ctx) (for the router: dbrouter.NewContext,
	// a read-your-writes scope), timing the reads (Result.ReadP90Before and
	// ReadP90After).
	Scope func(context.Context) context.Context
	// OutcomeUnknown reports whether a write's error says its outcome is
	// unknown (for the router: errors.Is(err, dbrouter.ErrOutcomeUnknown)).
	// nil: every error counts as a plain failure.
	OutcomeUnknown func(error) bool
	// Logf, if not nil, receives progress lines.
	Logf func(format string, args ...any)
}

func (c *Config) defaults() {
	if c.Writers <= 0 {
		c.Writers = 4
	}
	if c.Warmup <= 0 {
		c.Warmup = time.Second
	}
	if c.RecoverTimeout <= 0 {
		c.RecoverTimeout = 30 * time.Second
	}
	if c.After <= 0 {
		c.After = time.Second
	}
	if c.WriteTimeout <= 0 {
		c.WriteTimeout = 5 * time.Second
	}
	if c.Promote == "" {
		c.Promote = "r1"
	}
	if c.Logf == nil {
		c.Logf = func(string, ...any) {}
	}
}

// Result is what a run measured.
type Result struct {
	// Acked counts acknowledged writes (before and after the kill).
	Acked int
	// AckedAfterKill counts those acknowledged after the kill returned.
	AckedAfterKill int
	// Unknown counts writes whose error said their outcome is unknown.
	Unknown int
	// Failed counts writes that returned any other error.
	Failed int
	// Lost counts acknowledged writes missing on the new primary.
	Lost int
	// FailedButApplied counts writes reported as failed (not as outcome
	// unknown) whose rows exist on the new primary.
	FailedButApplied int
	// UnknownApplied counts outcome-unknown writes whose rows exist.
	UnknownApplied int
	// Reads, ReadErrors count the read-backs (Config.Scope) and the ones
	// that failed or did not see their write; ReadMissed counts those that
	// did not see it (a read-your-writes violation or a lost write).
	Reads, ReadErrors, ReadMissed int
	// ReadP90Before is the p90 latency of the read-backs that ended before
	// the kill; ReadP90After of those that ended 2 to 10 s after the first
	// write acknowledged after the kill (0: none).
	ReadP90Before, ReadP90After time.Duration
	// Recovered reports whether a write was acknowledged after the kill
	// within RecoverTimeout.
	Recovered bool
	// RecoverTime is the time from the kill to the first write acknowledged
	// after it (if Recovered).
	RecoverTime time.Duration
	// NewPrimary is the primary the writes were read back from.
	NewPrimary string
	// Errors holds up to 8 distinct error messages the writers got.
	Errors []string

	acked   []int64 // ids of the acknowledged writes
	failed  []int64 // ids of the writes reported as failed
	unknown []int64 // ids of the outcome-unknown writes
	reads   []timedRead
}

// timedRead is one read-back: when it ended and how long it took.
type timedRead struct {
	end  time.Time
	took time.Duration
}

// Prepare creates the harness's database and table on the current primary.
func Prepare(ctx context.Context, s *testserver.Stack) error {
	p, err := s.Primary(ctx)
	if err != nil {
		return err
	}
	db, err := sql.Open("mysql", s.DSN(p, ""))
	if err != nil {
		return err
	}
	defer db.Close()
	for _, q := range []string{
		"CREATE DATABASE IF NOT EXISTS " + Database,
		"CREATE TABLE IF NOT EXISTS " + Database + ".acked (id BIGINT PRIMARY KEY, writer INT NOT NULL, at DATETIME(6) NOT NULL)",
	} {
		if _, err := db.ExecContext(ctx, q); err != nil {
			return fmt.Errorf("failoverharness: prepare on %s: %w", p, err)
		}
	}
	// Wait until the running replicas have the table, so that a run does
	// not start while a monitor still finds no database there.
	var pos string
	if err := db.QueryRowContext(ctx, "SELECT @@global.gtid_binlog_pos").Scan(&pos); err != nil {
		return fmt.Errorf("failoverharness: prepare on %s: %w", p, err)
	}
	st, err := s.State(ctx)
	if err != nil {
		return err
	}
	for _, sv := range st.Servers {
		if sv.Kind != testserver.KindMariaDB || sv.Role != "replica" || !sv.Running {
			continue
		}
		if err := waitApplied(ctx, s.DSN(sv.Name, ""), pos); err != nil {
			return fmt.Errorf("failoverharness: prepare: %s: %w", sv.Name, err)
		}
	}
	return nil
}

// waitApplied waits up to 10 s until the server at dsn has applied pos.
func waitApplied(ctx context.Context, dsn, pos string) error {
	db, err := sql.Open("mysql", dsn)
	if err != nil {
		return err
	}
	defer db.Close()
	var res sql.NullInt64
	if err := db.QueryRowContext(ctx, "SELECT MASTER_GTID_WAIT(?, 10)", pos).Scan(&res); err != nil {
		return err
	}
	if !res.Valid || res.Int64 != 0 {
		return fmt.Errorf("did not apply %s within 10 s", pos)
	}
	return nil
}

// Run drives the load through db, kills m1, promotes r1 and reads every
// acknowledged write back from the new primary. The stack must be in its
// fresh topology (m1 primary) and prepared (Prepare).
func Run(ctx context.Context, s *testserver.Stack, db DB, cfg Config) (Result, error) {
	cfg.defaults()
	if p, err := s.Primary(ctx); err != nil {
		return Result{}, err
	} else if p != "m1" {
		return Result{}, fmt.Errorf("failoverharness: primary is %s, want m1 (reset the stack first)", p)
	}

	var (
		nextID    atomic.Int64
		killed    atomic.Int64 // UnixNano when Kill returned; 0 before
		mu        sync.Mutex   // protects res and firstAck
		res       Result
		firstAck  time.Time
		recovered = make(chan struct{})
		recOnce   sync.Once
		seenErr   = map[string]bool{}
	)
	nextID.Store(time.Now().UnixMicro())
	loadCtx, stopLoad := context.WithCancel(ctx)
	defer stopLoad()

	var wg sync.WaitGroup
	for w := range cfg.Writers {
		wg.Go(func() {
			for loadCtx.Err() == nil {
				id := nextID.Add(1)
				sctx := loadCtx
				if cfg.Scope != nil {
					sctx = cfg.Scope(loadCtx)
				}
				wctx, cancel := context.WithTimeout(sctx, cfg.WriteTimeout)
				_, err := db.ExecContext(wctx, fmt.Sprintf(
					"INSERT INTO %s.acked (id, writer, at) VALUES (%d, %d, NOW(6))", Database, id, w))
				done := time.Now()
				var rd *timedRead
				var readErr error
				missed := false
				if err == nil && cfg.Scope != nil {
					var got int
					rerr := db.QueryRowContext(wctx, fmt.Sprintf("SELECT writer FROM %s.acked WHERE id = %d", Database, id)).Scan(&got)
					end := time.Now()
					switch {
					case rerr == nil && got == w:
						rd = &timedRead{end: end, took: end.Sub(done)}
					case loadCtx.Err() != nil:
					case rerr == nil || errors.Is(rerr, sql.ErrNoRows):
						readErr = fmt.Errorf("read-back of acknowledged write %d did not see it (writer %d)", id, got)
						missed = true
					default:
						readErr = fmt.Errorf("read-back: %w", rerr)
					}
				}
				cancel()
				if loadCtx.Err() != nil && err != nil {
					return // stopped mid-write: neither acked nor failed
				}
				mu.Lock()
				switch {
				case err == nil:
					res.Acked++
					res.acked = append(res.acked, id)
					if rd != nil {
						res.Reads++
						res.reads = append(res.reads, *rd)
					}
					if readErr != nil {
						res.Reads++
						res.ReadErrors++
						if missed {
							res.ReadMissed++
						}
						if len(res.Errors) < 8 && !seenErr[readErr.Error()] {
							seenErr[readErr.Error()] = true
							res.Errors = append(res.Errors, readErr.Error())
						}
					}
					if k := killed.Load(); k != 0 && done.UnixNano() > k {
						res.AckedAfterKill++
						if firstAck.IsZero() {
							firstAck = done
							recOnce.Do(func() { close(recovered) })
						}
					}
				case cfg.OutcomeUnknown != nil && cfg.OutcomeUnknown(err):
					res.Unknown++
					res.unknown = append(res.unknown, id)
				default:
					res.Failed++
					res.failed = append(res.failed, id)
				}
				if err != nil && len(res.Errors) < 8 && !seenErr[err.Error()] {
					seenErr[err.Error()] = true
					res.Errors = append(res.Errors, err.Error())
				}
				mu.Unlock()
				if err != nil {
					// A real client backs off a little after an error.
					select {
					case <-loadCtx.Done():
					case <-time.After(5 * time.Millisecond):
					}
				}
			}
		})
	}

	stopAndWait := func() {
		stopLoad()
		wg.Wait()
	}

	// Warm up, then fail the primary over.
	select {
	case <-time.After(cfg.Warmup):
	case <-ctx.Done():
		stopAndWait()
		return Result{}, ctx.Err()
	}
	if cfg.BeforeKill != nil {
		if err := cfg.BeforeKill(ctx, s); err != nil {
			stopAndWait()
			return Result{}, err
		}
	}
	killStart := time.Now()
	var err error
	if cfg.KillRegion != "" {
		cfg.Logf("failoverharness: killing region %s", cfg.KillRegion)
		err = s.KillRegion(ctx, cfg.KillRegion)
	} else {
		cfg.Logf("failoverharness: killing m1")
		err = s.Kill(ctx, "m1")
	}
	if err != nil {
		stopAndWait()
		return Result{}, err
	}
	killed.Store(time.Now().UnixNano())
	if cfg.PromoteDelay > 0 { // the failover's detection time
		select {
		case <-time.After(cfg.PromoteDelay):
		case <-ctx.Done():
		}
	}
	if err := s.Promote(ctx, cfg.Promote); err != nil {
		stopAndWait()
		return Result{}, err
	}
	cfg.Logf("failoverharness: %s promoted %v after the kill", cfg.Promote, time.Since(killStart).Round(time.Millisecond))

	select {
	case <-recovered:
		select {
		case <-time.After(cfg.After):
		case <-ctx.Done():
		}
	case <-time.After(cfg.RecoverTimeout - time.Since(killStart)):
	case <-ctx.Done():
	}
	stopAndWait()
	if err := ctx.Err(); err != nil {
		return Result{}, err
	}

	mu.Lock()
	defer mu.Unlock()
	if !firstAck.IsZero() {
		res.Recovered = true
		res.RecoverTime = firstAck.Sub(killStart)
	}
	var before, after []time.Duration
	for _, r := range res.reads {
		switch {
		case r.end.Before(killStart):
			before = append(before, r.took)
		case !firstAck.IsZero() && r.end.Sub(firstAck) >= 2*time.Second && r.end.Sub(firstAck) <= 10*time.Second:
			after = append(after, r.took)
		}
	}
	res.ReadP90Before, res.ReadP90After = P90(before), P90(after)
	p, err := s.Primary(ctx)
	if err != nil {
		return res, err
	}
	res.NewPrimary = p
	have, err := readBack(ctx, s.DSN(p, Database))
	if err != nil {
		return res, err
	}
	for _, id := range res.acked {
		if !have[id] {
			res.Lost++
		}
	}
	for _, id := range res.failed {
		if have[id] {
			res.FailedButApplied++
		}
	}
	for _, id := range res.unknown {
		if have[id] {
			res.UnknownApplied++
		}
	}
	return res, nil
}

// P90 returns the 90th percentile of d (0 for none).
func P90(d []time.Duration) time.Duration {
	if len(d) == 0 {
		return 0
	}
	s := slices.Clone(d)
	slices.Sort(s)
	return s[len(s)*9/10]
}

// readBack returns the ids in the acked table at dsn.
func readBack(ctx context.Context, dsn string) (map[int64]bool, error) {
	db, err := sql.Open("mysql", dsn)
	if err != nil {
		return nil, err
	}
	defer db.Close()
	rows, err := db.QueryContext(ctx, "SELECT id FROM acked")
	if err != nil {
		return nil, fmt.Errorf("failoverharness: read back: %w", err)
	}
	defer rows.Close()
	have := map[int64]bool{}
	for rows.Next() {
		var id int64
		if err := rows.Scan(&id); err != nil {
			return nil, err
		}
		have[id] = true
	}
	return have, rows.Err()
}

// String summarises the result on one line.
func (r Result) String() string {
	rec := "did not recover"
	if r.Recovered {
		rec = fmt.Sprintf("recovered in %v", r.RecoverTime.Round(time.Millisecond))
	}
	errs := append([]string(nil), r.Errors...)
	sort.Strings(errs)
	reads := ""
	if r.Reads > 0 {
		reads = fmt.Sprintf("; read-backs %d (%d failed, %d missed their write), p90 %v before the kill, %v 2-10 s after recovery",
			r.Reads, r.ReadErrors, r.ReadMissed, r.ReadP90Before.Round(time.Microsecond), r.ReadP90After.Round(time.Microsecond))
	}
	return fmt.Sprintf("%s; acked %d (%d after the kill), lost %d, outcome unknown %d (%d applied), failed %d (%d applied)%s; errors: %q",
		rec, r.Acked, r.AckedAfterKill, r.Lost, r.Unknown, r.UnknownApplied, r.Failed, r.FailedButApplied, reads, errs)
}

// ErrNotRecovered is returned by Check when the load did not recover.
var ErrNotRecovered = errors.New("failoverharness: no write was acknowledged after the kill")

// Check returns an error unless the run recovered and lost no write.
func (r Result) Check() error {
	if !r.Recovered {
		return ErrNotRecovered
	}
	if r.Lost != 0 {
		return fmt.Errorf("failoverharness: %d acknowledged writes lost", r.Lost)
	}
	return nil
}
