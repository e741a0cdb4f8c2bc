package sessionharness

import (
	"context"
	"fmt"
	"io"
	"time"
)

// Result is what bench-session prints: the three keys first.
type Result struct {
	WritesPerReadOnlyRequest    float64 `json:"writes_per_readonly_request"`
	CrossRegionAnomalies        int     `json:"cross_region_anomalies"`
	CrossRegionAnomaliesWithout int     `json:"cross_region_anomalies_without"`

	ReadOnly            ReadOnlyResult    `json:"readonly"`
	ReadOnlyTouchAlways ReadOnlyResult    `json:"readonly_touch_every_request"`
	Alternating         AlternatingResult `json:"alternating"`
	AlternatingWithout  AlternatingResult `json:"alternating_without"`
	Concurrent          ConcurrentResult  `json:"concurrent"`
	ConcurrentNaive     ConcurrentResult  `json:"concurrent_blind_rmw"`
	Settings            map[string]string `json:"settings"`
}

// All runs every scenario on a fresh replicated table and reports progress
// to log.
func All(ctx context.Context, e *Env, log io.Writer) (Result, error) {
	var r Result
	var err error
	const users, rounds, think, touch = 20, 300, time.Second, time.Minute
	r.Settings = map[string]string{
		"readonly":    fmt.Sprintf("%d users x %d rounds, one read-only request per user per %v (fake clock), touch interval %v", users, rounds, think, touch),
		"alternating": "8 users x 120 requests alternating regions (2 increments, 1 read of 3), 1.2 s pause every 20, replication delay 1 s",
		"concurrent":  "16 requests changing 16 keys of one session, all based on the same version",
	}
	if r.ReadOnly, err = ReadOnly(ctx, e, users, rounds, think, touch); err != nil {
		return r, err
	}
	fmt.Fprintf(log, "readonly: %+v\n", r.ReadOnly)
	if r.ReadOnlyTouchAlways, err = ReadOnly(ctx, e, users, 20, think, time.Millisecond); err != nil {
		return r, err
	}
	fmt.Fprintf(log, "readonly, touch on every request (control): %+v\n", r.ReadOnlyTouchAlways)
	if r.Alternating, err = Alternating(ctx, e, true, 8, 120, 20, 1200*time.Millisecond); err != nil {
		return r, err
	}
	fmt.Fprintf(log, "alternating regions, with the mechanism: %+v\n", r.Alternating)
	if r.AlternatingWithout, err = Alternating(ctx, e, false, 8, 120, 20, 1200*time.Millisecond); err != nil {
		return r, err
	}
	fmt.Fprintf(log, "alternating regions, without (control): %+v\n", r.AlternatingWithout)
	if r.Concurrent, err = Concurrent(ctx, e, 16); err != nil {
		return r, err
	}
	fmt.Fprintf(log, "concurrent changes, conditional merge: %+v\n", r.Concurrent)
	if r.ConcurrentNaive, err = ConcurrentNaive(ctx, e, 16); err != nil {
		return r, err
	}
	fmt.Fprintf(log, "concurrent changes, blind read-modify-write (control): %+v\n", r.ConcurrentNaive)
	r.WritesPerReadOnlyRequest = r.ReadOnly.WritesPerRequest
	r.CrossRegionAnomalies = r.Alternating.Anomalies
	r.CrossRegionAnomaliesWithout = r.AlternatingWithout.Anomalies
	return r, nil
}
