package fleet

import (
	"context"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/regiondb/regiondb/dbrouter"
)

// StoreStats is what the routers asked of the shared store during a
// measured run, and how long it took: where a read's wait for a position
// goes when the store serves it.
type StoreStats struct {
	GetsPerSec   float64 `json:"gets_per_s"`
	SetsPerSec   float64 `json:"sets_per_s"`
	ClaimsPerSec float64 `json:"claims_per_s"`
	// ClaimsWonPerSec is the polls the store allowed (all readers).
	ClaimsWonPerSec float64 `json:"claims_won_per_s"`
	Errors          int64   `json:"errors"`
	GetUs           float64 `json:"get_mean_us"`
	SetUs           float64 `json:"set_mean_us"`
	ClaimUs         float64 `json:"claim_mean_us"`
	// PollGapP50ms is the median time between two won demand claims of
	// one reader (the fleet's poll period while reads wait).
	PollGapP50ms float64 `json:"poll_gap_p50_ms"`
	// LearnP50ms is the median time from a publication of a reader's
	// watermark to each process's first Get that returned it.
	LearnP50ms float64 `json:"learn_p50_ms"`
}

// timedStore wraps the store of one router (one "process") and records
// its calls in a shared storeLog.
type timedStore struct {
	dbrouter.WatermarkStore
	log  *storeLog
	proc int
}

// storeLog collects the calls of every router's store in a run.
type storeLog struct {
	on                 atomic.Bool
	gets, sets, claims atomic.Int64
	won, errs          atomic.Int64
	getNs, setNs, clNs atomic.Int64

	mu      sync.Mutex               // protects the fields below
	lastWon map[string]time.Time     // demand claim key -> last won
	gaps    []time.Duration          // between won demand claims of one key
	pub     map[string]publication   // watermark key -> latest value set
	seen    map[string]map[int]int64 // watermark key -> proc -> seq of the latest publication it got
	learn   []time.Duration
}

type publication struct {
	v   string
	at  time.Time
	seq int64
}

func newStoreLog() *storeLog {
	return &storeLog{lastWon: map[string]time.Time{}, pub: map[string]publication{}, seen: map[string]map[int]int64{}}
}

func (s *timedStore) Get(ctx context.Context, key string) (string, error) {
	start := time.Now()
	v, err := s.WatermarkStore.Get(ctx, key)
	l := s.log
	if !l.on.Load() {
		return v, err
	}
	l.gets.Add(1)
	l.getNs.Add(int64(time.Since(start)))
	if err != nil {
		l.errs.Add(1)
		return v, err
	}
	l.mu.Lock()
	if p, ok := l.pub[key]; ok && p.v == v && v != "" {
		m := l.seen[key]
		if m == nil {
			m = map[int]int64{}
			l.seen[key] = m
		}
		if m[s.proc] < p.seq {
			m[s.proc] = p.seq
			l.learn = append(l.learn, time.Since(p.at))
		}
	}
	l.mu.Unlock()
	return v, err
}

func (s *timedStore) Set(ctx context.Context, key, value string, ttl time.Duration) error {
	start := time.Now()
	err := s.WatermarkStore.Set(ctx, key, value, ttl)
	l := s.log
	if !l.on.Load() {
		return err
	}
	l.sets.Add(1)
	l.setNs.Add(int64(time.Since(start)))
	if err != nil {
		l.errs.Add(1)
		return err
	}
	l.mu.Lock()
	p := l.pub[key]
	l.pub[key] = publication{v: value, at: time.Now(), seq: p.seq + 1}
	m := l.seen[key]
	if m == nil {
		m = map[int]int64{}
		l.seen[key] = m
	}
	m[s.proc] = p.seq + 1 // the publisher knows it
	l.mu.Unlock()
	return err
}

func (s *timedStore) Claim(ctx context.Context, key string, ttl time.Duration) (bool, error) {
	won, _, err := s.ClaimUntil(ctx, key, ttl)
	return won, err
}

// ClaimUntil passes the claim's expiry on when the wrapped store reports it
// (dbrouter.ClaimDeadliner), else the zero time (unknown).
func (s *timedStore) ClaimUntil(ctx context.Context, key string, ttl time.Duration) (bool, time.Time, error) {
	start := time.Now()
	var won bool
	var until time.Time
	var err error
	if d, ok := s.WatermarkStore.(dbrouter.ClaimDeadliner); ok {
		won, until, err = d.ClaimUntil(ctx, key, ttl)
	} else {
		won, err = s.WatermarkStore.Claim(ctx, key, ttl)
	}
	s.log.claimed(key, start, won, err)
	return won, until, err
}

// ClaimBudget passes a budgeted claim on when the wrapped store keeps a
// budget (dbrouter.ClaimBudgeter), else it is a ClaimUntil of interval
// (the claim without a budget: hold and next are its expiry).
func (s *timedStore) ClaimBudget(ctx context.Context, key string, hold, interval time.Duration, burst int) (bool, time.Time, time.Time, error) {
	b, ok := s.WatermarkStore.(dbrouter.ClaimBudgeter)
	if !ok {
		won, until, err := s.ClaimUntil(ctx, key, interval)
		return won, until, until, err
	}
	start := time.Now()
	won, held, next, err := b.ClaimBudget(ctx, key, hold, interval, burst)
	s.log.claimed(key, start, won, err)
	return won, held, next, err
}

// claimed records a claim that started at start.
func (l *storeLog) claimed(key string, start time.Time, won bool, err error) {
	if !l.on.Load() {
		return
	}
	l.claims.Add(1)
	l.clNs.Add(int64(time.Since(start)))
	if err != nil {
		l.errs.Add(1)
	}
	if won && err == nil {
		l.won.Add(1)
		if strings.HasSuffix(key, "/demand") {
			l.mu.Lock()
			if last, ok := l.lastWon[key]; ok {
				l.gaps = append(l.gaps, start.Sub(last))
			}
			l.lastWon[key] = start
			l.mu.Unlock()
		}
	}
}

func (l *storeLog) stats(elapsed float64) *StoreStats {
	mean := func(ns, n int64) float64 {
		if n == 0 {
			return 0
		}
		return float64(ns) / float64(n) / 1e3
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	return &StoreStats{
		GetsPerSec:      float64(l.gets.Load()) / elapsed,
		SetsPerSec:      float64(l.sets.Load()) / elapsed,
		ClaimsPerSec:    float64(l.claims.Load()) / elapsed,
		ClaimsWonPerSec: float64(l.won.Load()) / elapsed,
		Errors:          l.errs.Load(),
		GetUs:           mean(l.getNs.Load(), l.gets.Load()),
		SetUs:           mean(l.setNs.Load(), l.sets.Load()),
		ClaimUs:         mean(l.clNs.Load(), l.claims.Load()),
		PollGapP50ms:    percentile(l.gaps, 0.5),
		LearnP50ms:      percentile(l.learn, 0.5),
	}
}
