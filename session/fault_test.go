package session_test

import (
	"context"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	sdkmetric "go.opentelemetry.io/otel/sdk/metric"

	"github.com/regiondb/regiondb/internal/sessionharness"
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
		// dynalite keeps its tables in memory: create the table again.
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
