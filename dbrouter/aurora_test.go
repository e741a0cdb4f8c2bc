package dbrouter

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/regiondb/regiondb/internal/aurorashim"
	"github.com/regiondb/regiondb/internal/testserver"
)

// Names of the fake Aurora Global Database the tests build on the stack.
const (
	auroraWriterEndpoint = "app.cluster-abc.ap-northeast-1.rds.test:3306"
	auroraReaderEndpoint = "app.cluster-ro-abc.ap-northeast-1.rds.test:3306"
)

// auroraStack makes the stack an Aurora Global Database through the shim
// (m1 = tokyo-a, r1 = tokyo-b, r2 = virginia-a) and returns a Config that
// names only the cluster endpoints and the instance host patterns.
func auroraStack(t *testing.T, s *testserver.Stack) (*aurorashim.Shim, Config) {
	t.Helper()
	failFreshStack(t, s)
	res := &aurorashim.Resolver{}
	res.Set(auroraWriterEndpoint, s.Addr("m1"))
	res.Set(auroraReaderEndpoint, s.Addr("r1"))
	res.Set("tokyo-a.abc.ap-northeast-1.rds.test:3306", s.Addr("m1"))
	res.Set("tokyo-b.abc.ap-northeast-1.rds.test:3306", s.Addr("r1"))
	res.Set("virginia-a.def.us-east-1.rds.test:3306", s.Addr("r2"))
	sh := &aurorashim.Shim{Stack: s, Resolver: res, Global: true, Instances: []aurorashim.Instance{
		{Server: "m1", ID: "tokyo-a", Region: testserver.PrimaryRegion},
		{Server: "r1", ID: "tokyo-b", Region: testserver.PrimaryRegion},
		{Server: "r2", ID: "virginia-a", Region: testserver.SecondaryRegion},
	}}
	if err := sh.Setup(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	cluster := func(name, addr string) Endpoint {
		dsn := strings.Replace(s.DSN("m1", testDB), s.Addr("m1"), addr, 1)
		c, err := sh.Connector(dsn)
		if err != nil {
			t.Fatal(err)
		}
		return Endpoint{Name: name, DSN: dsn, Connector: c, Region: testserver.PrimaryRegion}
	}
	cfg := stackConfig(t, s, testserver.PrimaryRegion)
	cfg.Aurora, cfg.Dialect, cfg.HeartbeatPeriod = true, DialectHeartbeat, 20*time.Millisecond
	cfg.Writer = cluster("cluster", auroraWriterEndpoint)
	cfg.Readers = []Endpoint{cluster("cluster-ro", auroraReaderEndpoint)}
	cfg.AuroraInstanceHosts = map[string]string{
		testserver.PrimaryRegion:   "?.abc.ap-northeast-1.rds.test",
		testserver.SecondaryRegion: "?.def.us-east-1.rds.test:3306",
	}
	cfg.NewConnector = sh.Connector
	cfg.MaxWait = 2 * time.Second
	return sh, cfg
}

func openAurora(t *testing.T, cfg Config) *Router {
	t.Helper()
	rt, err := OpenAurora(ctxT(t), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rt.Close() })
	return rt
}

func readerNames(rt *Router) []string {
	var out []string
	for _, r := range rt.rdrs() {
		out = append(out, r.spec.Name+"/"+r.spec.Region)
	}
	return out
}

// TestOpenAuroraTopology: instances come from the cluster's tables, one
// reader (one watermark) per instance, never the cluster reader endpoint.
func TestOpenAuroraTopology(t *testing.T) {
	s := testserver.Require(t)
	_, cfg := auroraStack(t, s)
	rt := openAurora(t, cfg)
	if w := rt.Stats().Writer; w != "tokyo-a" {
		t.Fatalf("writer %q, want tokyo-a", w)
	}
	if got := strings.Join(readerNames(rt), ","); got != "tokyo-b/ap-northeast-1,virginia-a/us-east-1" {
		t.Fatalf("readers %s", got)
	}
	ctx := NewContext(ctxT(t))
	k := key(t)
	if _, err := rt.ExecContext(ctx, "INSERT INTO kv (k, v) VALUES (?, 7)", k); err != nil {
		t.Fatal(err)
	}
	var v int
	if err := rt.QueryRowContext(ctx, "SELECT v FROM kv WHERE k = ?", k).Scan(&v); err != nil || v != 7 {
		t.Fatalf("read back: %d, %v", v, err)
	}
}

// TestOpenAuroraStaleWriterDNS: the cluster writer endpoint still leads to
// the former writer (stale DNS after a failover); OpenAurora notices and
// uses the instance the topology names.
func TestOpenAuroraStaleWriterDNS(t *testing.T) {
	s := testserver.Require(t)
	sh, cfg := auroraStack(t, s)
	ctx := ctxT(t)
	if err := sh.Failover(ctx, "r1"); err != nil {
		t.Fatal(err)
	}
	sh.Resolver.Repoint(auroraWriterEndpoint, 30*time.Second, s.Addr("r1"))
	if got := sh.Resolver.Lookup(auroraWriterEndpoint); got != s.Addr("m1") {
		t.Fatalf("resolver is not stale: %s", got)
	}
	var logs strings.Builder
	var mu sync.Mutex
	cfg.Logger = slog.New(slog.NewTextHandler(&auroraLogWriter{mu: &mu, w: &logs}, nil))
	rt := openAurora(t, cfg)
	mu.Lock()
	if !strings.Contains(logs.String(), "writer endpoint led to a reader") || !strings.Contains(logs.String(), "instance=tokyo-a") {
		t.Errorf("no stale-DNS warning in the log:\n%s", logs.String())
	}
	mu.Unlock()
	if w := rt.Stats().Writer; w != "tokyo-b" {
		t.Fatalf("writer %q, want tokyo-b", w)
	}
	if got := strings.Join(readerNames(rt), ","); got != "tokyo-a/ap-northeast-1,virginia-a/us-east-1" {
		t.Fatalf("readers %s", got)
	}
	if _, err := rt.ExecContext(NewContext(ctx), "INSERT INTO kv (k, v) VALUES (?, 1)", key(t)); err != nil {
		t.Fatal(err)
	}
}

// TestAuroraFailoverInstances: after a failover the writer search probes
// the instance endpoints (no DNS moves them) and settles on the promoted
// instance at once, while the cluster writer endpoint stays stale.
func TestAuroraFailoverInstances(t *testing.T) {
	s := testserver.Require(t)
	sh, cfg := auroraStack(t, s)
	cfg.AuroraTopologyInterval = 200 * time.Millisecond
	rt := openAurora(t, cfg)
	ctx := ctxT(t)
	if err := sh.Failover(ctx, "r1"); err != nil {
		t.Fatal(err)
	}
	sh.Resolver.Repoint(auroraWriterEndpoint, 30*time.Second, s.Addr("r1"))
	deadline := time.Now().Add(10 * time.Second)
	for {
		_, err := rt.ExecContext(NewContext(ctx), "INSERT INTO kv (k, v) VALUES (?, 2)", key(t))
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no write after the failover: %v", err)
		}
	}
	st := rt.Stats()
	if st.Writer != "tokyo-b" || st.Failovers != 1 {
		t.Fatalf("writer %q after %d failovers, want tokyo-b after 1", st.Writer, st.Failovers)
	}
	// The former writer, now a reader, joins the readers at the next
	// topology refresh.
	eventually(t, "tokyo-a to become a reader", func() bool {
		return strings.Contains(strings.Join(readerNames(rt), ","), "tokyo-a/ap-northeast-1")
	})
}

// TestOpenAuroraRegionWithoutPattern: an instance of a region without a
// host pattern gets no endpoint (and is logged), the rest work.
func TestOpenAuroraRegionWithoutPattern(t *testing.T) {
	s := testserver.Require(t)
	_, cfg := auroraStack(t, s)
	delete(cfg.AuroraInstanceHosts, testserver.SecondaryRegion)
	rt := openAurora(t, cfg)
	if got := strings.Join(readerNames(rt), ","); got != "tokyo-b/ap-northeast-1" {
		t.Fatalf("readers %s", got)
	}
}

type auroraLogWriter struct {
	mu *sync.Mutex
	w  io.Writer
}

func (l *auroraLogWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

func TestOpenAuroraConfigErrors(t *testing.T) {
	base := Config{Aurora: true, Dialect: DialectHeartbeat, Region: "r",
		Writer:              Endpoint{DSN: "u:p@tcp(c.cluster-x.r.rds.test:3306)/db"},
		AuroraInstanceHosts: map[string]string{"r": "?.x.r.rds.test"}}
	for _, tc := range []struct {
		name  string
		edit  func(*Config)
		field string
	}{
		{"not aurora", func(c *Config) { c.Aurora = false }, "Aurora"},
		{"mariadb dialect", func(c *Config) { c.Dialect = DialectMariaDB }, "Dialect"},
		{"no patterns", func(c *Config) { c.AuroraInstanceHosts = nil }, "AuroraInstanceHosts"},
		{"pattern without ?", func(c *Config) { c.AuroraInstanceHosts = map[string]string{"r": "x.r.rds.test"} }, "AuroraInstanceHosts[r]"},
		{"no writer DSN", func(c *Config) { c.Writer.DSN = "" }, "Writer.DSN"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := base
			tc.edit(&c)
			_, err := OpenAurora(context.Background(), c)
			var ce *ConfigError
			if !errors.As(err, &ce) || ce.Field != tc.field {
				t.Fatalf("err %v, want a ConfigError for %s", err, tc.field)
			}
		})
	}
	if _, err := Open(base); err == nil {
		t.Fatal("Open accepted AuroraInstanceHosts")
	}
}
