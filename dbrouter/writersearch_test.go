package dbrouter

import (
	"context"
	"database/sql/driver"
	"errors"
	"io"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"testing/synctest"
	"time"

	"github.com/go-sql-driver/mysql"

	"github.com/regiondb/regiondb/internal/testserver"
)

// discoverFakeServer is an in-process stand-in for one MySQL server that
// answers the writer probe's queries. It is used for what the local stack
// cannot do: Aurora MySQL's @@aurora_server_id and
// information_schema.replica_host_status do not exist in MariaDB, DNS names
// that move, and servers that hang without answering.
type discoverFakeServer struct {
	mu       sync.Mutex // protects the fields below
	readOnly bool
	innodbRO bool
	serverID string // Aurora instance id
	topology string // Aurora: writer id in replica_host_status ("" for no row)
	down     bool   // Connect fails with connection refused
	hang     bool   // Connect blocks until its context is done

	connects atomic.Int32
}

func (s *discoverFakeServer) set(f func(s *discoverFakeServer)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	f(s)
}

// discoverFakeConnector connects to the server that resolve returns at each
// Connect, like a DNS name that a failover may point elsewhere.
type discoverFakeConnector struct {
	resolve func() *discoverFakeServer
}

func discoverConnector(s *discoverFakeServer) discoverFakeConnector {
	return discoverFakeConnector{resolve: func() *discoverFakeServer { return s }}
}

func (c discoverFakeConnector) Connect(ctx context.Context) (driver.Conn, error) {
	s := c.resolve()
	s.connects.Add(1)
	s.mu.Lock()
	down, hang := s.down, s.hang
	s.mu.Unlock()
	if hang {
		<-ctx.Done()
		return nil, ctx.Err()
	}
	if down {
		return nil, os.NewSyscallError("connect", syscall.ECONNREFUSED)
	}
	return &discoverFakeConn{s: s}, nil
}

func (c discoverFakeConnector) Driver() driver.Driver { return nil }

type discoverFakeConn struct{ s *discoverFakeServer }

func (c *discoverFakeConn) Prepare(string) (driver.Stmt, error) { return nil, errors.New("no prepare") }
func (c *discoverFakeConn) Close() error                        { return nil }
func (c *discoverFakeConn) Begin() (driver.Tx, error)           { return nil, errors.New("no tx") }

func (c *discoverFakeConn) QueryContext(_ context.Context, query string, _ []driver.NamedValue) (driver.Rows, error) {
	s := c.s
	s.mu.Lock()
	defer s.mu.Unlock()
	b := func(v bool) driver.Value {
		if v {
			return []byte("1")
		}
		return []byte("0")
	}
	switch query {
	case probeReadOnlyQuery:
		return &discoverFakeRows{cols: 2, vals: [][]driver.Value{{b(s.readOnly), b(s.innodbRO)}}}, nil
	case probeAuroraIDQuery:
		if s.serverID == "" {
			return nil, &mysql.MySQLError{Number: 1193, Message: "Unknown system variable 'aurora_server_id'"}
		}
		return &discoverFakeRows{cols: 2, vals: [][]driver.Value{{[]byte(s.serverID), b(s.innodbRO)}}}, nil
	case probeAuroraTopologyQuery:
		r := &discoverFakeRows{cols: 1}
		if s.topology != "" {
			r.vals = [][]driver.Value{{[]byte(s.topology)}}
		}
		return r, nil
	}
	return nil, errors.New("fake: unexpected query " + query)
}

type discoverFakeRows struct {
	cols int
	vals [][]driver.Value
}

func (r *discoverFakeRows) Columns() []string { return make([]string, r.cols) }
func (r *discoverFakeRows) Close() error      { return nil }
func (r *discoverFakeRows) Next(dest []driver.Value) error {
	if len(r.vals) == 0 {
		return io.EOF
	}
	copy(dest, r.vals[0])
	r.vals = r.vals[1:]
	return nil
}

// discoverTopology returns a primary and two read-only replicas.
func discoverTopology() (srv []*discoverFakeServer, cands []writerCandidate) {
	names := []string{"writer", "reader-a", "reader-b"}
	for i, n := range names {
		s := &discoverFakeServer{readOnly: i > 0, innodbRO: false}
		srv = append(srv, s)
		cands = append(cands, writerCandidate{name: n, connector: discoverConnector(s)})
	}
	return srv, cands
}

func TestWriterSearchChoosesWritable(t *testing.T) {
	ctx := context.Background()
	tests := []struct {
		name    string
		setup   func(srv []*discoverFakeServer)
		current int
		want    int
		wantErr bool
	}{
		{"configured writer", func([]*discoverFakeServer) {}, 0, 0, false},
		{"promoted replica, old writer dead", func(srv []*discoverFakeServer) {
			srv[0].down = true
			srv[1].readOnly = false
		}, 0, 1, false},
		{"promoted replica, old writer demoted", func(srv []*discoverFakeServer) {
			srv[0].readOnly = true
			srv[2].readOnly = false
		}, 0, 2, false},
		{"innodb_read_only counts as read-only", func(srv []*discoverFakeServer) {
			srv[0].innodbRO = true
			srv[1].readOnly = false
		}, 0, 1, false},
		{"two writable: keep the current", func(srv []*discoverFakeServer) {
			srv[2].readOnly = false
		}, 2, 2, false},
		{"two writable, current not among them: first", func(srv []*discoverFakeServer) {
			srv[0].down = true
			srv[1].readOnly = false
			srv[2].readOnly = false
		}, 0, 1, false},
		{"none writable (between kill and promote)", func(srv []*discoverFakeServer) {
			srv[0].down = true
		}, 0, -1, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv, cands := discoverTopology()
			tt.setup(srv)
			var changes [][2]int
			w := newWriterSearch(writerSearchConfig{onChange: func(from, to int) {
				changes = append(changes, [2]int{from, to})
			}}, cands, tt.current)
			defer w.close()
			got, err := w.find(ctx)
			if (err != nil) != tt.wantErr || got != tt.want {
				t.Fatalf("find = %d, %v; want %d, error %v", got, err, tt.want, tt.wantErr)
			}
			if err != nil {
				if !errors.Is(err, ErrNoWriter) {
					t.Fatalf("err = %v, want ErrNoWriter", err)
				}
				for _, c := range cands {
					if !strings.Contains(err.Error(), c.name) {
						t.Fatalf("err %q does not name candidate %s", err, c.name)
					}
				}
				if w.writer() != tt.current {
					t.Fatal("a failed search changed the writer")
				}
				return
			}
			if w.writer() != got {
				t.Fatalf("writer() = %d after find = %d", w.writer(), got)
			}
			if got != tt.current && (len(changes) != 1 || changes[0] != [2]int{tt.current, got}) {
				t.Fatalf("onChange calls = %v", changes)
			}
			if got == tt.current && len(changes) != 0 {
				t.Fatalf("onChange called without a change: %v", changes)
			}
		})
	}
}

// TestWriterSearchSingleflight: concurrent callers share one search, and a
// search starts at most once per interval.
func TestWriterSearchSingleflight(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		srv, cands := discoverTopology()
		srv[0].hang = true // the dead writer: each probe takes the full timeout
		srv[1].readOnly = false
		w := newWriterSearch(writerSearchConfig{probeTimeout: time.Second, interval: 5 * time.Second}, cands, 0)
		defer w.close()
		var wg sync.WaitGroup
		start := time.Now()
		for range 50 {
			wg.Go(func() {
				if got, err := w.find(t.Context()); got != 1 || err != nil {
					t.Errorf("find = %d, %v", got, err)
				}
			})
		}
		wg.Wait()
		if d := time.Since(start); d != time.Second {
			t.Errorf("search took %v, want the probe timeout (1s)", d)
		}
		for i, s := range srv {
			if n := s.connects.Load(); n != 1 {
				t.Errorf("server %d probed %d times, want 1", i, n)
			}
		}
		// Within the interval: the last result, no probe.
		time.Sleep(4 * time.Second)
		if got, err := w.find(t.Context()); got != 1 || err != nil || srv[1].connects.Load() != 1 {
			t.Fatalf("within interval: find = %d, %v, probes %d", got, err, srv[1].connects.Load())
		}
		// After the interval: a new search.
		time.Sleep(time.Second)
		srv[0].set(func(s *discoverFakeServer) { s.hang = false; s.down = true })
		if got, err := w.find(t.Context()); got != 1 || err != nil || srv[1].connects.Load() != 2 {
			t.Fatalf("after interval: find = %d, %v, probes %d", got, err, srv[1].connects.Load())
		}
	})
}

// TestWriterSearchBounded: a caller's wait is bounded by its context (and the
// search by the probe timeout), a cancelled caller does not cancel the search
// for others, and close stops a running search.
func TestWriterSearchBounded(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		srv, cands := discoverTopology()
		for _, s := range srv {
			s.hang = true
		}
		w := newWriterSearch(writerSearchConfig{probeTimeout: 3 * time.Second}, cands, 0)
		ctx, cancel := context.WithTimeout(t.Context(), 100*time.Millisecond)
		defer cancel()
		start := time.Now()
		if _, err := w.find(ctx); !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("find = %v, want the caller's deadline", err)
		}
		if d := time.Since(start); d != 100*time.Millisecond {
			t.Fatalf("caller waited %v", d)
		}
		// Another caller joins the same search, which ends at the probe
		// timeout with ErrNoWriter.
		_, err := w.find(t.Context())
		if !errors.Is(err, ErrNoWriter) || !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("find = %v, want ErrNoWriter caused by the probe timeout", err)
		}
		if d := time.Since(start); d != 3*time.Second {
			t.Fatalf("search took %v, want 3s", d)
		}
		for _, s := range srv {
			if s.connects.Load() != 1 {
				t.Fatal("the cancelled caller started a second search")
			}
		}
		// close during a search cancels the probes at once.
		time.Sleep(time.Hour)
		done := make(chan struct{})
		go func() {
			_, _ = w.find(context.Background())
			close(done)
		}()
		synctest.Wait()
		closeStart := time.Now()
		w.close()
		<-done
		if d := time.Since(closeStart); d != 0 {
			t.Fatalf("close took %v", d)
		}
		if _, err := w.find(t.Context()); !errors.Is(err, ErrNoWriter) {
			t.Fatalf("find after close = %v", err)
		}
		w.close() // idempotent
	})
}

// TestWriterSearchAurora runs the Aurora MySQL variant against in-process
// fakes (Aurora's @@aurora_server_id and
// information_schema.replica_host_status do not exist in the local MariaDB
// stack): the topology table's writer wins over another instance that still
// claims to be writable, and a cluster endpoint whose DNS name moves to the
// new writer is found by re-dialling it.
func TestWriterSearchAurora(t *testing.T) {
	ctx := context.Background()
	t.Run("topology names the writer", func(t *testing.T) {
		inst := []*discoverFakeServer{
			{serverID: "db-instance-1", topology: "db-instance-2"},                 // old writer, not yet demoted
			{serverID: "db-instance-2", topology: "db-instance-2"},                 // promoted
			{serverID: "db-instance-3", topology: "db-instance-2", innodbRO: true}, // reader
		}
		var cands []writerCandidate
		for _, s := range inst {
			cands = append(cands, writerCandidate{name: s.serverID, connector: discoverConnector(s)})
		}
		w := newWriterSearch(writerSearchConfig{aurora: true}, cands, 0)
		defer w.close()
		if got, err := w.find(ctx); got != 1 || err != nil {
			t.Fatalf("find = %d, %v; want the instance the topology names (1)", got, err)
		}
	})
	t.Run("no topology row: innodb_read_only decides", func(t *testing.T) {
		inst := []*discoverFakeServer{
			{serverID: "a", innodbRO: true},
			{serverID: "b"},
		}
		cands := []writerCandidate{{name: "a", connector: discoverConnector(inst[0])}, {name: "b", connector: discoverConnector(inst[1])}}
		w := newWriterSearch(writerSearchConfig{aurora: true}, cands, 0)
		defer w.close()
		if got, err := w.find(ctx); got != 1 || err != nil {
			t.Fatalf("find = %d, %v", got, err)
		}
	})
	t.Run("cluster endpoint DNS moves", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			oldW := &discoverFakeServer{serverID: "i-1", topology: "i-1"}
			newW := &discoverFakeServer{serverID: "i-2", topology: "i-1", innodbRO: true}
			var target atomic.Pointer[discoverFakeServer]
			target.Store(oldW)
			cluster := discoverFakeConnector{resolve: target.Load}
			reader := discoverConnector(newW)
			cands := []writerCandidate{{name: "cluster", connector: cluster}, {name: "reader", connector: reader}}
			w := newWriterSearch(writerSearchConfig{aurora: true, interval: time.Second}, cands, 0)
			defer w.close()
			if got, err := w.find(ctx); got != 0 || err != nil {
				t.Fatalf("before failover: find = %d, %v", got, err)
			}
			// Failover: i-1 dies, i-2 is promoted, but the cluster name
			// still resolves to i-1 for a while (DNS TTL).
			oldW.set(func(s *discoverFakeServer) { s.down = true })
			newW.set(func(s *discoverFakeServer) { s.innodbRO = false; s.topology = "i-2" })
			time.Sleep(time.Second)
			if got, err := w.find(ctx); got != 1 || err != nil {
				t.Fatalf("during DNS lag: find = %d, %v; want the promoted reader endpoint", got, err)
			}
			// The name moves; the next search re-dials it and finds the
			// writer there too, preferring the current (reader endpoint).
			target.Store(newW)
			time.Sleep(time.Second)
			if got, err := w.find(ctx); got != 1 || err != nil {
				t.Fatalf("after DNS moved: find = %d, %v", got, err)
			}
			if n := oldW.connects.Load(); n != 2 {
				t.Fatalf("old writer dialled %d times, want 2", n)
			}
		})
	})
}

// TestWriterSearchStack probes the real servers: m1 is the only writable one.
func TestWriterSearchStack(t *testing.T) {
	s := testserver.Require(t)
	var cands []writerCandidate
	for _, name := range []string{"r2", "m1", "r1"} {
		cfg, err := mysql.ParseDSN(s.DSN(name, ""))
		if err != nil {
			t.Fatal(err)
		}
		conn, err := mysql.NewConnector(cfg)
		if err != nil {
			t.Fatal(err)
		}
		cands = append(cands, writerCandidate{name: name, connector: failureConnector{Connector: conn}})
	}
	w := newWriterSearch(writerSearchConfig{}, cands, 0)
	defer w.close()
	got, err := w.find(t.Context())
	if err != nil || cands[got].name != "m1" {
		t.Fatalf("find = %d, %v; want m1", got, err)
	}
}

// TestWriterSearchBacksOff: while no writer can be found, searches back off
// (interval, 2×, 4×, 4×…, lengthened at random by up to a quarter), so that a
// process probes each endpoint at most about every 2 s during an outage,
// however often statements ask; one search that finds the writer resets it.
func TestWriterSearchBacksOff(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		srv, cands := discoverTopology()
		for _, s := range srv {
			s.down = true
		}
		const interval = 500 * time.Millisecond
		w := newWriterSearch(writerSearchConfig{probeTimeout: time.Second, interval: interval}, cands, 0)
		defer w.close()
		var starts []time.Duration
		begin := time.Now()
		for time.Since(begin) < 20*time.Second {
			before := srv[0].connects.Load()
			if _, err := w.find(t.Context()); !errors.Is(err, ErrNoWriter) {
				t.Fatalf("find = %v, want ErrNoWriter", err)
			}
			if srv[0].connects.Load() != before {
				starts = append(starts, time.Since(begin))
			}
			time.Sleep(10 * time.Millisecond) // a statement asks every 10 ms
		}
		for i := 1; i < len(starts); i++ {
			gap := starts[i] - starts[i-1]
			want := interval << min(i-1, searchBackoffSteps)
			if gap < want || gap > want+want/4+20*time.Millisecond {
				t.Fatalf("search %d started %v after the one before, want %v to %v (starts %v)", i, gap, want, want*5/4, starts)
			}
		}
		probesPerSec := float64(len(starts)*len(srv)) / 20
		if probesPerSec > 2 {
			t.Fatalf("%.2f probes/s over 20 s of outage, want at most 2", probesPerSec)
		}
		// The writer is back: the next search after the back-off finds it,
		// and the gap returns to the interval.
		srv[1].set(func(s *discoverFakeServer) { s.down = false; s.readOnly = false })
		time.Sleep(3 * time.Second)
		if got, err := w.find(t.Context()); got != 1 || err != nil {
			t.Fatalf("find after recovery = %d, %v", got, err)
		}
		w.mu.Lock()
		gap := w.gap
		w.mu.Unlock()
		if gap != interval {
			t.Fatalf("gap after a successful search = %v, want %v", gap, interval)
		}
	})
}

func TestProbeTimeoutSizedToRTT(t *testing.T) {
	var none *rttStat
	for _, tc := range []struct {
		name string
		rtt  time.Duration
		want time.Duration
	}{
		{"unmeasured", 0, DefaultWriterProbeTimeout},
		{"loopback: the floor", time.Millisecond, MinWriterProbeTimeout},
		{"cross-region handshake", 400 * time.Millisecond, 1600 * time.Millisecond},
		{"very slow: the cap", 3 * time.Second, MaxWriterProbeTimeout},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := &rttStat{}
			s.record(tc.rtt)
			if got := s.probeTimeout(); got != tc.want {
				t.Fatalf("probeTimeout = %v, want %v", got, tc.want)
			}
		})
	}
	if got := none.probeTimeout(); got != DefaultWriterProbeTimeout {
		t.Fatalf("nil: %v", got)
	}
	// A hanging endpoint whose connects took 10 ms is given up after the
	// floor, not the default second.
	synctest.Test(t, func(t *testing.T) {
		srv, cands := discoverTopology()
		srv[0].set(func(s *discoverFakeServer) { s.hang = true })
		srv[1].set(func(s *discoverFakeServer) { s.readOnly = false })
		for i := range cands {
			cands[i].rtt = &rttStat{}
			cands[i].rtt.record(10 * time.Millisecond)
		}
		w := newWriterSearch(writerSearchConfig{}, cands, 0)
		defer w.close()
		start := time.Now()
		if got, err := w.find(context.Background()); got != 1 || err != nil {
			t.Fatalf("find = %d, %v", got, err)
		}
		if d := time.Since(start); d != MinWriterProbeTimeout {
			t.Fatalf("search took %v, want the floor %v", d, MinWriterProbeTimeout)
		}
	})
}

// TestWriterSearchShared: a process that found the writer publishes it in
// the WatermarkStore; another process's search probes that one alone. A
// stale or foreign shared value makes a full search.
func TestWriterSearchShared(t *testing.T) {
	ctx := context.Background()
	newFleet := func() ([]*discoverFakeServer, []writerCandidate) {
		inst := []*discoverFakeServer{
			{serverID: "i-1", topology: "i-2", innodbRO: true}, // demoted
			{serverID: "i-2", topology: "i-2"},                 // the writer
			{serverID: "i-3", topology: "i-2", innodbRO: true},
		}
		var cands []writerCandidate
		for _, s := range inst {
			cands = append(cands, writerCandidate{name: s.serverID, connector: discoverConnector(s)})
		}
		return inst, cands
	}
	store := newMemWatermarks()
	inst, cands := newFleet()
	key := sharedWriterKey(cands)
	a := newWriterSearch(writerSearchConfig{aurora: true, shared: store, sharedKey: key}, cands, 0)
	defer a.close()
	if got, err := a.find(ctx); got != 1 || err != nil {
		t.Fatalf("first process: find = %d, %v", got, err)
	}
	if v, _ := store.Get(ctx, key); v != "v1 i-2" {
		t.Fatalf("shared value %q", v)
	}
	if a.hits.Load() != 0 || inst[0].connects.Load() != 1 {
		t.Fatalf("first process: %d shared hits, %d probes of i-1", a.hits.Load(), inst[0].connects.Load())
	}

	inst2, cands2 := newFleet()
	b := newWriterSearch(writerSearchConfig{aurora: true, shared: store, sharedKey: sharedWriterKey(cands2)}, cands2, 0)
	defer b.close()
	if got, err := b.find(ctx); got != 1 || err != nil {
		t.Fatalf("second process: find = %d, %v", got, err)
	}
	if b.hits.Load() != 1 || inst2[0].connects.Load() != 0 || inst2[2].connects.Load() != 0 || inst2[1].connects.Load() != 1 {
		t.Fatalf("second process: %d hits, probes %d %d %d; want 1 hit and only i-2 probed",
			b.hits.Load(), inst2[0].connects.Load(), inst2[1].connects.Load(), inst2[2].connects.Load())
	}

	for _, v := range []string{"v1 i-1", "v1 nowhere", "garbage"} {
		t.Run(v, func(t *testing.T) {
			inst3, cands3 := newFleet()
			store.Set(ctx, key, v, time.Minute)
			c := newWriterSearch(writerSearchConfig{aurora: true, shared: store, sharedKey: sharedWriterKey(cands3)}, cands3, 0)
			defer c.close()
			if got, err := c.find(ctx); got != 1 || err != nil {
				t.Fatalf("find = %d, %v", got, err)
			}
			if c.hits.Load() != 0 || inst3[2].connects.Load() != 1 {
				t.Fatalf("%d hits, %d probes of i-3; want a full search", c.hits.Load(), inst3[2].connects.Load())
			}
			if got, _ := store.Get(ctx, key); got != "v1 i-2" {
				t.Fatalf("republished %q", got)
			}
		})
	}
}
