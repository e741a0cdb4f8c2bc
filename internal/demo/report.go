package demo

import (
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"math"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/regiondb/regiondb/internal/testserver"
)

// latency is one endpoint's client-side latency.
type latency struct {
	N   int     `json:"n"`
	P50 float64 `json:"p50"`
	P99 float64 `json:"p99"`
}

// Report is the demo's result. Its JSON form (Figures) is the demo's last
// output line; report.json holds it with the details.
type Report struct {
	DurationS float64 `json:"duration_s"`
	// Requests per region, as the driver sent them; Unavailable of those
	// failed with a 5xx or no response.
	Requests    map[string]int `json:"requests"`
	Unavailable map[string]int `json:"unavailable"`
	// Reads by where dbrouter served them, per region (from its metrics).
	ReadsLocal          map[string]float64 `json:"reads_local"`
	ReadsWriter         map[string]float64 `json:"reads_writer"`
	ReadsWriterByReason map[string]float64 `json:"reads_writer_by_reason"`
	ReadsLocalByReason  map[string]float64 `json:"reads_reader_by_reason"`
	ReadsRemote         map[string]float64 `json:"reads_other_region_reader"`
	// Read-your-writes: reads that had to show an earlier write, checked.
	RYWChecks     int            `json:"ryw_checks"`
	RYWByKind     map[string]int `json:"ryw_checks_by_kind"`
	RYWViolations int            `json:"ryw_violations"`
	// Cache (from its metrics, both regions).
	CacheHits         float64            `json:"cache_hits"`
	CacheMisses       float64            `json:"cache_misses"`
	CacheHitRatio     float64            `json:"cache_hit_ratio"`
	StaleFillsRefused float64            `json:"stale_fills_refused"`
	RefusedByReason   map[string]float64 `json:"stale_fills_refused_by_reason"`
	HotFamily         hotResult          `json:"hot_family"`
	// FreshAfterWrite counts record reads that skipped the cache because
	// the user had just changed a cached record (photoalbum metrics).
	FreshAfterWrite float64 `json:"records_read_fresh_after_write"`
	// Sessions: logins followed by a request in the other region.
	SessionCrossRegionChecks int     `json:"session_cross_region_checks"`
	SessionAnomalies         int     `json:"session_anomalies"`
	SessionFallbacks         float64 `json:"session_cross_region_fallbacks"`
	SessionReadsPerRequest   float64 `json:"session_dynamodb_reads_per_request"`
	SessionWritesPerRequest  float64 `json:"session_dynamodb_writes_per_request"`
	SessionConflicts         float64 `json:"session_conflicts"`
	// Latency per endpoint (ms, client side, every response).
	LatencyMS map[string]latency `json:"latency_ms"`
	// Failover: ms from kill -9 of the writer to the first acknowledged
	// write, per region (-1: never within 60 s).
	FailoverRecoveryMS map[string]float64 `json:"failover_recovery_ms"`
	FailoverMaxMS      float64            `json:"failover_recovery_max_ms"`
	// FailoverPromotedMS is when the promotion of r1 began, ms after the
	// kill (the demo waits 1 s, standing in for failure detection).
	FailoverPromotedMS float64 `json:"failover_promoted_ms"`
	promoteCallMS      float64
	// RegionLossRecoveryMS is, with RegionalOutages, the ms from the loss
	// of Tokyo's databases to the first acknowledged write, per region.
	RegionLossRecoveryMS map[string]float64 `json:"region_loss_recovery_ms,omitempty"`
	// PostFailoverReadP90Ratio is, per region, the p90 latency of reads
	// (2xx GETs) from 2 to 10 s after the region's first acknowledged write
	// after the failover, divided by their p90 in the calm 2.5 s before the
	// scenario's first fault. Issue 13's bar is 1.5; it is reported, not yet
	// enforced (dbrouter still waits on the promoted primary).
	PostFailoverReadP90Ratio map[string]float64 `json:"post_failover_read_p90_ratio,omitempty"`
	// UnexpectedServerDeaths counts the stack's servers that died during
	// the run without the scenario killing them (the stack's state file).
	UnexpectedServerDeaths int `json:"unexpected_server_deaths"`
	// Backends says, per package, what the instances ran.
	Backends map[string]string `json:"backends"`

	Violations []violation   `json:"-"`
	Sessions   []violation   `json:"-"`
	Events     []event       `json:"-"`
	Stories    []storyResult `json:"-"`
	Notes      []string      `json:"-"`
	Unexpected []string      `json:"-"`
	// Failures are the bars the run missed, each with its cause ([Report.Err]).
	Failures []string           `json:"-"`
	Outages  []outage           `json:"-"`
	Deaths   []testserver.Death `json:"-"`
	samples  []sample           // for the chart
	metrics  map[string]any     // instance metric names seen, for report.json
}

func (d *driver) report(start, end map[string]snapshot) (*Report, error) {
	samples := d.rec.snapshot()
	r := &Report{
		DurationS:            time.Since(d.rec.start).Seconds(),
		Requests:             map[string]int{},
		Unavailable:          map[string]int{},
		ReadsLocal:           map[string]float64{},
		ReadsWriter:          map[string]float64{},
		ReadsWriterByReason:  map[string]float64{},
		ReadsLocalByReason:   map[string]float64{},
		ReadsRemote:          map[string]float64{},
		RefusedByReason:      map[string]float64{},
		LatencyMS:            map[string]latency{},
		FailoverRecoveryMS:   d.recovery,
		RegionLossRecoveryMS: d.regionLossRecovery,
		FailoverPromotedMS:   round2(d.promotedMS),
		promoteCallMS:        d.promoteCallMS,
		HotFamily:            d.hot,
		Backends:             map[string]string{},
		samples:              samples,
		metrics:              map[string]any{},
	}
	byEndpoint := map[string][]float64{}
	for _, s := range samples {
		r.Requests[s.Region]++
		if s.Status == 0 || s.Status >= 500 {
			r.Unavailable[s.Region]++
		}
		byEndpoint[s.Endpoint] = append(byEndpoint[s.Endpoint], float64(s.Dur.Microseconds())/1000)
	}
	for ep, ms := range byEndpoint {
		sort.Float64s(ms)
		r.LatencyMS[ep] = latency{N: len(ms), P50: round2(quantile(ms, 0.50)), P99: round2(quantile(ms, 0.99))}
	}
	k := d.chk
	k.mu.Lock()
	r.RYWByKind = maps.Clone(k.checks)
	for _, n := range k.checks {
		r.RYWChecks += n
	}
	r.RYWViolations = len(k.violations)
	r.Violations = slices.Clone(k.violations)
	r.SessionCrossRegionChecks = k.sessionChecks
	r.SessionAnomalies = len(k.sessionAnomaly)
	r.Sessions = slices.Clone(k.sessionAnomaly)
	r.Unexpected = slices.Clone(k.unexpected)
	if k.unexpectedCount > len(k.unexpected) {
		r.Unexpected = append(r.Unexpected, fmt.Sprintf("... %d more", k.unexpectedCount-len(k.unexpected)))
	}
	k.mu.Unlock()
	for _, v := range d.recovery {
		r.FailoverMaxMS = max(r.FailoverMaxMS, v)
		if v < 0 {
			r.FailoverMaxMS = -1
			break
		}
	}
	var sessReads, sessWrites, sessRequests float64
	for region, s := range end {
		readFigures(r, region, s)
		r.CacheHits += s.sum(metricCacheHits, nil)
		r.CacheMisses += s.sum(metricCacheMisses, nil)
		for reason, n := range s.by(metricCacheRefused, nil, attrCacheReason) {
			r.RefusedByReason[reason] += n
			r.StaleFillsRefused += n
		}
		r.SessionFallbacks += s.sum(metricSessionFallbacks, nil)
		r.SessionConflicts += s.sum(metricSessionConflicts, nil)
		r.FreshAfterWrite += s.sum("photoalbum.record.loads", map[string]string{"photoalbum.fresh_after_write": "true"})
		sessReads += s.value(metricSessionReads)
		sessWrites += s.value(metricSessionWrites)
		sessRequests += s.sum(metricSessionReads, nil)
		var names []string
		for _, dm := range s {
			names = append(names, dm.Name)
		}
		r.metrics[region] = names
	}
	if sessRequests > 0 {
		r.SessionReadsPerRequest = round3(sessReads / sessRequests)
		r.SessionWritesPerRequest = round3(sessWrites / sessRequests)
	}
	if r.CacheHits+r.CacheMisses > 0 {
		r.CacheHitRatio = math.Round(1e4*r.CacheHits/(r.CacheHits+r.CacheMisses)) / 1e4
	}
	for region, u := range d.urls {
		var h struct {
			Backends map[string]string `json:"backends"`
		}
		// A degraded instance answers 503, with the same body.
		if resp, err := d.hc.Get(u + "/healthz"); err == nil {
			json.NewDecoder(resp.Body).Decode(&h)
			resp.Body.Close()
		}
		for pkg, what := range h.Backends {
			if old, ok := r.Backends[pkg]; ok && old != what {
				what = old + "; " + region + ": " + what
			}
			r.Backends[pkg] = what
		}
	}
	d.mu.Lock()
	r.Events = slices.Clone(d.events)
	r.Stories = slices.Clone(d.stories)
	r.Notes = slices.Clone(d.notes)
	d.mu.Unlock()
	r.PostFailoverReadP90Ratio = d.postFailoverReads(samples)
	d.verdict(r)
	return r, d.write(r)
}

// readFigures takes where the reads were served (photoalbum's
// photoalbum.dbrouter.reads, from the router's Stats: dbrouter's own
// statement metric has no region) and why (dbrouter's
// regiondb.dbrouter.statements by route and reason).
func readFigures(r *Report, region string, s snapshot) {
	served := s.by(metricReadsServed, nil, attrServedBy)
	r.ReadsLocal[region] = served["local_reader"]
	r.ReadsRemote[region] = served["other_region_reader"]
	r.ReadsWriter[region] = served["writer"] + served["forced_writer"]
	for key, n := range s.by(metricStatements, nil, attrRoute, attrReason) {
		route, reason, _ := strings.Cut(key, "/")
		switch {
		case route == routeReader:
			r.ReadsLocalByReason[reason] += n
		case route == routeWriter && reason != reasonWrite:
			r.ReadsWriterByReason[reason] += n
		}
	}
}

func quantile(sorted []float64, q float64) float64 {
	if len(sorted) == 0 {
		return 0
	}
	i := int(math.Ceil(q*float64(len(sorted)))) - 1
	return sorted[max(0, min(i, len(sorted)-1))]
}

func round2(f float64) float64 { return math.Round(f*100) / 100 }

func round3(f float64) float64 { return math.Round(f*1000) / 1000 }

// Figures is the one-line JSON of the report.
func (r *Report) Figures() string {
	b, _ := json.Marshal(r)
	return string(b)
}

func regionLabel(region string) string { return regionNames[region] + " (" + region + ")" }

// Text writes the human report.
func (r *Report) Text(w io.Writer) {
	p := func(format string, args ...any) { fmt.Fprintf(w, format+"\n", args...) }
	total := 0
	for _, n := range r.Requests {
		total += n
	}
	p("regiondb photo-album demo: two regions, %.1f s, %d requests", r.DurationS, total)
	p("")
	p("Backends (per package)")
	for _, pkg := range slices.Sorted(maps.Keys(r.Backends)) {
		p("  %-9s %s", pkg, r.Backends[pkg])
	}
	p("")
	p("Requests per region")
	for _, region := range []string{tokyo, virginia} {
		p("  %-28s %6d   unavailable (5xx, no answer): %d", regionLabel(region), r.Requests[region], r.Unavailable[region])
	}
	p("")
	p("Reads: served by the local reader, another region's reader or the writer, and why (both regions)")
	if len(r.ReadsLocal)+len(r.ReadsWriter) == 0 {
		p("  not reported: the instances ran without dbrouter's routing metrics")
	}
	for _, region := range []string{tokyo, virginia} {
		if _, ok := r.ReadsLocal[region]; !ok {
			if _, ok := r.ReadsWriter[region]; !ok {
				continue
			}
		}
		loc, wr := r.ReadsLocal[region], r.ReadsWriter[region]
		share := 0.0
		if all := loc + r.ReadsRemote[region] + wr; all > 0 {
			share = 100 * wr / all
		}
		p("  %-28s local reader %6.0f   other region's reader %5.0f   writer %6.0f  (%.1f %% of reads)",
			regionLabel(region), loc, r.ReadsRemote[region], wr, share)
	}
	for _, reason := range slices.Sorted(maps.Keys(r.ReadsLocalByReason)) {
		p("    a reader because %-20s %6.0f", reason, r.ReadsLocalByReason[reason])
	}
	for _, reason := range slices.Sorted(maps.Keys(r.ReadsWriterByReason)) {
		p("    writer because %-22s %6.0f", reason, r.ReadsWriterByReason[reason])
	}
	p("")
	p("Read-your-writes: %d violations in %d verified reads", r.RYWViolations, r.RYWChecks)
	for _, kind := range slices.Sorted(maps.Keys(r.RYWByKind)) {
		p("  %-20s %6d checked", kind, r.RYWByKind[kind])
	}
	for i, v := range r.Violations {
		if i == 10 {
			p("  ... %d more (report.json)", len(r.Violations)-10)
			break
		}
		p("  VIOLATION at %.2fs %s %s in %s: %s", float64(v.At)/1000, v.Kind, v.User, v.Region, v.Detail)
	}
	p("")
	p("Notifications: the link carries the writer's consistency token")
	for _, s := range r.Stories {
		p("  %6.2fs  %-70s %d photos, %d links opened and verified", float64(s.At)/1000, s.Label, s.Photos, s.Opened)
	}
	p("")
	p("Cache (user and family records, both regions)")
	p("  hit ratio %.1f %% (%.0f hits, %.0f misses); stale fills refused %.0f %v",
		100*r.CacheHitRatio, r.CacheHits, r.CacheMisses, r.StaleFillsRefused, fmtMap(r.RefusedByReason))
	p("  records read from the database (not the cache) just after the user changed one: %.0f", r.FreshAfterWrite)
	h := r.HotFamily
	p("  hot family record: %d requests from 32 concurrent readers in %.1f s (%d failed); TTL %s, so about %.1f expiries per region",
		h.Requests, h.WindowS, h.Failed, cacheTTL, h.Expiries)
	p("    loader calls for it in that window (other families paused): %v", fmtMap(h.FamilyLoads))
	p("    memcached faults in the window %v; calls that bypassed memcached while its breaker was open %v",
		fmtMap(h.CacheFaults), fmtMap(h.BreakerSkips))
	p("")
	p("Sessions: %d requests in the other region right after a login, %d looked logged out; cross-region fallback reads %.0f",
		r.SessionCrossRegionChecks, r.SessionAnomalies, r.SessionFallbacks)
	p("  DynamoDB per request: %.3f reads, %.3f writes; save conflicts %.0f",
		r.SessionReadsPerRequest, r.SessionWritesPerRequest, r.SessionConflicts)
	for _, v := range r.Sessions {
		p("  ANOMALY at %.2fs %s in %s: %s", float64(v.At)/1000, v.User, v.Region, v.Detail)
	}
	p("")
	p("Failover: writer killed (kill -9); promotion of r1 began %.0f ms later (the stack's promote call, which also re-points r2, took %.0f ms)",
		r.FailoverPromotedMS, r.promoteCallMS)
	p("  time from the kill to the first acknowledged write, with the instances still running:")
	for _, region := range slices.Sorted(maps.Keys(r.FailoverRecoveryMS)) {
		p("  %-28s %8.0f ms", regionLabel(region), r.FailoverRecoveryMS[region])
	}
	if len(r.PostFailoverReadP90Ratio) > 0 {
		p("  read p90 from 2 to 10 s after that write, over the p90 before the first fault (issue 13's bar 1.5, not enforced yet): %v",
			r.PostFailoverReadP90Ratio)
	}
	p("")
	p("Latency per endpoint (ms, as the client saw it)")
	p("  %-30s %7s %9s %9s", "endpoint", "n", "p50", "p99")
	for _, ep := range slices.Sorted(maps.Keys(r.LatencyMS)) {
		l := r.LatencyMS[ep]
		p("  %-30s %7d %9.2f %9.2f", ep, l.N, l.P50, l.P99)
	}
	p("")
	p("Events")
	for _, e := range r.Events {
		mark := " "
		if e.Fault {
			mark = "!"
		}
		p("  %s %6.2fs  %s", mark, float64(e.At)/1000, e.Label)
	}
	if len(r.RegionLossRecoveryMS) > 0 {
		p("")
		p("Loss of Tokyo's databases (writer and r1 killed, r2 promoted a second later): time to the first acknowledged write")
		for _, region := range slices.Sorted(maps.Keys(r.RegionLossRecoveryMS)) {
			p("  %-28s %8.0f ms", regionLabel(region), r.RegionLossRecoveryMS[region])
		}
	}
	if len(r.Notes)+len(r.Unexpected) > 0 {
		p("")
		p("Notes")
		for _, n := range r.Notes {
			p("  %s", n)
		}
		for _, n := range r.Unexpected {
			p("  unexpected response: %s", n)
		}
	}
	p("")
	p("Verdict (each region <= %.0f %% unavailable, writes again <= %d ms after a writer loss, no server death the scenario did not cause)",
		100*maxUnavailableShare, maxWriteRecovery.Milliseconds())
	if len(r.Failures) == 0 {
		p("  passed; unexpected server deaths: %d", r.UnexpectedServerDeaths)
	}
	for _, f := range r.Failures {
		p("  FAILED: %s", f)
	}
}

func fmtMap(m map[string]float64) string {
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(m)) {
		parts = append(parts, fmt.Sprintf("%s %.0f", k, m[k]))
	}
	if len(parts) == 0 {
		return "(none)"
	}
	return "(" + strings.Join(parts, ", ") + ")"
}

// write stores report.txt, report.json and latency.svg in the output folder.
func (d *driver) write(r *Report) error {
	var sb strings.Builder
	r.Text(&sb)
	if err := os.WriteFile(filepath.Join(d.cfg.OutDir, "report.txt"), []byte(sb.String()), 0o644); err != nil {
		return err
	}
	full := struct {
		*Report
		Violations []violation        `json:"violations"`
		Sessions   []violation        `json:"session_anomalies_detail"`
		Events     []event            `json:"events"`
		Stories    []storyResult      `json:"stories"`
		Notes      []string           `json:"notes"`
		Unexpected []string           `json:"unexpected"`
		Metrics    map[string]any     `json:"instance_metric_names"`
		Failures   []string           `json:"failures"`
		Outages    []outage           `json:"backend_outages"`
		Deaths     []testserver.Death `json:"unexpected_server_deaths_detail"`
	}{r, r.Violations, r.Sessions, r.Events, r.Stories, r.Notes, r.Unexpected, r.metrics, r.Failures, r.Outages, r.Deaths}
	b, err := json.MarshalIndent(full, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(d.cfg.OutDir, "report.json"), b, 0o644); err != nil {
		return err
	}
	var csv strings.Builder
	csv.WriteString("at_ms,region,endpoint,status,duration_ms\n")
	for _, s := range r.samples {
		fmt.Fprintf(&csv, "%.1f,%s,%s,%d,%.3f\n", float64(s.At.Microseconds())/1000, s.Region, s.Endpoint, s.Status, float64(s.Dur.Microseconds())/1000)
	}
	if err := os.WriteFile(filepath.Join(d.cfg.OutDir, "requests.csv"), []byte(csv.String()), 0o644); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(d.cfg.OutDir, "latency.svg"), []byte(r.SVG()), 0o644)
}
