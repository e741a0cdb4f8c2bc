package demo

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// hotResult is what the hot-family burst measured.
type hotResult struct {
	WindowS     float64            `json:"window_s"`
	Requests    int64              `json:"requests"`
	Failed      int64              `json:"failed"`
	FamilyLoads map[string]float64 `json:"family_record_loads"` // loader calls by region during the window
	Expiries    float64            `json:"ttl_expiries"`        // window / TTL: loads per region the TTL alone makes due
	// CacheFaults are memcached errors (timeouts...) in the window, and
	// BreakerSkips the calls that skipped memcached because the breaker
	// opened after them: those reads load from the database by design.
	CacheFaults  map[string]float64 `json:"cache_faults"`
	BreakerSkips map[string]float64 `json:"breaker_skips"`
}

// storyResult is one "parent adds photos, family opens the link" round.
type storyResult struct {
	At     time.Duration `json:"at_ms"`
	Label  string        `json:"label"`
	Photos int           `json:"photos"`
	Opened int           `json:"links_opened"`
}

// cast is the scripted family plus the background people.
type cast struct {
	parent, grandparent, child *person
	sato                       []*person
	background                 [][]*person
	probes                     map[string]*person // failover probe writer per region
}

func (d *driver) snapshots(ctx context.Context) map[string]snapshot {
	out := map[string]snapshot{}
	for region, u := range d.urls {
		s, err := fetchMetrics(ctx, d.hc, u)
		if err != nil {
			d.note("metrics of %s unavailable: %v", region, err)
			continue
		}
		out[region] = s
	}
	return out
}

func (d *driver) setup(ctx context.Context) (*cast, error) {
	c := &cast{
		parent:      d.newPerson("parent", tokyo),
		grandparent: d.newPerson("grandparent", virginia),
		child:       d.newPerson("child", tokyo),
		probes:      map[string]*person{},
	}
	c.sato = []*person{c.parent, c.grandparent, c.child}
	for _, p := range c.sato {
		if err := d.signup(ctx, p); err != nil {
			return nil, err
		}
	}
	if err := d.makeFamily(ctx, "Sato", c.sato, []string{"grandparent", "child"}); err != nil {
		return nil, err
	}
	for i := range d.cfg.People / 2 {
		fam := []*person{d.newPerson("tokyo"+strconv.Itoa(i), tokyo), d.newPerson("virginia"+strconv.Itoa(i), virginia)}
		for _, p := range fam {
			if err := d.signup(ctx, p); err != nil {
				return nil, err
			}
		}
		if err := d.makeFamily(ctx, "family"+strconv.Itoa(i), fam, []string{"member"}); err != nil {
			return nil, err
		}
		c.background = append(c.background, fam)
	}
	probes := []*person{d.newPerson("probe-tokyo", tokyo), d.newPerson("probe-virginia", virginia)}
	for _, p := range probes {
		if err := d.signup(ctx, p); err != nil {
			return nil, err
		}
		c.probes[p.home] = p
	}
	if err := d.makeFamily(ctx, "probes", probes, []string{"member"}); err != nil {
		return nil, err
	}
	return c, nil
}

// story: the parent in Tokyo adds photos, the family is notified; the
// grandparent opens the link in N. Virginia at once, the child in Tokyo.
func (d *driver) story(ctx context.Context, c *cast, label string) {
	d.mark(label, false)
	ids, ok := d.addPhotos(ctx, c.parent, tokyo, 3, []*person{c.grandparent, c.child})
	res := storyResult{At: time.Since(d.rec.start) / time.Millisecond, Label: label, Photos: len(ids)}
	if ok {
		res.Opened = d.openPushes(ctx, c.grandparent, virginia) + d.openPushes(ctx, c.child, tokyo)
	}
	d.mu.Lock()
	d.stories = append(d.stories, res)
	d.mu.Unlock()
}

// crossLogins: a person logs in in one region and the next request lands in
// the other.
func (d *driver) crossLogins(ctx context.Context, n int) {
	d.mark(fmt.Sprintf("%d logins, each followed by a request in the other region", 2*n), false)
	for i := range n {
		home := tokyo
		if i%2 == 1 {
			home = virginia
		}
		p := d.newPerson("traveller"+strconv.Itoa(i), home)
		if err := d.signup(ctx, p); err != nil {
			d.chk.failed("session", p, response{err: err, region: home})
			continue
		}
		// Signing up logged in at home; the next request is abroad.
		d.checkSession(ctx, p, d.other(home))
		// Log in again abroad (a new session id), next request at home.
		r := p.c.do(ctx, d.other(home), http.MethodPost, "/login", "POST /login",
			map[string]string{"email": p.email, "password": p.password})
		if !r.ok() {
			d.chk.session(p, r, false, "login failed: "+r.String())
			continue
		}
		d.checkSession(ctx, p, home)
	}
}

func (d *driver) checkSession(ctx context.Context, p *person, region string) {
	r := p.c.do(ctx, region, http.MethodGet, "/me", "GET /me", nil)
	var me meJSON
	if r.ok() {
		r.decode(&me)
	}
	d.chk.session(p, r, r.ok() && me.User.ID == p.id, fmt.Sprintf("after login in %s: %s", d.other(region), r))
}

// hotFamily: the Sato family record, read by every request of the family, is
// hammered from both regions for a few TTLs, so it expires under load.
func (d *driver) hotFamily(ctx context.Context, c *cast, window time.Duration) {
	d.mark(fmt.Sprintf("hot family record: 32 concurrent readers for %.0fs (TTL %s)", window.Seconds(), cacheTTL), false)
	// The other families pause, so that the family-record loads counted in
	// the window are the hot record's.
	d.paused.Store(true)
	defer d.paused.Store(false)
	before := d.snapshots(ctx)
	var requests, failed atomic.Int64
	wctx, cancel := context.WithTimeout(ctx, window)
	defer cancel()
	var wg sync.WaitGroup
	path := "/families/" + strconv.FormatInt(c.parent.familyID, 10)
	for i := range 32 {
		p, region := c.parent, tokyo
		if i%2 == 1 {
			p, region = c.grandparent, virginia
		}
		wg.Go(func() {
			for wctx.Err() == nil {
				r := p.c.do(wctx, region, http.MethodGet, path, "GET /families/{id}", nil)
				if wctx.Err() != nil {
					return
				}
				requests.Add(1)
				if !r.ok() {
					failed.Add(1)
				}
			}
		})
	}
	wg.Wait()
	after := d.snapshots(ctx)
	h := hotResult{WindowS: window.Seconds(), Requests: requests.Load(), Failed: failed.Load(), FamilyLoads: map[string]float64{},
		Expiries: window.Seconds() / cacheTTL.Seconds(), CacheFaults: map[string]float64{}, BreakerSkips: map[string]float64{}}
	for region := range d.urls {
		h.CacheFaults[region] = after[region].sum(metricCacheErrors, nil) - before[region].sum(metricCacheErrors, nil)
		skip := map[string]string{attrCacheReason: "breaker_open"}
		h.BreakerSkips[region] = after[region].sum(metricCacheSkips, skip) - before[region].sum(metricCacheSkips, skip)
		f := map[string]string{"photoalbum.record": "family", "photoalbum.fresh_after_write": "false"}
		h.FamilyLoads[region] = after[region].sum("photoalbum.record.loads", f) - before[region].sum("photoalbum.record.loads", f)
	}
	d.hot = h
}

// play runs the timeline. Offsets are in seconds at Scale 1.
func (d *driver) play(ctx context.Context) (*Report, error) {
	d.rec.start = time.Now()
	defer d.watchHealth(ctx)()
	c, err := d.setup(ctx)
	if err != nil {
		return nil, err
	}
	if err := d.waitReplicated(ctx); err != nil {
		return nil, err
	}
	d.logf("set up %d families (%d people)", 2+len(c.background), 5+2*len(c.background))
	start := d.snapshots(ctx)

	bgCtx, stopBackground := context.WithCancel(ctx)
	defer stopBackground()
	var bg sync.WaitGroup
	seed := uint64(d.rec.start.UnixNano())
	for _, fam := range c.background {
		for _, p := range fam {
			seed++
			pseed := seed
			bg.Go(func() { d.browse(bgCtx, p, fam, pseed) })
		}
	}
	base := time.Since(d.rec.start)
	step := func(sec float64) error { return d.sleepUntil(ctx, base+d.at(sec)) }
	lag := func(sec float64) time.Duration { return max(time.Second, d.at(sec)) }

	if err := step(1.5); err != nil {
		return nil, err
	}
	d.story(ctx, c, "parent adds photos in Tokyo; grandparent opens the link in N. Virginia")
	if err := step(4); err != nil {
		return nil, err
	}
	d.crossLogins(ctx, 4)
	if err := step(7); err != nil {
		return nil, err
	}
	d.hotFamily(ctx, c, max(2*cacheTTL+cacheTTL/2, d.at(5)))
	if err := step(13); err != nil {
		return nil, err
	}
	d.story(ctx, c, "photos again (caches warm)")
	if err := step(15); err != nil {
		return nil, err
	}
	d.mark(fmt.Sprintf("N. Virginia reader r2 falls %.0fs behind", lag(3).Seconds()), true)
	if err := d.s.Lag(ctx, "r2", lag(3)); err != nil {
		return nil, faultError("lag r2", err)
	}
	if err := step(16); err != nil {
		return nil, err
	}
	d.story(ctx, c, "photos while r2 lags")
	if err := step(20); err != nil {
		return nil, err
	}
	d.mark(fmt.Sprintf("Tokyo reader r1 falls %.0fs behind", lag(2).Seconds()), true)
	if err := d.s.Lag(ctx, "r1", lag(2)); err != nil {
		return nil, faultError("lag r1", err)
	}
	if err := step(20.5); err != nil {
		return nil, err
	}
	d.story(ctx, c, "photos while r1 lags")
	if err := step(25); err != nil {
		return nil, err
	}
	if err := d.failover(ctx, c); err != nil {
		return nil, err
	}
	d.story(ctx, c, "photos after the failover")
	if err := step(38); err != nil {
		return nil, err
	}
	if d.cfg.RegionalOutages {
		if err := d.regionalOutages(ctx, c, step); err != nil {
			return nil, err
		}
	}
	return d.finish(ctx, c, stopBackground, &bg, start)
}

// finish stops the background people, checks every album in both regions
// and builds the report.
func (d *driver) finish(ctx context.Context, c *cast, stopBackground func(), bg *sync.WaitGroup, start map[string]snapshot) (*Report, error) {
	stopBackground()
	bg.Wait()
	d.mark("end of load; final check of every album in both regions", false)
	for _, p := range c.everyone() {
		for _, region := range []string{tokyo, virginia} {
			d.verifyAlbum(ctx, "final sweep", p, region, albumPath(p.albumID), nil)
		}
	}
	end := d.snapshots(ctx)
	for region, snap := range end {
		if b, err := json.MarshalIndent(snap, "", " "); err == nil {
			os.WriteFile(filepath.Join(d.cfg.OutDir, "metrics-"+region+".json"), b, 0o644)
		}
	}
	return d.report(start, end)
}

func (c *cast) everyone() []*person {
	out := append([]*person(nil), c.sato...)
	for _, f := range c.background {
		out = append(out, f...)
	}
	for _, p := range c.probes {
		out = append(out, p)
	}
	return out
}
