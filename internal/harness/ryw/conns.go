package ryw

import (
	"context"
	"database/sql"
	"sync"
	"time"

	"go.opentelemetry.io/otel/attribute"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"

	"github.com/regiondb/regiondb/dbrouter"
	"github.com/regiondb/regiondb/internal/testserver"
)

// Conns are the peak physical connections per role in use at once under a
// workload of concurrent requests.
type Conns struct {
	// Requests is the number of concurrent request goroutines.
	Requests int `json:"requests"`
	// Routing is the routing *sql.DB (Router.DB): each request holds a
	// *sql.Conn of it and runs every statement on it.
	Routing RoleConns `json:"routing"`
	// HandSplit is a pair of *sql.DB: a request that writes holds a
	// *sql.Conn of the writer's pool, any other one of the reader's, and
	// runs its statements on it.
	HandSplit RoleConns `json:"hand_split"`
}

// RoleConns are peak connections in use on the writer and on the local
// reader, and the requests per second the run achieved.
type RoleConns struct {
	Writer       int64   `json:"writer"`
	Reader       int64   `json:"reader"`
	RequestsPerS float64 `json:"requests_per_s"`
}

// ConnsConfig configures MeasureConns. Zero fields take the defaults.
type ConnsConfig struct {
	Requests int           // concurrent request goroutines (default 200)
	PerG     int           // requests per goroutine (default 10)
	Think    time.Duration // think time inside a request, holding its *sql.Conn (default 20 ms)
}

// MeasureConns runs the same workload through the routing *sql.DB and
// through a hand-split pair, one after the other: Requests goroutines each
// run PerG requests of 5 reads, a write in 1 request of 10, and Think
// time (their first requests starting spread over one Think), all while
// holding a *sql.Conn (as a GORM transaction or a request that pins a
// connection does). A sampler reads the connections in use of each role's
// pool (the router's db.client.connection.count metric with state "used";
// the hand-split pools' Stats().InUse) and keeps the peak.
//
// The router keeps its default limit ([dbrouter.DefaultMaxOpenConns] per
// endpoint) and keeps that many idle, so that connections taken and given
// back per statement are reused rather than closed and reopened: its
// requests hold a physical connection only per statement, so they share a
// few. The hand-split pools are unlimited and keep every idle connection,
// as they must: each request holds a connection for its whole life, so a
// limit below the concurrent requests serialises them. RequestsPerS shows
// that the router's limit did not buy its figure with throughput.
func MeasureConns(ctx context.Context, s *testserver.Stack, cfg ConnsConfig) (*Conns, error) {
	if cfg.Requests <= 0 {
		cfg.Requests = 200
	}
	if cfg.PerG <= 0 {
		cfg.PerG = 10
	}
	if cfg.Think <= 0 {
		cfg.Think = 20 * time.Millisecond
	}
	if err := setup(ctx, s, 200); err != nil {
		return nil, err
	}
	out := &Conns{Requests: cfg.Requests}

	rd := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(rd))
	defer mp.Shutdown(context.Background())
	rt, err := dbrouter.Open(dbrouter.Config{
		Region:        testserver.PrimaryRegion,
		Writer:        dbrouter.Endpoint{Name: "m1", DSN: s.DSN("m1", Database)},
		Readers:       []dbrouter.Endpoint{{Name: "r1", DSN: s.DSN("r1", Database), Region: testserver.PrimaryRegion}},
		TokenKeys:     []dbrouter.TokenKey{tokenKey},
		MeterProvider: mp,
		ReaderPool:    dbrouter.PoolConfig{MaxIdleConns: dbrouter.DefaultMaxOpenConns},
		WriterPool:    dbrouter.PoolConfig{MaxIdleConns: dbrouter.DefaultMaxOpenConns},
	})
	if err != nil {
		return nil, err
	}
	routing := rt.DB()
	var rm metricdata.ResourceMetrics
	out.Routing, err = peakConns(ctx, cfg, func(write bool) (*sql.Conn, error) {
		return routing.Conn(ctx)
	}, func() (w, r int64) {
		if rd.Collect(ctx, &rm) != nil {
			return 0, 0
		}
		return routerInUse(&rm)
	})
	rt.Close()
	if err != nil {
		return nil, err
	}

	w, err := sql.Open("mysql", s.DSN("m1", Database))
	if err != nil {
		return nil, err
	}
	defer w.Close()
	r, err := sql.Open("mysql", s.DSN("r1", Database))
	if err != nil {
		return nil, err
	}
	defer r.Close()
	for _, db := range []*sql.DB{w, r} {
		db.SetMaxIdleConns(cfg.Requests)
	}
	out.HandSplit, err = peakConns(ctx, cfg, func(write bool) (*sql.Conn, error) {
		if write {
			return w.Conn(ctx)
		}
		return r.Conn(ctx)
	}, func() (int64, int64) {
		return int64(w.Stats().InUse), int64(r.Stats().InUse)
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// routerInUse sums the connections in use per role from the router's
// db.client.connection.count metric.
func routerInUse(rm *metricdata.ResourceMetrics) (w, r int64) {
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			if m.Name != "db.client.connection.count" {
				continue
			}
			sum, ok := m.Data.(metricdata.Sum[int64])
			if !ok {
				continue
			}
			for _, dp := range sum.DataPoints {
				if v, _ := dp.Attributes.Value(attribute.Key("db.client.connection.state")); v.AsString() != "used" {
					continue
				}
				switch v, _ := dp.Attributes.Value(attribute.Key("regiondb.route")); v.AsString() {
				case "writer":
					w += dp.Value
				case "reader":
					r += dp.Value
				}
			}
		}
	}
	return w, r
}

// peakConns runs the workload, taking each request's connection from
// conn, while a sampler calls inUse; it returns the peaks.
func peakConns(ctx context.Context, cfg ConnsConfig, conn func(write bool) (*sql.Conn, error), inUse func() (w, r int64)) (RoleConns, error) {
	var peak RoleConns
	done := make(chan struct{})
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		for {
			select {
			case <-done:
				return
			default:
			}
			w, r := inUse()
			peak.Writer, peak.Reader = max(peak.Writer, w), max(peak.Reader, r)
			time.Sleep(200 * time.Microsecond) // sampling period
		}
	}()
	start := time.Now()
	var wg sync.WaitGroup
	errs := make(chan error, cfg.Requests)
	for g := range cfg.Requests {
		wg.Go(func() {
			// Requests arrive spread over one think time, not all at the
			// same instant (workload shape, not synchronisation).
			time.Sleep(time.Duration(g) * cfg.Think / time.Duration(cfg.Requests))
			for i := range cfg.PerG {
				write := (g+i)%10 == 0
				if err := request(ctx, conn, write, g, cfg.Think); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	peakRate := float64(cfg.Requests*cfg.PerG) / time.Since(start).Seconds()
	close(done)
	<-sampled
	peak.RequestsPerS = peakRate
	select {
	case err := <-errs:
		return peak, err
	default:
	}
	return peak, nil
}

// request is one request: 5 reads, a write if write, think time, all on
// one held *sql.Conn.
func request(ctx context.Context, conn func(write bool) (*sql.Conn, error), write bool, g int, think time.Duration) error {
	c, err := conn(write)
	if err != nil {
		return err
	}
	defer c.Close()
	id := g%200 + 1
	var v int64
	for range 5 {
		if err := c.QueryRowContext(ctx, selectQuery, id).Scan(&v); err != nil {
			return err
		}
	}
	if write {
		if _, err := c.ExecContext(ctx, "UPDATE users SET v = v + 1 WHERE id = ?", id); err != nil {
			return err
		}
	}
	time.Sleep(think) // the request's own work while it holds the connection (workload, not synchronisation)
	return nil
}
