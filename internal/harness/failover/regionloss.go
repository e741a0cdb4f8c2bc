package failover

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/regiondb/regiondb/internal/testserver"
)

// RegionLossConfig sets the region-loss workload. Zero values mean the
// defaults in brackets.
type RegionLossConfig struct {
	// Writers is the number of concurrent writers per handle [2].
	Writers int
	// Readers is the number of concurrent readers on the survivor [2].
	Readers int
	// Warmup is how long the load runs before the region is killed [1s].
	Warmup time.Duration
	// Outage is the time between the kill and the promotion of r2 [3s].
	Outage time.Duration
	// RecoverTimeout is how long after the promotion the harness waits for
	// both handles to write [15s].
	RecoverTimeout time.Duration
	// After is how long the load goes on after both recovered [1s].
	After time.Duration
	// WriteTimeout bounds each write and read [5s].
	WriteTimeout time.Duration
	// ReadContext, if not nil, wraps the context of each read (for the
	// router: a bounded staleness, dbrouter.WithMaxStaleness).
	ReadContext func(context.Context) context.Context
	// OutcomeUnknown is as in Config.
	OutcomeUnknown func(error) bool
	// Logf, if not nil, receives progress lines.
	Logf func(format string, args ...any)
}

func (c *RegionLossConfig) defaults() {
	if c.Writers <= 0 {
		c.Writers = 2
	}
	if c.Readers <= 0 {
		c.Readers = 2
	}
	if c.Warmup <= 0 {
		c.Warmup = time.Second
	}
	if c.Outage <= 0 {
		c.Outage = 3 * time.Second
	}
	if c.RecoverTimeout <= 0 {
		c.RecoverTimeout = 15 * time.Second
	}
	if c.After <= 0 {
		c.After = time.Second
	}
	if c.WriteTimeout <= 0 {
		c.WriteTimeout = 5 * time.Second
	}
	if c.ReadContext == nil {
		c.ReadContext = func(ctx context.Context) context.Context { return ctx }
	}
	if c.Logf == nil {
		c.Logf = func(string, ...any) {}
	}
}

// RegionLossResult is what a region-loss run measured.
type RegionLossResult struct {
	// ReadsServed and ReadsFailed count the survivor's reads that started
	// after the kill and ended before the promotion.
	ReadsServed, ReadsFailed int
	// WritesFailed counts the writes of that interval that failed
	// definitely (not outcome unknown); WritesFailedSlowest is how long the
	// slowest of them took to fail.
	WritesFailed        int
	WritesFailedSlowest time.Duration
	// Recovered reports whether every handle had a write acknowledged after
	// the promotion within RecoverTimeout; RecoverTime is the time from the
	// promotion to the later of the handles' first such write.
	Recovered   bool
	RecoverTime time.Duration
	// Acked, Lost, Unknown, Failed, FailedButApplied are as in Result,
	// over the whole run and both handles (read back from r2).
	Acked, Lost, Unknown, Failed, FailedButApplied int
	// Errors holds up to 8 distinct error messages of writes, ReadErrors
	// of the reads counted in ReadsFailed, each with how long it took.
	Errors, ReadErrors []string
}

// String summarises the result on one line.
func (r RegionLossResult) String() string {
	rec := "did not recover"
	if r.Recovered {
		rec = fmt.Sprintf("both wrote again %v after the promotion", r.RecoverTime.Round(time.Millisecond))
	}
	return fmt.Sprintf("outage: reads served %d, failed %d %q; writes failed %d (slowest %v); %s; acked %d, lost %d, outcome unknown %d, failed %d (%d applied); errors: %q",
		r.ReadsServed, r.ReadsFailed, r.ReadErrors, r.WritesFailed, r.WritesFailedSlowest.Round(time.Millisecond), rec,
		r.Acked, r.Lost, r.Unknown, r.Failed, r.FailedButApplied, r.Errors)
}

// RunRegionLoss kills every MariaDB server of the writer's region (m1 and
// r1) while writers run through each of dbs and readers through survivor
// (a handle of the surviving region, us-east-1), promotes r2 after
// cfg.Outage, and waits until every handle writes again. The stack must be
// in its fresh topology and prepared (Prepare).
func RunRegionLoss(ctx context.Context, s *testserver.Stack, survivor DB, dbs []DB, cfg RegionLossConfig) (RegionLossResult, error) {
	cfg.defaults()
	if p, err := s.Primary(ctx); err != nil {
		return RegionLossResult{}, err
	} else if p != "m1" {
		return RegionLossResult{}, fmt.Errorf("failoverharness: primary is %s, want m1 (reset the stack first)", p)
	}
	var (
		nextID   atomic.Int64
		killed   atomic.Int64 // UnixNano when KillRegion returned
		promoted atomic.Int64 // UnixNano when Promote was called
		mu       sync.Mutex   // protects the fields below
		res      RegionLossResult
		acked    []int64
		failed   []int64
		firstAck = make([]time.Time, len(dbs))
		seenErr  = map[string]bool{}
		readID   atomic.Int64 // an id acknowledged during the warm-up
	)
	nextID.Store(time.Now().UnixMicro())
	recovered := make(chan struct{})
	var recOnce sync.Once
	loadCtx, stopLoad := context.WithCancel(ctx)
	defer stopLoad()
	noteErr := func(err error) {
		if len(res.Errors) < 8 && !seenErr[err.Error()] {
			seenErr[err.Error()] = true
			res.Errors = append(res.Errors, err.Error())
		}
	}
	var wg sync.WaitGroup
	for d, db := range dbs {
		for w := range cfg.Writers {
			wg.Go(func() {
				for loadCtx.Err() == nil {
					id := nextID.Add(1)
					start := time.Now()
					wctx, cancel := context.WithTimeout(loadCtx, cfg.WriteTimeout)
					_, err := db.ExecContext(wctx, fmt.Sprintf(
						"INSERT INTO %s.acked (id, writer, at) VALUES (%d, %d, NOW(6))", Database, id, 100*d+w))
					cancel()
					end := time.Now()
					if loadCtx.Err() != nil && err != nil {
						return
					}
					k, p := killed.Load(), promoted.Load()
					inOutage := k != 0 && start.UnixNano() > k && (p == 0 || end.UnixNano() < p)
					mu.Lock()
					switch {
					case err == nil:
						res.Acked++
						acked = append(acked, id)
						readID.CompareAndSwap(0, id)
						if p != 0 && end.UnixNano() > p && firstAck[d].IsZero() {
							firstAck[d] = end
							done := true
							for _, f := range firstAck {
								done = done && !f.IsZero()
							}
							if done {
								recOnce.Do(func() { close(recovered) })
							}
						}
					case cfg.OutcomeUnknown != nil && cfg.OutcomeUnknown(err):
						res.Unknown++
					default:
						res.Failed++
						failed = append(failed, id)
						if inOutage {
							res.WritesFailed++
							res.WritesFailedSlowest = max(res.WritesFailedSlowest, end.Sub(start))
						}
					}
					if err != nil {
						noteErr(err)
					}
					mu.Unlock()
					if err != nil {
						select {
						case <-loadCtx.Done():
						case <-time.After(5 * time.Millisecond):
						}
					}
				}
			})
		}
	}
	for range cfg.Readers {
		wg.Go(func() {
			for loadCtx.Err() == nil {
				id := readID.Load()
				start := time.Now()
				rctx, cancel := context.WithTimeout(cfg.ReadContext(loadCtx), cfg.WriteTimeout)
				var got int
				err := survivor.QueryRowContext(rctx, fmt.Sprintf("SELECT writer FROM %s.acked WHERE id = %d", Database, id)).Scan(&got)
				cancel()
				if errors.Is(err, sql.ErrNoRows) {
					err = nil
				}
				if loadCtx.Err() != nil {
					return
				}
				k, p := killed.Load(), promoted.Load()
				if k != 0 && start.UnixNano() > k && p == 0 {
					mu.Lock()
					if err == nil {
						res.ReadsServed++
					} else {
						res.ReadsFailed++
						if len(res.ReadErrors) < 4 {
							res.ReadErrors = append(res.ReadErrors, fmt.Sprintf("%v after the kill, in %v: %v",
								start.Sub(time.Unix(0, k)).Round(time.Millisecond), time.Since(start).Round(time.Millisecond), err))
						}
					}
					mu.Unlock()
				}
				select {
				case <-loadCtx.Done():
				case <-time.After(2 * time.Millisecond):
				}
			}
		})
	}
	stopAndWait := func() {
		stopLoad()
		wg.Wait()
	}
	sleep := func(d time.Duration) {
		select {
		case <-time.After(d):
		case <-ctx.Done():
		}
	}
	sleep(cfg.Warmup)
	cfg.Logf("failoverharness: killing region %s", testserver.PrimaryRegion)
	if err := s.KillRegion(ctx, testserver.PrimaryRegion); err != nil {
		stopAndWait()
		return RegionLossResult{}, err
	}
	killed.Store(time.Now().UnixNano())
	sleep(cfg.Outage)
	promoted.Store(time.Now().UnixNano())
	if err := s.Promote(ctx, "r2"); err != nil {
		stopAndWait()
		return RegionLossResult{}, err
	}
	cfg.Logf("failoverharness: r2 promoted")
	select {
	case <-recovered:
		sleep(cfg.After)
	case <-time.After(cfg.RecoverTimeout):
	case <-ctx.Done():
	}
	stopAndWait()
	if err := ctx.Err(); err != nil {
		return RegionLossResult{}, err
	}
	mu.Lock()
	defer mu.Unlock()
	res.Recovered = true
	p := time.Unix(0, promoted.Load())
	for _, f := range firstAck {
		if f.IsZero() {
			res.Recovered = false
			continue
		}
		res.RecoverTime = max(res.RecoverTime, f.Sub(p))
	}
	have, err := readBack(ctx, s.DSN("r2", Database))
	if err != nil {
		return res, err
	}
	for _, id := range acked {
		if !have[id] {
			res.Lost++
		}
	}
	for _, id := range failed {
		if have[id] {
			res.FailedButApplied++
		}
	}
	return res, nil
}
