package cache

import (
	"context"
	"time"

	"github.com/regiondb/regiondb/cache"
	"github.com/regiondb/regiondb/dbrouter"
	"github.com/regiondb/regiondb/internal/testserver"
)

// Routers is one real *dbrouter.Router per region (index 0
// ap-northeast-1, 1 us-east-1) on the harness's database, for running the
// stale scenarios through the router rather than the GTID stand-in.
type Routers [2]*dbrouter.Router

// OpenRouters opens the two regions' routers: writer m1, readers r1
// (ap-northeast-1) and r2 (us-east-1), MaxWait 20 ms.
func OpenRouters(e *Env) (Routers, error) {
	var rts Routers
	for i, region := range []string{testserver.PrimaryRegion, testserver.SecondaryRegion} {
		rt, err := dbrouter.Open(dbrouter.Config{
			Region: region,
			Writer: dbrouter.Endpoint{Name: "m1", DSN: e.Stack.DSN("m1", Database)},
			Readers: []dbrouter.Endpoint{
				{Name: "r1", DSN: e.Stack.DSN("r1", Database), Region: testserver.PrimaryRegion},
				{Name: "r2", DSN: e.Stack.DSN("r2", Database), Region: testserver.SecondaryRegion},
			},
			MaxWait: 20 * time.Millisecond,
		})
		if err != nil {
			rts.Close()
			return rts, err
		}
		rts[i] = rt
	}
	return rts, nil
}

// Close closes the routers.
func (rts Routers) Close() {
	for _, rt := range rts {
		if rt != nil {
			rt.Close()
		}
	}
}

// Write updates row id to v through region's router in a fresh
// read-your-writes scope and returns the scope's context.
func (rts Routers) Write(ctx context.Context, region int, id, v int64) (context.Context, error) {
	ctx = dbrouter.NewContext(ctx)
	_, err := rts[region].ExecContext(ctx, "UPDATE kv SET v = ? WHERE id = ?", v, id)
	return ctx, err
}

// Load reads row id through region's router.
func (rts Routers) Load(region int) func(context.Context, int64) (int64, error) {
	return func(ctx context.Context, id int64) (int64, error) {
		var v int64
		err := rts[region].QueryRowContext(ctx, "SELECT v FROM kv WHERE id = ?", id).Scan(&v)
		return v, err
	}
}

// StaleConfig returns the StaleRefill configuration through region 0's router.
func (rts Routers) StaleConfig() StaleConfig {
	return StaleConfig{
		Consistency: rts[0],
		Write:       func(ctx context.Context, id, v int64) (context.Context, error) { return rts.Write(ctx, 0, id, v) },
		Load:        rts.Load(0),
	}
}

// RegionConfig returns the CrossRegion configuration through both routers.
func (rts Routers) RegionConfig() RegionConfig {
	return RegionConfig{
		Consistency: [2]cache.Consistency{rts[0], rts[1]},
		Load:        [2]func(context.Context, int64) (int64, error){rts.Load(0), rts.Load(1)},
		Write:       rts.Write,
	}
}
