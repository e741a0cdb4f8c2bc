package demo

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"
)

// The bars the demo holds the service to: a run that misses one fails.
const (
	// maxUnavailableShare is the most of a region's requests that may fail
	// (5xx or no answer).
	maxUnavailableShare = 0.03
	// maxWriteRecovery is the longest a region may go without an
	// acknowledged write after the writer's loss.
	maxWriteRecovery = 10 * time.Second
)

// verdict checks the bars and names, for each miss, the backends that
// failed (the instances' /healthz during the run) and the servers that died
// without the scenario killing them (the stack's state file).
func (d *driver) verdict(r *Report) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	deaths, err := d.s.UnexpectedDeaths(ctx)
	if err != nil {
		r.Failures = append(r.Failures, fmt.Sprintf("cannot read the stack's server deaths: %v", err))
	} else if len(deaths) > d.deathsBefore {
		r.Deaths = deaths[d.deathsBefore:]
	}
	r.UnexpectedServerDeaths = len(r.Deaths)
	r.Outages = d.health.list("")

	for _, death := range r.Deaths {
		r.Failures = append(r.Failures, "a server died that the scenario did not kill: "+death.String())
	}
	for _, region := range []string{tokyo, virginia} {
		n, bad := r.Requests[region], r.Unavailable[region]
		if n == 0 {
			r.Failures = append(r.Failures, fmt.Sprintf("%s sent no request", regionLabel(region)))
			continue
		}
		if share := float64(bad) / float64(n); share > maxUnavailableShare {
			r.Failures = append(r.Failures, fmt.Sprintf("%s: %.1f %% of its %d requests unavailable (limit %.0f %%); %s",
				regionLabel(region), 100*share, n, 100*maxUnavailableShare, d.failuresDuring(r, region)))
		}
	}
	for what, rec := range map[string]map[string]float64{"the writer's loss": r.FailoverRecoveryMS, "the loss of Tokyo's databases": r.RegionLossRecoveryMS} {
		for _, region := range slices.Sorted(maps.Keys(rec)) {
			ms := rec[region]
			switch {
			case ms < 0:
				r.Failures = append(r.Failures, fmt.Sprintf("%s did not write again within 60 s of %s; %s", regionLabel(region), what, d.causes(r, region)))
			case ms > float64(maxWriteRecovery.Milliseconds()):
				r.Failures = append(r.Failures, fmt.Sprintf("%s wrote again %.0f ms after %s (limit %d ms); %s",
					regionLabel(region), ms, what, maxWriteRecovery.Milliseconds(), d.causes(r, region)))
			}
		}
	}
	for _, o := range r.Outages {
		r.Notes = append(r.Notes, fmt.Sprintf("%s's instance saw %s", regionLabel(o.Region), o))
	}
}

// causes names what failed for a region: the backends its instance saw down,
// and the servers that died unexpectedly.
func (d *driver) causes(r *Report, region string) string {
	var parts []string
	for _, o := range d.health.list(region) {
		parts = append(parts, o.String())
	}
	if len(parts) == 0 && len(r.Deaths) == 0 {
		return "its instance reported every backend up and no server died: see photoalbum-" + region + ".log"
	}
	var out []string
	if len(parts) > 0 {
		out = append(out, "backends its instance saw down: "+strings.Join(parts, "; "))
	}
	if len(r.Deaths) > 0 {
		out = append(out, deathsText(r))
	}
	return strings.Join(out, "; ")
}

// deathsText names the servers that died unexpectedly.
func deathsText(r *Report) string {
	var died []string
	for _, death := range r.Deaths {
		died = append(died, fmt.Sprintf("%s (%s, %s) at %s", death.Server, death.Kind, death.Region, death.At.Format("15:04:05.000")))
	}
	return "servers that died unexpectedly: " + strings.Join(died, ", ")
}

// failuresDuring attributes a region's unavailable requests to the backend
// outages its instance reported: how many failed while each was down (from
// one health poll before it was first seen), and how many while none was.
func (d *driver) failuresDuring(r *Report, region string) string {
	outages := d.health.list(region)
	counts := make([]int, len(outages))
	var none int
	for _, sm := range r.samples {
		if sm.Region != region || (sm.Status != 0 && sm.Status < 500) {
			continue
		}
		hit := false
		for i, o := range outages {
			if sm.At >= o.From-healthEvery && (o.To < 0 || sm.At <= o.To) {
				counts[i]++
				hit = true
			}
		}
		if !hit {
			none++
		}
	}
	var parts []string
	for i, o := range outages {
		if counts[i] > 0 {
			parts = append(parts, fmt.Sprintf("%d while %s", counts[i], o))
		}
	}
	if none > 0 {
		parts = append(parts, fmt.Sprintf("%d while its instance reported every backend up (see photoalbum-%s.log)", none, region))
	}
	out := "failed requests: " + strings.Join(parts, "; ")
	if len(r.Deaths) > 0 {
		out += "; " + deathsText(r)
	}
	return out
}

// postFailoverReads returns, per region, the p90 of reads (2xx GETs) from 2
// to 10 s after the region's first acknowledged write after the failover,
// over their p90 in the calm 2.5 s (at Scale 1) before the scenario's first
// fault (the lagging readers that come later slow reads too). A region
// without reads in either window is left out.
func (d *driver) postFailoverReads(samples []sample) map[string]float64 {
	if d.recovery == nil {
		return nil
	}
	d.mu.Lock()
	calm := d.failoverAt
	for _, e := range d.events {
		if e.Fault {
			calm = min(calm, e.At*time.Millisecond)
		}
	}
	d.mu.Unlock()
	out := map[string]float64{}
	for region, ms := range d.recovery {
		if ms < 0 {
			continue
		}
		back := d.failoverAt + time.Duration(ms*float64(time.Millisecond))
		var before, after []float64
		for _, s := range samples {
			if s.Region != region || !strings.HasPrefix(s.Endpoint, "GET ") || s.Status < 200 || s.Status > 299 {
				continue
			}
			v := float64(s.Dur.Microseconds()) / 1000
			switch {
			case s.At >= calm-d.at(2.5) && s.At < calm:
				before = append(before, v)
			case s.At >= back+2*time.Second && s.At < back+10*time.Second:
				after = append(after, v)
			}
		}
		if len(before) == 0 || len(after) == 0 {
			continue
		}
		slices.Sort(before)
		slices.Sort(after)
		if p90 := quantile(before, 0.9); p90 > 0 {
			out[region] = round2(quantile(after, 0.9) / p90)
		}
	}
	return out
}

// Err returns an error listing the bars the run missed, or nil.
func (r *Report) Err() error {
	if len(r.Failures) == 0 {
		return nil
	}
	return errors.New("demo: " + strings.Join(r.Failures, "\n  "))
}
