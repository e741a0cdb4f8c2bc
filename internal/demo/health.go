package demo

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"
)

// healthEvery is how often the driver asks each instance's /healthz.
const healthEvery = 500 * time.Millisecond

// outage is a backend one instance saw down, from its /healthz.
type outage struct {
	Region  string        `json:"region"` // the instance's region
	Backend string        `json:"backend"`
	From    time.Duration `json:"from_ms"`
	To      time.Duration `json:"to_ms"` // -1: still down at the end
	Error   string        `json:"error"`
}

func (o outage) String() string {
	to := "the end"
	if o.To >= 0 {
		to = fmt.Sprintf("%.2f s", o.To.Seconds())
	}
	return fmt.Sprintf("%s down from %.2f s to %s (%s)", o.Backend, o.From.Seconds(), to, o.Error)
}

// healthLog records the outages the instances reported.
type healthLog struct {
	mu      sync.Mutex         // protects the fields below
	open    map[string]*outage // region + "\x00" + backend -> ongoing outage
	outages []*outage
}

// seen records one /healthz answer (nil states and a non-nil err: the
// instance did not answer).
func (h *healthLog) seen(region string, at time.Duration, states map[string]backendHealth, err error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	down := map[string]string{}
	if err != nil {
		down["photoalbum instance"] = err.Error()
	}
	for name, st := range states {
		if st.State != "ok" {
			down[name] = st.Error
		}
	}
	for key, o := range h.open {
		if o.Region != region {
			continue
		}
		if _, still := down[o.Backend]; !still {
			o.To = at
			delete(h.open, key)
		}
	}
	for name, msg := range down {
		key := region + "\x00" + name
		if _, ok := h.open[key]; ok {
			continue
		}
		o := &outage{Region: region, Backend: name, From: at, To: -1, Error: oneLine(msg)}
		h.open[key] = o
		h.outages = append(h.outages, o)
	}
}

// list returns the outages the region's instance saw (every region's for "").
func (h *healthLog) list(region string) []outage {
	h.mu.Lock()
	defer h.mu.Unlock()
	var out []outage
	for _, o := range h.outages {
		if region == "" || o.Region == region {
			out = append(out, *o)
		}
	}
	slices.SortFunc(out, func(a, b outage) int { return int(a.From - b.From) })
	return out
}

func oneLine(s string) string {
	s = strings.Join(strings.Fields(s), " ")
	if len(s) > 240 {
		s = s[:240] + "..."
	}
	return s
}

// backendHealth is one backend's entry in photoalbum's /healthz.
type backendHealth struct {
	State string `json:"state"`
	Error string `json:"error"`
}

// watchHealth asks every instance's /healthz every healthEvery until the
// returned stop is called, which waits for the watcher to end.
func (d *driver) watchHealth(ctx context.Context) (stop func()) {
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	for region, u := range d.urls {
		wg.Go(func() {
			t := time.NewTicker(healthEvery)
			defer t.Stop()
			for {
				states, err := d.healthz(ctx, u)
				if ctx.Err() != nil {
					return
				}
				d.health.seen(region, time.Since(d.rec.start), states, err)
				select {
				case <-ctx.Done():
					return
				case <-t.C:
				}
			}
		})
	}
	return func() {
		cancel()
		wg.Wait()
	}
}

// healthz returns the backends' states an instance reports.
func (d *driver) healthz(ctx context.Context, base string) (map[string]backendHealth, error) {
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/healthz", nil)
	if err != nil {
		return nil, err
	}
	resp, err := d.hc.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	// 503 means degraded: the body still says which backend is down.
	var h struct {
		State map[string]backendHealth `json:"state"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&h); err != nil {
		return nil, fmt.Errorf("/healthz answered %s: %w", resp.Status, err)
	}
	return h.State, nil
}
