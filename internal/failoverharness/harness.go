// Package failoverharness measures a writer failover on the local stack: a
// write load runs through a database handle while the primary (m1) is
// killed with SIGKILL and the replica r1 is promoted; the harness measures
// the time from the kill to the first acknowledged write after it, then
// reads every acknowledged write back from the new primary and counts the
// ones that are missing.
//
// Writes whose error says their outcome is unknown (dbrouter.ErrOutcomeUnknown)
// are counted apart: they were not acknowledged, so they may or may not
// exist. An acknowledged write that is missing is a lost write.
//
// The harness drives the stack's fault controls; callers reset the stack
// afterwards (testserver.Stack.Reset).
package failoverharness

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
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

	acked []int64 // ids of the acknowledged writes
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
				wctx, cancel := context.WithTimeout(loadCtx, cfg.WriteTimeout)
				_, err := db.ExecContext(wctx, fmt.Sprintf(
					"INSERT INTO %s.acked (id, writer, at) VALUES (%d, %d, NOW(6))", Database, id, w))
				cancel()
				done := time.Now()
				if loadCtx.Err() != nil && err != nil {
					return // stopped mid-write: neither acked nor failed
				}
				mu.Lock()
				switch {
				case err == nil:
					res.Acked++
					res.acked = append(res.acked, id)
					if k := killed.Load(); k != 0 && done.UnixNano() > k {
						res.AckedAfterKill++
						if firstAck.IsZero() {
							firstAck = done
							recOnce.Do(func() { close(recovered) })
						}
					}
				case cfg.OutcomeUnknown != nil && cfg.OutcomeUnknown(err):
					res.Unknown++
				default:
					res.Failed++
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
	cfg.Logf("failoverharness: killing m1")
	killStart := time.Now()
	if err := s.Kill(ctx, "m1"); err != nil {
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
	if err := s.Promote(ctx, "r1"); err != nil {
		stopAndWait()
		return Result{}, err
	}
	cfg.Logf("failoverharness: r1 promoted %v after the kill", time.Since(killStart).Round(time.Millisecond))

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
	p, err := s.Primary(ctx)
	if err != nil {
		return res, err
	}
	res.NewPrimary = p
	lost, err := readBack(ctx, s.DSN(p, Database), res.acked)
	if err != nil {
		return res, err
	}
	res.Lost = lost
	return res, nil
}

// readBack counts the ids that are missing from the acked table at dsn.
func readBack(ctx context.Context, dsn string, ids []int64) (int, error) {
	db, err := sql.Open("mysql", dsn)
	if err != nil {
		return 0, err
	}
	defer db.Close()
	rows, err := db.QueryContext(ctx, "SELECT id FROM acked")
	if err != nil {
		return 0, fmt.Errorf("failoverharness: read back: %w", err)
	}
	defer rows.Close()
	have := make(map[int64]bool, len(ids))
	for rows.Next() {
		var id int64
		if err := rows.Scan(&id); err != nil {
			return 0, err
		}
		have[id] = true
	}
	if err := rows.Err(); err != nil {
		return 0, err
	}
	lost := 0
	for _, id := range ids {
		if !have[id] {
			lost++
		}
	}
	return lost, nil
}

// String summarises the result on one line.
func (r Result) String() string {
	rec := "did not recover"
	if r.Recovered {
		rec = fmt.Sprintf("recovered in %v", r.RecoverTime.Round(time.Millisecond))
	}
	errs := append([]string(nil), r.Errors...)
	sort.Strings(errs)
	return fmt.Sprintf("%s; acked %d (%d after the kill), lost %d, outcome unknown %d, failed %d; errors: %q",
		rec, r.Acked, r.AckedAfterKill, r.Lost, r.Unknown, r.Failed, errs)
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
