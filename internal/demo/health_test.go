package demo

import (
	"context"
	"encoding/json"
	"net/http"
	"path/filepath"
	"testing"
	"time"

	"github.com/regiondb/regiondb/internal/testserver"
)

// TestHealthzReportsBackends runs a photoalbum instance on the stack and
// takes its region's DynamoDB away: /healthz turns 503 "degraded" naming that
// backend, and "ok" again once it is back. (Before issue 13 it was a static
// "ok".)
func TestHealthzReportsBackends(t *testing.T) {
	s := testserver.Require(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	dir := t.TempDir()
	bin, err := Build(ctx, "./examples/photoalbum", dir)
	if err != nil {
		t.Fatal(err)
	}
	// Tokyo's instance creates the schema and Tokyo's session table, N.
	// Virginia's its own table: then every backend exists.
	d := &driver{s: s, cfg: Config{OutDir: dir}, rec: &recorder{start: time.Now()}}
	var inst *instance
	for _, region := range []string{tokyo, virginia} {
		i, err := startInstance(ctx, region, bin, d.instanceArgs(region), filepath.Join(dir, "photoalbum-"+region+".log"))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(i.stop)
		if region == tokyo {
			if err := d.waitSchema(ctx); err != nil {
				t.Fatal(err)
			}
		}
		inst = i
	}
	t.Cleanup(func() {
		if err := s.Start(context.Background(), "ddb2"); err != nil {
			t.Errorf("restart ddb2: %v", err)
		}
	})
	hc := &http.Client{Timeout: 10 * time.Second}
	defer hc.CloseIdleConnections()
	get := func() (int, string, map[string]backendHealth) {
		t.Helper()
		resp, err := hc.Get(inst.url + "/healthz")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var h struct {
			Status string                   `json:"status"`
			State  map[string]backendHealth `json:"state"`
		}
		if err := json.NewDecoder(resp.Body).Decode(&h); err != nil {
			t.Fatal(err)
		}
		return resp.StatusCode, h.Status, h.State
	}
	backends := []string{"database", "dynamodb " + tokyo, "dynamodb " + virginia, "memcached " + tokyo, "memcached " + virginia}
	code, status, st := get()
	if code != http.StatusOK || status != "ok" {
		t.Fatalf("healthy stack: %d %q %v", code, status, st)
	}
	for _, b := range backends {
		if st[b].State != "ok" {
			t.Fatalf("backend %q: %+v, want ok (all: %v)", b, st[b], st)
		}
	}

	if err := s.Stop(ctx, "ddb2"); err != nil {
		t.Fatal(err)
	}
	code, status, st = get()
	if code != http.StatusServiceUnavailable || status != "degraded" {
		t.Fatalf("with ddb2 stopped: %d %q, want 503 degraded", code, status)
	}
	if got := st["dynamodb "+virginia]; got.State != "down" || got.Error == "" {
		t.Fatalf("dynamodb %s with ddb2 stopped: %+v, want down with the error", virginia, got)
	}
	for _, b := range backends {
		if b != "dynamodb "+virginia && st[b].State != "ok" {
			t.Fatalf("backend %q down with only ddb2 stopped: %+v", b, st[b])
		}
	}

	if err := s.Start(ctx, "ddb2"); err != nil {
		t.Fatal(err)
	}
	if code, status, st := get(); code != http.StatusOK || status != "ok" {
		t.Fatalf("ddb2 back: %d %q %v", code, status, st)
	}
}
