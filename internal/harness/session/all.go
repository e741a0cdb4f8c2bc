package session

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

	// Issue 13: a regional outage, and the blind spots of the above.
	RegionalOutage        OutageResult `json:"regional_outage"`
	RegionalOutageControl OutageResult `json:"regional_outage_control"`
	// Anomalies per request of Alternating (each request judged on its
	// own: the harness logs in again after a logged-out response).
	CrossRegionAnomalyRate        float64           `json:"cross_region_anomaly_rate"`
	CrossRegionAnomalyRateWithout float64           `json:"cross_region_anomaly_rate_without"`
	UnreachableHome               AlternatingResult `json:"unreachable_home"`
	CrossRegionWrites             CrossWritesResult `json:"cross_region_concurrent_writes"`

	// Issue 10 item 5: a logout racing a change (one region, across).
	DestroyRace             DestroyRaceResult `json:"destroy_race"`
	DestroyRaceControl      DestroyRaceResult `json:"destroy_race_control"`
	DestroyRaceCross        DestroyRaceResult `json:"destroy_race_cross_region"`
	DestroyRaceCrossControl DestroyRaceResult `json:"destroy_race_cross_region_control"`

	// Issue 14: the middleware on a request that never touches its
	// session, against scs's LoadAndSave; and what the token carrier writes.
	UntouchedRequestNsRatio   float64         `json:"untouched_request_ns_ratio"`
	UntouchedRequestAllocs    float64         `json:"untouched_request_allocs"`
	UntouchedRequestAllocsSCS float64         `json:"untouched_request_allocs_scs"`
	Untouched                 UntouchedResult `json:"untouched_request"`
	TokenCarrier              CarrierResult   `json:"token_carrier"`
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
	if r.UnreachableHome, err = UnreachableHome(ctx, e, 8, 60, 20, 1200*time.Millisecond); err != nil {
		return r, err
	}
	fmt.Fprintf(log, "alternating regions, home region unreachable from Tokyo: %+v\n", r.UnreachableHome)
	if r.CrossRegionWrites, err = CrossRegionWrites(ctx, e, 3); err != nil {
		return r, err
	}
	fmt.Fprintf(log, "concurrent writes to one session from both regions: %+v\n", r.CrossRegionWrites)
	for _, d := range []struct {
		out          *DestroyRaceResult
		cross, naive bool
		what         string
	}{
		{&r.DestroyRace, false, false, "logout racing a change, tombstones"},
		{&r.DestroyRaceControl, false, true, "logout racing a change, old algorithm (control)"},
		{&r.DestroyRaceCross, true, false, "logout racing a change in the other region, tombstones"},
		{&r.DestroyRaceCrossControl, true, true, "logout racing a change in the other region, old algorithm (control)"},
	} {
		if *d.out, err = DestroyRace(ctx, e, d.cross, d.naive, 3); err != nil {
			return r, err
		}
		fmt.Fprintf(log, "%s: %+v\n", d.what, *d.out)
	}
	plan := OutagePlan{Users: 16, Total: 60 * time.Second, DownAt: 20 * time.Second, DownFor: 20 * time.Second, Interval: 200 * time.Millisecond}
	r.Settings["regional_outage"] = fmt.Sprintf("%d users in us-east-1, a request every %v on average (1/5 increments, 1/5 untouched, logout+login every 25th, the rest reads), %v in total, us-east-1's dynalite stopped from %v to %v; replication delay 1 s; the regions are both on loopback (no cross-region latency)",
		plan.Users, plan.Interval, plan.Total, plan.DownAt, plan.DownAt+plan.DownFor)
	// Each outage run gets a table of its own: the Global Tables stand-in
	// scans whole tables every 50 ms, and the earlier scenarios' items
	// would load the one dynalite left.
	outage := func(fallback bool) (OutageResult, error) {
		oe, err := Open(ctx, e.Stack, e.Table+"_outage", time.Second)
		if err != nil {
			return OutageResult{}, err
		}
		defer oe.Close(context.WithoutCancel(ctx))
		return Outage(ctx, oe, fallback, plan)
	}
	if r.RegionalOutage, err = outage(true); err != nil {
		return r, err
	}
	fmt.Fprintf(log, "regional outage, serving from Tokyo's replica: %+v\n", r.RegionalOutage)
	if r.RegionalOutageControl, err = outage(false); err != nil {
		return r, err
	}
	fmt.Fprintf(log, "regional outage, without the fallback (control): %+v\n", r.RegionalOutageControl)
	if r.TokenCarrier, err = CarrierWrites(ctx, e, 20); err != nil {
		return r, err
	}
	fmt.Fprintf(log, "token carrier, session writes per request: %+v\n", r.TokenCarrier)
	if r.Untouched, err = Untouched(41, 2000); err != nil {
		return r, err
	}
	fmt.Fprintf(log, "untouched request, Manager vs scs LoadAndSave: %+v\n", r.Untouched)
	r.UntouchedRequestNsRatio = r.Untouched.NsRatio
	r.UntouchedRequestAllocs, r.UntouchedRequestAllocsSCS = r.Untouched.AllocsManager, r.Untouched.AllocsSCS
	r.CrossRegionAnomalyRate = r.Alternating.AnomalyRate
	r.CrossRegionAnomalyRateWithout = r.AlternatingWithout.AnomalyRate
	r.WritesPerReadOnlyRequest = r.ReadOnly.WritesPerRequest
	r.CrossRegionAnomalies = r.Alternating.Anomalies
	r.CrossRegionAnomaliesWithout = r.AlternatingWithout.Anomalies
	return r, nil
}
