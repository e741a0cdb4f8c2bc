package session

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"

	"github.com/regiondb/regiondb/session"
)

// Sum returns the sum of the named Int64 counter collected by rd.
func Sum(ctx context.Context, rd *sdkmetric.ManualReader, name string) int64 {
	var rm metricdata.ResourceMetrics
	if err := rd.Collect(ctx, &rm); err != nil {
		return -1
	}
	var n int64
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			if s, ok := m.Data.(metricdata.Sum[int64]); ok && m.Name == name {
				for _, dp := range s.DataPoints {
					n += dp.Value
				}
			}
		}
	}
	return n
}

// HistQuantileMS returns the upper bound, in milliseconds, of the bucket
// that holds quantile q of the named Float64 histogram (in seconds)
// collected by rd; 0 if it has no data.
func HistQuantileMS(ctx context.Context, rd *sdkmetric.ManualReader, name string, q float64) float64 {
	var rm metricdata.ResourceMetrics
	if err := rd.Collect(ctx, &rm); err != nil {
		return 0
	}
	var bounds []float64
	var counts []uint64
	var total uint64
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			h, ok := m.Data.(metricdata.Histogram[float64])
			if !ok || m.Name != name {
				continue
			}
			for _, dp := range h.DataPoints {
				bounds = dp.Bounds
				if counts == nil {
					counts = make([]uint64, len(dp.BucketCounts))
				}
				for i, c := range dp.BucketCounts {
					counts[i] += c
					total += c
				}
			}
		}
	}
	if total == 0 {
		return 0
	}
	var seen uint64
	for i, c := range counts {
		seen += c
		if float64(seen) >= q*float64(total) {
			if i < len(bounds) {
				return bounds[i] * 1000
			}
			return bounds[len(bounds)-1] * 1000 // the overflow bucket: at least its lower bound
		}
	}
	return 0
}

// AlternatingResult is the outcome of [Alternating].
type AlternatingResult struct {
	Requests  int   `json:"requests"`
	Anomalies int   `json:"anomalies"` // looked logged out or saw older data
	Fallbacks int64 `json:"cross_region_fallbacks"`
	Writes    int64 `json:"writes"`

	// AnomalyRate is Anomalies per request. The harness resynchronises
	// with what the service shows after every anomaly, so each request is
	// judged on its own: a rate, not a count that saturates.
	AnomalyRate float64 `json:"anomaly_rate"`
	LoggedOut   int     `json:"logged_out"`   // the session came back empty
	Stale       int     `json:"stale"`        // older data than the user's last acknowledged change
	Failed      int     `json:"failed"`       // answered other than 200
	LostUpdates int     `json:"lost_updates"` // acknowledged increments missing after replication settled
	P99MS       float64 `json:"p99_ms"`
}

// Alternating logs users in and then sends each user's requests to the two
// regions in turn, two counter increments and one read-only request out of
// every three, while the table replicates with the Env's delay. A response
// whose user or counter differs from what the user's previous requests
// established is an anomaly. With fallback the Managers have the other
// region's client (the cookie's version and home region decide when to
// read it); without, each region reads only its own table. Every
// pauseEvery steps a user pauses for pause (the user's think time), so that
// replication delivers its changes in the middle of the run too.
func Alternating(ctx context.Context, e *Env, fallback bool, users, steps, pauseEvery int, pause time.Duration) (AlternatingResult, error) {
	var cfgs [2]session.Config
	for i, r := range Regions {
		cfgs[i] = e.Config(r, fallback)
	}
	return alternating(ctx, e, cfgs, users, steps, pauseEvery, pause)
}

// UnreachableHome is [Alternating] with Tokyo's Manager configured with a
// us-east-1 client whose endpoint accepts connections and never answers
// (an unreachable region, not an absent one): users logged in in
// us-east-1 whose next request lands in Tokyo before replication must not
// lose a change (a write on Tokyo's older copy would be dropped by last
// writer wins, or drop the newer one); they are shown the older copy and
// their changes are refused until the copy arrives.
func UnreachableHome(ctx context.Context, e *Env, users, steps, pauseEvery int, pause time.Duration) (AlternatingResult, error) {
	hole, err := newBlackhole()
	if err != nil {
		return AlternatingResult{}, err
	}
	defer hole.Close()
	var cfgs [2]session.Config
	for i, r := range Regions {
		cfgs[i] = e.Config(r, true)
		cfgs[i].CallTimeout = 300 * time.Millisecond
	}
	cfgs[0].Clients[Regions[1]] = newEndpointClient(Regions[1], "http://"+hole.Addr().String())
	return alternating(ctx, e, cfgs, users, steps, pauseEvery, pause)
}

func alternating(ctx context.Context, e *Env, cfgs [2]session.Config, users, steps, pauseEvery int, think time.Duration) (AlternatingResult, error) {
	var res AlternatingResult
	var servers [2]*server
	var readers [2]*sdkmetric.ManualReader
	for i := range Regions {
		readers[i] = sdkmetric.NewManualReader()
		cfg := cfgs[i]
		cfg.MeterProvider = sdkmetric.NewMeterProvider(sdkmetric.WithReader(readers[i]))
		m, err := session.New(cfg)
		if err != nil {
			return res, err
		}
		servers[i] = newServer(m)
		defer servers[i].Close()
	}
	tr := &http.Transport{}
	defer tr.CloseIdleConnections()
	w0 := e.Count[Regions[0]].Writes.Load() + e.Count[Regions[1]].Writes.Load()
	var mu sync.Mutex // protects res and lat
	var lat []time.Duration
	type final struct {
		name  string
		acked int
		ck    *http.Cookie
	}
	finals := make([]final, users)
	var wg sync.WaitGroup
	errs := make(chan error, users)
	for u := range users {
		wg.Add(1)
		go func() {
			defer wg.Done()
			usr := newUser("user"+strconv.Itoa(u), tr)
			home := servers[1]
			status, body, err := usr.do(ctx, http.MethodPost, home.URL, "/login", url.Values{"user": {usr.name}})
			if err != nil || status != http.StatusOK {
				errs <- fmt.Errorf("login: %d %q %v", status, body, err)
				return
			}
			var r AlternatingResult
			var mine []time.Duration
			n := 0
			for i := range steps {
				if pauseEvery > 0 && i > 0 && i%pauseEvery == 0 {
					tm := time.NewTimer(think)
					select {
					case <-tm.C:
					case <-ctx.Done():
						tm.Stop()
						errs <- ctx.Err()
						return
					}
				}
				srv := servers[i%2]
				var status int
				var body string
				var err error
				want := n
				t0 := time.Now()
				if i%3 == 2 {
					status, body, err = usr.do(ctx, http.MethodGet, srv.URL, "/read", nil)
				} else {
					want = n + 1
					status, body, err = usr.do(ctx, http.MethodPost, srv.URL, "/incr", url.Values{})
				}
				if err != nil {
					errs <- err
					return
				}
				mine = append(mine, time.Since(t0))
				r.Requests++
				name, got, _ := strings.Cut(body, " ")
				v, convErr := strconv.Atoi(got)
				switch {
				case status != http.StatusOK:
					r.Failed++
					r.Anomalies++
					continue // nothing acknowledged; n stays
				case name != usr.name:
					// Looked logged out: count it, then log in again as
					// a user would, so that the next request is judged on
					// its own (no cascade of anomalies).
					r.LoggedOut++
					r.Anomalies++
					status, body, err := usr.do(ctx, http.MethodPost, srv.URL, "/login", url.Values{"user": {usr.name}})
					if err != nil || status != http.StatusOK {
						errs <- fmt.Errorf("login again: %d %q %v", status, body, err)
						return
					}
					n = 0
					continue
				case convErr != nil || v < want:
					r.Stale++
				}
				if status != http.StatusOK || body != usr.name+" "+strconv.Itoa(want) {
					r.Anomalies++
				}
				// Resynchronise with what the service now shows.
				if name == usr.name && convErr == nil {
					want = v
				}
				n = want
			}
			finals[u] = final{name: usr.name, acked: n, ck: usr.cookieOf(home.URL)}
			mu.Lock()
			res.Requests += r.Requests
			res.Anomalies += r.Anomalies
			res.Failed += r.Failed
			res.LoggedOut += r.LoggedOut
			res.Stale += r.Stale
			lat = append(lat, mine...)
			mu.Unlock()
		}()
	}
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		return res, err
	}
	for _, rd := range readers {
		res.Fallbacks += Sum(ctx, rd, "regiondb.session.cross_region_fallbacks")
	}
	res.Writes = e.Count[Regions[0]].Writes.Load() + e.Count[Regions[1]].Writes.Load() - w0
	if res.Requests > 0 {
		res.AnomalyRate = float64(res.Anomalies) / float64(res.Requests)
	}
	slices.Sort(lat)
	if len(lat) > 0 {
		res.P99MS = float64(lat[len(lat)*99/100].Microseconds()) / 1000
	}
	// After replication settled, every acknowledged increment must be in
	// the session, in both regions.
	if err := pause(ctx, 3*time.Second); err != nil {
		return res, err
	}
	for _, f := range finals {
		if f.ck == nil {
			continue
		}
		for _, srv := range servers {
			status, body, _, err := doWith(ctx, tr, http.MethodGet, srv.URL+"/read", f.ck)
			if err != nil {
				return res, err
			}
			name, got, _ := strings.Cut(body, " ")
			v, _ := strconv.Atoi(got)
			if status != http.StatusOK || name != f.name {
				res.LostUpdates += max(f.acked, 1)
			} else if v < f.acked {
				res.LostUpdates += f.acked - v
			}
		}
	}
	return res, nil
}

// CrossWritesResult is the outcome of [CrossRegionWrites].
type CrossWritesResult struct {
	Trials       int `json:"trials"`
	Acknowledged int `json:"acknowledged"` // trials whose two changes were both answered 200
	Converged    int `json:"converged"`    // both regions show the same session afterwards
	BothKept     int `json:"both_kept"`    // both acknowledged changes survived
	OneKept      int `json:"one_kept"`     // last writer wins kept one change: the other is lost
	// SameKeyConverged counts trials of the same-key variant (each region
	// sets the one key to its own value) that end with one value in both.
	SameKeyConverged int `json:"same_key_converged"`
}

// CrossRegionWrites logs a user in, waits until the session replicated,
// and then changes it in both regions at once (a different key each, both
// requests based on the same version), and in a second round the same key
// to different values. The conditional version check sees only its own
// region's table, so both saves succeed; after replication settles the
// regions must converge, and last writer wins keeps only one item: one of
// the two acknowledged changes is lost. The result says how often.
func CrossRegionWrites(ctx context.Context, e *Env, trials int) (CrossWritesResult, error) {
	res := CrossWritesResult{Trials: trials}
	var servers [2]*server
	for i, r := range Regions {
		m, err := session.New(e.Config(r, true))
		if err != nil {
			return res, err
		}
		servers[i] = newServer(m)
		defer servers[i].Close()
	}
	tr := &http.Transport{}
	defer tr.CloseIdleConnections()
	for trial := range trials {
		usr := newUser("cross"+strconv.Itoa(trial), tr)
		if status, body, err := usr.do(ctx, http.MethodPost, servers[0].URL, "/login", url.Values{"user": {usr.name}}); err != nil || status != http.StatusOK {
			return res, fmt.Errorf("login: %d %q %v", status, body, err)
		}
		ck := usr.cookieOf(servers[0].URL)
		if err := e.waitItem(ctx, Regions[1], ck); err != nil {
			return res, err
		}
		for round, keys := range [2][2]string{{"a", "b"}, {"k", "k"}} {
			bar := newBarrier(2)
			for _, s := range servers {
				s.app.loaded = func() { bar.wait(ctx) }
			}
			var wg sync.WaitGroup
			var ok [2]bool
			for i, s := range servers {
				wg.Add(1)
				go func() {
					defer wg.Done()
					status, _, _, err := doWith(ctx, tr, http.MethodPost, s.URL+"/put?key="+keys[i]+"&value=r"+strconv.Itoa(i), ck)
					ok[i] = err == nil && status == http.StatusOK
				}()
			}
			wg.Wait()
			for _, s := range servers {
				s.app.loaded = nil
			}
			if err := pause(ctx, 3*time.Second); err != nil {
				return res, err
			}
			var seen [2][2]string
			for i, s := range servers {
				for j, k := range keys {
					_, v, _, err := doWith(ctx, tr, http.MethodGet, s.URL+"/get?key="+k, ck)
					if err != nil {
						return res, err
					}
					seen[i][j] = v
				}
			}
			if round == 1 {
				if seen[0] == seen[1] && (seen[0][0] == "r0" || seen[0][0] == "r1") {
					res.SameKeyConverged++
				}
				continue
			}
			if ok[0] && ok[1] {
				res.Acknowledged++
			}
			if seen[0] == seen[1] {
				res.Converged++
			}
			switch kept := btoi(seen[0][0] == "r0") + btoi(seen[0][1] == "r1"); kept {
			case 2:
				res.BothKept++
			case 1:
				res.OneKept++
			}
		}
	}
	return res, nil
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

// ConcurrentResult is the outcome of [Concurrent] and [ConcurrentNaive].
type ConcurrentResult struct {
	Requests     int   `json:"requests"`
	Acknowledged int   `json:"acknowledged"` // answered 200: the change is claimed stored
	Lost         int   `json:"lost"`         // acknowledged changes missing afterwards
	Conflicts    int64 `json:"conflicts"`
}

// Concurrent sends n requests at once that each set a different key of the
// same user's session; every handler waits until all n have read the
// session before changing it, so their saves race on the same version.
func Concurrent(ctx context.Context, e *Env, n int) (ConcurrentResult, error) {
	res := ConcurrentResult{Requests: n}
	rd := sdkmetric.NewManualReader()
	cfg := e.Config(Regions[0], false)
	cfg.MeterProvider = sdkmetric.NewMeterProvider(sdkmetric.WithReader(rd))
	cfg.MaxConflictRetries = n
	m, err := session.New(cfg)
	if err != nil {
		return res, err
	}
	srv := newServer(m)
	defer srv.Close()
	tr := &http.Transport{MaxIdleConnsPerHost: n}
	defer tr.CloseIdleConnections()
	usr := newUser("concurrent", tr)
	if status, body, err := usr.do(ctx, http.MethodPost, srv.URL, "/login", url.Values{"user": {usr.name}}); err != nil || status != http.StatusOK {
		return res, fmt.Errorf("login: %d %q %v", status, body, err)
	}
	bar := newBarrier(n)
	srv.app.loaded = func() { bar.wait(ctx) }
	acked := make([]bool, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			// The same cookie for all: copy the jar's cookie onto a
			// jar-less client so responses do not race on the jar.
			c := &http.Client{Transport: tr}
			req, _ := http.NewRequestWithContext(ctx, http.MethodPost, srv.URL+"/put?key=k"+strconv.Itoa(i)+"&value=v"+strconv.Itoa(i), nil)
			for _, ck := range usr.c.Jar.Cookies(req.URL) {
				req.AddCookie(ck)
			}
			resp, err := c.Do(req)
			if err == nil {
				acked[i] = resp.StatusCode == http.StatusOK
				resp.Body.Close()
			}
		}()
	}
	wg.Wait()
	srv.app.loaded = nil
	for i := range n {
		if !acked[i] {
			continue
		}
		res.Acknowledged++
		_, body, err := usr.do(ctx, http.MethodGet, srv.URL, "/get?key=k"+strconv.Itoa(i), nil)
		if err != nil {
			return res, err
		}
		if body != "v"+strconv.Itoa(i) {
			res.Lost++
		}
	}
	res.Conflicts = Sum(ctx, rd, "regiondb.session.conflicts")
	return res, nil
}

// ConcurrentNaive is the control of [Concurrent]: the same n racing changes
// made as a blind read-modify-write of the whole session through the scs
// store interface (FindCtx, change, CommitCtx), as scs does.
func ConcurrentNaive(ctx context.Context, e *Env, n int) (ConcurrentResult, error) {
	res := ConcurrentResult{Requests: n}
	st, err := session.NewStore(e.Config(Regions[0], false))
	if err != nil {
		return res, err
	}
	const token = "naive-session-token"
	exp := time.Now().Add(time.Hour)
	if err := st.CommitCtx(ctx, token, []byte(`{}`), exp); err != nil {
		return res, err
	}
	bar := newBarrier(n)
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			b, _, err := st.FindCtx(ctx, token)
			if err != nil {
				errs <- err
				bar.wait(ctx)
				return
			}
			vals := map[string]string{}
			_ = json.Unmarshal(b, &vals)
			vals["k"+strconv.Itoa(i)] = "v" + strconv.Itoa(i)
			b, _ = json.Marshal(vals)
			bar.wait(ctx)
			if err := st.CommitCtx(ctx, token, b, exp); err != nil {
				errs <- err
			}
		}()
	}
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		return res, err
	}
	res.Acknowledged = n
	b, found, err := st.FindCtx(ctx, token)
	if err != nil || !found {
		return res, errors.Join(errors.New("sessionharness: naive session vanished"), err)
	}
	vals := map[string]string{}
	_ = json.Unmarshal(b, &vals)
	for i := range n {
		if vals["k"+strconv.Itoa(i)] != "v"+strconv.Itoa(i) {
			res.Lost++
		}
	}
	return res, nil
}

// ReadOnlyResult is the outcome of [ReadOnly].
type ReadOnlyResult struct {
	Users             int     `json:"users"`
	Requests          int64   `json:"readonly_requests"`
	Writes            int64   `json:"writes"`
	WritesPerRequest  float64 `json:"writes_per_readonly_request"`
	ReadsPerRequest   float64 `json:"reads_per_readonly_request"`
	UntouchedRequests int64   `json:"untouched_requests"`
	UntouchedReads    int64   `json:"untouched_reads"` // must be 0: lazy load
}

// ReadOnly logs users in, then runs rounds in which every user sends one
// read-only request (all users at once) and one request that never touches
// the session, after which the (fake) clock advances by think. It counts
// the DynamoDB calls after the logins: at steady state a user's session is
// written once per touch interval, however many requests read it.
func ReadOnly(ctx context.Context, e *Env, users, rounds int, think, touch time.Duration) (ReadOnlyResult, error) {
	res := ReadOnlyResult{Users: users}
	clock := NewClock(time.Now())
	cfg := e.Config(Regions[0], false)
	//lint:ignore SA1019 the module keeps its fake clock for tests against the real dynalite (synctest cannot drive real network I/O)
	cfg.Now = clock.Now
	cfg.TouchInterval = touch
	cfg.IdleTimeout = max(time.Hour, 4*touch)
	m, err := session.New(cfg)
	if err != nil {
		return res, err
	}
	srv := newServer(m)
	defer srv.Close()
	tr := &http.Transport{MaxIdleConnsPerHost: users}
	defer tr.CloseIdleConnections()
	us := make([]*user, users)
	for i := range us {
		us[i] = newUser("reader"+strconv.Itoa(i), tr)
		if status, body, err := us[i].do(ctx, http.MethodPost, srv.URL, "/login", url.Values{"user": {us[i].name}}); err != nil || status != http.StatusOK {
			return res, fmt.Errorf("login: %d %q %v", status, body, err)
		}
	}
	cnt := e.Count[Regions[0]]
	r0, w0 := cnt.Reads.Load(), cnt.Writes.Load()
	var untouchedReads int64
	for range rounds {
		var wg sync.WaitGroup
		errs := make(chan error, users)
		for _, u := range us {
			wg.Add(1)
			go func() {
				defer wg.Done()
				status, body, err := u.do(ctx, http.MethodGet, srv.URL, "/read", nil)
				if err == nil && (status != http.StatusOK || body[:len(u.name)] != u.name) {
					err = fmt.Errorf("read: %d %q", status, body)
				}
				if err != nil {
					errs <- err
				}
			}()
		}
		wg.Wait()
		close(errs)
		if err := <-errs; err != nil {
			return res, err
		}
		res.Requests += int64(users)
		// A request that does not use the session: no DynamoDB call.
		before := cnt.Reads.Load()
		if _, _, err := us[0].do(ctx, http.MethodGet, srv.URL, "/static", nil); err != nil {
			return res, err
		}
		untouchedReads += cnt.Reads.Load() - before
		res.UntouchedRequests++
		clock.Advance(think)
	}
	res.Writes = cnt.Writes.Load() - w0
	res.WritesPerRequest = float64(res.Writes) / float64(res.Requests)
	res.ReadsPerRequest = float64(cnt.Reads.Load()-r0-untouchedReads) / float64(res.Requests)
	res.UntouchedReads = untouchedReads
	return res, nil
}
