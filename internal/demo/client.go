package demo

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"sync"
	"time"
)

// sample is one request as the driver saw it.
type sample struct {
	At       time.Duration // since the scenario started
	Region   string
	Endpoint string // method and route pattern, e.g. "GET /albums/{id}"
	Status   int    // 0 when the request failed without a response
	Dur      time.Duration
}

// recorder collects the samples of every client.
type recorder struct {
	start time.Time

	mu      sync.Mutex // protects samples
	samples []sample
}

func (r *recorder) add(s sample) {
	r.mu.Lock()
	r.samples = append(r.samples, s)
	r.mu.Unlock()
}

func (r *recorder) snapshot() []sample {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]sample(nil), r.samples...)
}

// client is one simulated person: a browser with a cookie jar shared by
// every region (both regions serve the same site; geo-DNS picks the region),
// so the session and read-your-writes cookies follow the person.
type client struct {
	name  string
	hc    *http.Client
	urls  map[string]string // region -> base URL
	rec   *recorder
	mu    sync.Mutex // protects jar
	jar   map[string]*http.Cookie
	extra http.Header // headers sent on every request
}

func newClient(name string, hc *http.Client, urls map[string]string, rec *recorder) *client {
	return &client{name: name, hc: hc, urls: urls, rec: rec, jar: map[string]*http.Cookie{}}
}

// response is what do returns: the status (0 for a transport error) and body.
type response struct {
	status int
	body   []byte
	err    error
	region string
}

func (r response) ok() bool { return r.err == nil && r.status >= 200 && r.status < 300 }

func (r response) String() string {
	if r.err != nil {
		return r.err.Error()
	}
	b := r.body
	if len(b) > 200 {
		b = b[:200]
	}
	return fmt.Sprintf("%d %s", r.status, bytes.TrimSpace(b))
}

// decode unmarshals the body into v.
func (r response) decode(v any) error { return json.Unmarshal(r.body, v) }

// do sends one request to the region's instance and records it under endpoint.
func (c *client) do(ctx context.Context, region, method, path, endpoint string, in any) response {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return response{err: err, region: region}
		}
		body = bytes.NewReader(b)
	}
	rctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(rctx, method, c.urls[region]+path, body)
	if err != nil {
		return response{err: err, region: region}
	}
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	c.mu.Lock()
	for _, ck := range c.jar {
		req.AddCookie(&http.Cookie{Name: ck.Name, Value: ck.Value})
	}
	c.mu.Unlock()
	start := time.Now()
	resp, err := c.hc.Do(req)
	var out response
	out.region = region
	if err != nil {
		out.err = err
	} else {
		out.status = resp.StatusCode
		out.body, out.err = io.ReadAll(resp.Body)
		resp.Body.Close()
		c.mu.Lock()
		for _, ck := range resp.Cookies() {
			if ck.MaxAge < 0 || (!ck.Expires.IsZero() && ck.Expires.Before(time.Now())) {
				delete(c.jar, ck.Name)
			} else {
				c.jar[ck.Name] = ck
			}
		}
		c.mu.Unlock()
	}
	if ctx.Err() == nil {
		c.rec.add(sample{At: start.Sub(c.rec.start), Region: region, Endpoint: endpoint, Status: out.status, Dur: time.Since(start)})
	}
	return out
}
