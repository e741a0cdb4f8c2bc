package session_test

import (
	"context"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	sdkmetric "go.opentelemetry.io/otel/sdk/metric"

	sessionharness "github.com/regiondb/regiondb/internal/harness/session"
	"github.com/regiondb/regiondb/session"
)

// countingTransport counts HTTP attempts.
type countingTransport struct {
	n  atomic.Int64
	tr *http.Transport
}

func (c *countingTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	c.n.Add(1)
	return c.tr.RoundTrip(r)
}

// TestStoreUnavailable stops the local dynalite: the SDK retries each call
// a bounded number of times, then the request fails with 503 (the default)
// or continues without a session (counted); after the restart sessions work
// again.
func TestStoreUnavailable(t *testing.T) {
	e := openEnv(t)
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Second)
	defer cancel()
	ct := &countingTransport{tr: &http.Transport{}}
	t.Cleanup(ct.tr.CloseIdleConnections)
	client := sessionharness.NewClient(e.Stack, tokyo, ct)
	newManager := func(cont bool) (*session.Manager, *sdkmetric.ManualReader) {
		rd := sdkmetric.NewManualReader()
		cfg := session.Config{Table: e.Table, Region: tokyo, Clients: map[string]session.Client{tokyo: client},
			InsecureCookie: true, ContinueWithoutSession: cont, MaxBackoff: 20 * time.Millisecond,
			MeterProvider: sdkmetric.NewMeterProvider(sdkmetric.WithReader(rd))}
		m, err := session.New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		return m, rd
	}
	failing, _ := newManager(false)
	continuing, rd := newManager(true)
	srvFail, srvCont := testApp(t, failing), testApp(t, continuing)
	b := newBrowser(t)
	resp, _ := b.do(http.MethodPost, srvFail.URL+"/put?key=user&value=ann")
	ck := resp.Cookies()[0]

	restore := func() {
		if err := e.Stack.Start(ctx, "ddb1"); err != nil {
			t.Fatalf("restart ddb1: %v", err)
		}
		// The stack keeps dynalite's data on disk; re-creating the table is a
		// no-op then, and needed on a stack that does not.
		if err := continuing.Store(tokyo).CreateTable(ctx); err != nil {
			t.Fatalf("re-create the table: %v", err)
		}
	}
	if err := e.Stack.Stop(ctx, "ddb1"); err != nil {
		t.Fatal(err)
	}
	restored := false
	t.Cleanup(func() {
		if !restored {
			restore()
		}
	})

	before := ct.n.Load()
	resp, _ = b.do(http.MethodGet, srvFail.URL+"/get?key=user", ck)
	if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") == "" {
		t.Fatalf("fail policy: %d, Retry-After %q", resp.StatusCode, resp.Header.Get("Retry-After"))
	}
	if n := ct.n.Load() - before; n != session.DefaultMaxAttempts {
		t.Fatalf("%d attempts, want the SDK retryer's bound %d", n, session.DefaultMaxAttempts)
	}
	resp, body := b.do(http.MethodGet, srvCont.URL+"/get?key=user", ck)
	if resp.StatusCode != http.StatusOK || body != "" {
		t.Fatalf("continue policy: %d %q", resp.StatusCode, body)
	}
	if n := sessionharness.Sum(ctx, rd, "regiondb.session.unavailable"); n != 1 {
		t.Fatalf("unavailable requests counted: %d", n)
	}
	// A request that never uses the session is unaffected.
	if resp, _ := b.do(http.MethodGet, srvFail.URL+"/static", ck); resp.StatusCode != http.StatusOK {
		t.Fatalf("untouched request: %d", resp.StatusCode)
	}

	restore()
	restored = true
	resp, _ = b.do(http.MethodPost, srvFail.URL+"/put?key=user&value=bob")
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("after restart: %d", resp.StatusCode)
	}
	if _, body := b.do(http.MethodGet, srvFail.URL+"/get?key=user", resp.Cookies()[0]); body != "bob" {
		t.Fatalf("after restart: %q", body)
	}
}

// TestRegionalOutage (issue 13): us-east-1's table is down (its dynalite
// stopped) for a third of a run of mixed session traffic. With Tokyo's
// client the Manager serves from Tokyo's replica and returns to its own
// table when it is back: no user logged out, no acknowledged change lost,
// no destroyed session back, at most 1 % of requests failed. The control
// (no other region's client) fails every session request of the outage.
func TestRegionalOutage(t *testing.T) {
	e := openEnv(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	plan := sessionharness.OutagePlan{Users: 8, Total: 9 * time.Second, DownAt: 3 * time.Second, DownFor: 3 * time.Second, Interval: 100 * time.Millisecond}
	res, err := sessionharness.Outage(ctx, e, true, plan)
	if err != nil {
		t.Fatal(err)
	}
	ctrl, err := sessionharness.Outage(ctx, e, false, plan)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("with the fallback: %+v; without: %+v", res, ctrl)
	if res.LoggedOut != 0 || res.LostUpdates != 0 || res.Resurrected != 0 || res.FailedRate > 0.01 || res.Openings == 0 || res.FailoverOps == 0 {
		t.Errorf("with the fallback: %+v; want nobody logged out, nothing lost or resurrected, <= 1 %% failed, the breaker opened", res)
	}
	if ctrl.Failed < ctrl.DuringOutage/4 {
		t.Errorf("control: %d failed of %d requests during the outage: the harness cannot see the outage", ctrl.Failed, ctrl.DuringOutage)
	}
}
