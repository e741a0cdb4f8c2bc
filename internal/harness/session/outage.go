package session

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	sdkmetric "go.opentelemetry.io/otel/sdk/metric"

	"github.com/regiondb/regiondb/internal/testserver"
	"github.com/regiondb/regiondb/session"
)

// OutageResult is the outcome of [Outage]: the keys first.
type OutageResult struct {
	Requests    int     `json:"requests"`
	Failed      int     `json:"failed"`       // answered other than 200
	LoggedOut   int     `json:"logged_out"`   // a logged-in user's session came back empty
	LostUpdates int     `json:"lost_updates"` // acknowledged increments missing after replication settled
	Resurrected int     `json:"resurrected"`  // logged-out cookies that named a live session again
	P99MS       float64 `json:"p99_ms"`

	FailedRate       float64 `json:"failed_rate"`   // Failed / Requests
	StaleReads       int     `json:"stale_reads"`   // a session shown older than the user's last acknowledged change
	DuringOutage     int     `json:"during_outage"` // requests sent while the local table was down
	FailoverOps      int64   `json:"failover_calls"`
	Openings         int64   `json:"breaker_openings"`
	CrossRegionP99MS float64 `json:"cross_region_read_p99_ms,omitempty"`
	Logouts          int     `json:"logouts"`
}

// OutagePlan sets the length of an [Outage] run and of its outage.
type OutagePlan struct {
	Users    int
	Total    time.Duration // the whole run
	DownAt   time.Duration // when the local dynalite is stopped
	DownFor  time.Duration // how long it stays down
	Interval time.Duration // between two requests of one user
}

// Outage runs mixed session traffic against the us-east-1 service: users
// log in, then each sends a request every Interval (with jitter): one in
// five increments a counter in the session, one in five touches no
// session, the others read it, and every 25th logs out and in again,
// checking at once that the old cookie names no session. At DownAt,
// us-east-1's dynalite is stopped (its table unavailable: connection
// refused), and DownFor later it is started again (its data kept). After
// the run and once replication settled, every user's counter is read in
// both regions: a count below the user's acknowledged increments is a lost
// update; every logged-out cookie must still name no session.
//
// With fallback, the us-east-1 Manager has Tokyo's client as well (it
// serves from Tokyo's replica while its table is down); without, only its
// own (the control).
func Outage(ctx context.Context, e *Env, fallback bool, plan OutagePlan) (OutageResult, error) {
	var res OutageResult
	local := Regions[1] // us-east-1
	rd := sdkmetric.NewManualReader()
	cfg := e.Config(local, fallback)
	cfg.MeterProvider = sdkmetric.NewMeterProvider(sdkmetric.WithReader(rd))
	cfg.MaxBackoff = 50 * time.Millisecond
	cfg.CallTimeout = session.DefaultCallTimeout
	m, err := session.New(cfg)
	if err != nil {
		return res, err
	}
	srv := newServer(m)
	srv.region = local
	defer srv.Close()
	// Tokyo's service, for the final checks only.
	tm, err := session.New(e.Config(Regions[0], true))
	if err != nil {
		return res, err
	}
	tokyo := newServer(tm)
	tokyo.region = Regions[0]
	defer tokyo.Close()

	tr := &http.Transport{MaxIdleConnsPerHost: plan.Users}
	defer tr.CloseIdleConnections()
	start := time.Now()
	downAt, upAt := start.Add(plan.DownAt), start.Add(plan.DownAt+plan.DownFor)
	end := start.Add(plan.Total)
	faultErr := make(chan error, 1)
	var down sync.WaitGroup
	down.Add(1)
	go func() { // the outage
		defer down.Done()
		name := dynamoName(local)
		if err := pause(ctx, time.Until(downAt)); err != nil {
			faultErr <- err
			return
		}
		if err := e.Stack.Stop(ctx, name); err != nil {
			faultErr <- fmt.Errorf("stop %s: %w", name, err)
			return
		}
		if err := pause(ctx, time.Until(upAt)); err != nil {
			faultErr <- err
			_ = e.Stack.Start(context.Background(), name)
			return
		}
		if err := e.Stack.Start(ctx, name); err != nil {
			faultErr <- fmt.Errorf("start %s: %w", name, err)
		}
	}()

	type outcome struct {
		res       OutageResult
		latencies []time.Duration
		final     *http.Cookie
		acked     int
		name      string
		old       []*http.Cookie
	}
	outs := make([]outcome, plan.Users)
	var wg sync.WaitGroup
	errs := make(chan error, plan.Users)
	for u := range plan.Users {
		wg.Add(1)
		go func() {
			defer wg.Done()
			o := &outs[u]
			usr := newUser("u"+strconv.Itoa(u), tr)
			o.name = usr.name
			rng := rand.New(rand.NewPCG(uint64(u), 7))
			n, loggedIn := 0, false
			send := func(method, path string, form url.Values) (int, string, bool) {
				t0 := time.Now()
				status, body, err := usr.do(ctx, method, srv.URL, path, form)
				if err != nil {
					errs <- err
					return 0, "", false
				}
				o.latencies = append(o.latencies, time.Since(t0))
				o.res.Requests++
				if !t0.Before(downAt) && t0.Before(upAt) {
					o.res.DuringOutage++
				}
				if status != http.StatusOK {
					o.res.Failed++
				}
				return status, body, true
			}
			for i := 0; time.Now().Before(end); i++ {
				if err := pause(ctx, plan.Interval/2+time.Duration(rng.Int64N(int64(plan.Interval)))); err != nil {
					return
				}
				if !loggedIn {
					status, _, ok := send(http.MethodPost, "/login", url.Values{"user": {usr.name}})
					if !ok {
						return
					}
					if status == http.StatusOK {
						n, loggedIn = 0, true
					}
					continue
				}
				var status int
				var body string
				var ok bool
				want := n
				switch {
				case i%25 == 24:
					old := usr.cookieOf(srv.URL)
					if status, _, ok = send(http.MethodPost, "/logout", nil); !ok {
						return
					}
					if status == http.StatusOK {
						o.res.Logouts++
						o.old = append(o.old, old)
						loggedIn = false
						st, b, _, err := doWith(ctx, tr, http.MethodGet, srv.URL+"/read", old)
						if err != nil {
							errs <- err
							return
						}
						if st == http.StatusOK && !strings.HasPrefix(b, " ") {
							o.res.Resurrected++
						}
					}
					continue
				case i%5 == 0:
					want = n + 1
					status, body, ok = send(http.MethodPost, "/incr", url.Values{})
				case i%5 == 3:
					if _, _, ok = send(http.MethodGet, "/static", nil); !ok {
						return
					}
					continue
				default:
					status, body, ok = send(http.MethodGet, "/read", nil)
				}
				if !ok {
					return
				}
				if status != http.StatusOK {
					continue
				}
				name, got, _ := strings.Cut(body, " ")
				if name != usr.name {
					o.res.LoggedOut++
					loggedIn = false
					continue
				}
				v, _ := strconv.Atoi(got)
				if v < want {
					o.res.StaleReads++
				}
				n = v // above want: an increment reported as failed was applied
			}
			o.acked = n
			if loggedIn {
				o.final = usr.cookieOf(srv.URL)
			}
		}()
	}
	wg.Wait()
	down.Wait()
	close(errs)
	if err := <-errs; err != nil {
		return res, err
	}
	select {
	case err := <-faultErr:
		return res, err
	default:
	}
	// Let replication settle, then judge every user in both regions.
	if err := pause(ctx, 3*time.Second); err != nil {
		return res, err
	}
	var lat []time.Duration
	for _, o := range outs {
		r := o.res
		res.Requests += r.Requests
		res.Failed += r.Failed
		res.LoggedOut += r.LoggedOut
		res.Resurrected += r.Resurrected
		res.StaleReads += r.StaleReads
		res.DuringOutage += r.DuringOutage
		res.Logouts += r.Logouts
		lat = append(lat, o.latencies...)
		if o.final != nil {
			for _, s := range []*server{srv, tokyo} {
				status, body, _, err := doWith(ctx, tr, http.MethodGet, s.URL+"/read", o.final)
				if err != nil {
					return res, err
				}
				name, got, _ := strings.Cut(body, " ")
				v, _ := strconv.Atoi(got)
				if status != http.StatusOK || name != o.name {
					res.LostUpdates += max(o.acked, 1) // the whole session
				} else if v < o.acked {
					res.LostUpdates += o.acked - v
				}
			}
		}
		for _, ck := range o.old {
			for _, s := range []*server{srv, tokyo} {
				status, body, _, err := doWith(ctx, tr, http.MethodGet, s.URL+"/read", ck)
				if err != nil {
					return res, err
				}
				if status == http.StatusOK && !strings.HasPrefix(body, " ") {
					res.Resurrected++
				}
			}
		}
	}
	slices.Sort(lat)
	if len(lat) > 0 {
		res.P99MS = float64(lat[len(lat)*99/100].Microseconds()) / 1000
	}
	if res.Requests > 0 {
		res.FailedRate = float64(res.Failed) / float64(res.Requests)
	}
	res.FailoverOps = Sum(ctx, rd, "regiondb.session.failover.calls")
	res.Openings = Sum(ctx, rd, "regiondb.session.failover.openings")
	res.CrossRegionP99MS = HistQuantileMS(ctx, rd, "regiondb.session.cross_region.duration", 0.99)
	return res, nil
}

// dynamoName is the stack's name of region's dynalite.
func dynamoName(region string) string {
	if region == testserver.PrimaryRegion {
		return "ddb1"
	}
	return "ddb2"
}
