package security

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/bradfitz/gomemcache/memcache"
	"github.com/regiondb/regiondb/cache"
	"github.com/regiondb/regiondb/dbrouter"
	"github.com/regiondb/regiondb/internal/testserver"
)

// workload is the one statement the harness's reads send.
const workload = "SELECT 1 AS workload"

var dialects = []dbrouter.Dialect{dbrouter.DialectMariaDB, dbrouter.DialectMySQL, dbrouter.DialectHeartbeat}

// plannedAttempts is the number of attempts a feed makes (also when its
// child dies before reporting).
func plannedAttempts(feed string) int {
	n := len(Positions())
	switch feed {
	case "token":
		n = len(Tokens(time.Now()))
	case "cache":
		n *= 2 // a marker and a lease per position
	}
	return n * len(dialects)
}

// ChildMain runs the feed named by EnvChild and prints its result line. It
// returns the exit code.
func ChildMain() int {
	feed := os.Getenv(EnvChild)
	s, err := testserver.Lookup()
	if err != nil {
		fmt.Fprintln(os.Stderr, "security child:", err)
		return 1
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	var res childResult
	for _, d := range dialects {
		if err := attack(ctx, s, feed, d, &res); err != nil {
			fmt.Fprintln(os.Stderr, "security child:", feed, d, err)
			return 1
		}
	}
	b, _ := json.Marshal(res)
	fmt.Println(string(b))
	return 0
}

// guarded runs one attempt, counting a panic that reaches the caller.
func guarded(res *childResult, f func()) {
	defer func() {
		if v := recover(); v != nil {
			fmt.Fprintf(os.Stderr, "security child: panic: %v\n", v)
			res.Panics++
		}
	}()
	res.Attempts++
	f()
}

// mcStore is a dbrouter.WatermarkStore in memcached, where an attacker can
// write.
type mcStore struct{ c *memcache.Client }

func (m mcStore) Get(_ context.Context, key string) (string, error) {
	it, err := m.c.Get(key)
	if err == memcache.ErrCacheMiss {
		return "", nil
	}
	if err != nil {
		return "", err
	}
	return string(it.Value), nil
}

func (m mcStore) Set(_ context.Context, key, value string, ttl time.Duration) error {
	return m.c.Set(&memcache.Item{Key: key, Value: []byte(value), Expiration: int32(max(ttl/time.Second, 1))})
}

func (m mcStore) Claim(_ context.Context, key string, ttl time.Duration) (bool, error) {
	err := m.c.Add(&memcache.Item{Key: key, Value: []byte("1"), Expiration: int32(max(ttl/time.Second, 1))})
	if err == memcache.ErrNotStored {
		return false, nil
	}
	return err == nil, err
}

var nonce atomic.Int64

// attack runs one feed against a router of dialect d on the stack.
func attack(ctx context.Context, s *testserver.Stack, feed string, d dbrouter.Dialect, res *childResult) error {
	mc := memcache.New(s.Memcached(testserver.PrimaryRegion))
	mc.Timeout = time.Second
	defer mc.Close()
	cfg := dbrouter.Config{
		Region:  testserver.PrimaryRegion,
		Dialect: d,
		Writer:  dbrouter.Endpoint{Name: "m1", DSN: s.DSN("m1", "")},
		Readers: []dbrouter.Endpoint{
			{Name: "r1", DSN: s.DSN("r1", ""), Region: testserver.PrimaryRegion},
			{Name: "r2", DSN: s.DSN("r2", ""), Region: testserver.SecondaryRegion},
		},
		TokenKeys:    []dbrouter.TokenKey{{ID: tokenKeyID, Secret: TokenKey}},
		MaxWait:      100 * time.Millisecond,
		PollInterval: 5 * time.Millisecond,
	}
	if feed == "watermark" {
		cfg.Watermarks = mcStore{mc}
	}
	rt, err := dbrouter.Open(cfg)
	if err != nil {
		return err
	}
	defer func() {
		res.PositionsRejected += int(rt.Stats().PositionsRejected)
		rt.Close()
	}()
	read := func(ctx context.Context) ([]byte, error) {
		var v int
		err := rt.QueryRowContext(ctx, workload).Scan(&v)
		return []byte(strconv.Itoa(v)), err
	}
	switch feed {
	case "require":
		for _, p := range Positions() {
			guarded(res, func() {
				rctx, _ := rt.RequirePosition(ctx, p)
				read(rctx)
			})
		}
	case "token":
		for _, tok := range Tokens(time.Now()) {
			guarded(res, func() {
				tctx, _ := rt.WithToken(ctx, tok)
				read(tctx)
			})
		}
	case "merge":
		for _, p := range Positions() {
			guarded(res, func() {
				m := rt.MergePositions(p, rt.MergePositions(p, "0:1"))
				rctx, _ := rt.RequirePosition(ctx, m)
				read(rctx)
			})
		}
	case "watermark":
		// Planted shared states; a read that needs a position no
		// reader has makes the monitors consult the store.
		need := map[dbrouter.Dialect]string{dbrouter.DialectMariaDB: "0:999999999999",
			dbrouter.DialectMySQL: "3e11fa47-71ca-11e1-9e33-c80aa9429562:999999999", dbrouter.DialectHeartbeat: "hb:999999999"}[d]
		for _, p := range Positions() {
			guarded(res, func() {
				v := "v1 " + p + " 0 " + strconv.FormatInt(time.Now().UnixNano(), 10) + " 1 " + strconv.FormatInt(time.Now().UnixNano(), 10)
				for _, r := range []string{"r1", "r2"} {
					mc.Set(&memcache.Item{Key: "regiondb/dbrouter/" + r, Value: []byte(v), Expiration: 60})
				}
				rctx, _ := rt.RequirePosition(ctx, need)
				read(rctx)
			})
		}
	case "cache":
		c, err := cache.New(cache.Config{Client: mc, Consistency: rt, LeaseWait: 50 * time.Millisecond})
		if err != nil {
			return err
		}
		defer c.Close()
		for _, p := range Positions() {
			for _, lease := range []bool{false, true} {
				guarded(res, func() {
					key := "securityharness:photo:" + strconv.FormatInt(time.Now().UnixNano(), 10) + "-" + strconv.FormatInt(nonce.Add(1), 10)
					it := &memcache.Item{Key: key, Flags: flagMarker, Value: []byte(p), Expiration: 60}
					if lease {
						it.Flags, it.Value = flagLease, leaseValue(p, time.Now().Add(10*time.Second))
					}
					if err := mc.Set(it); err != nil {
						fmt.Fprintln(os.Stderr, "security child: plant:", err)
					}
					c.Get(ctx, key, read)
				})
			}
		}
	}
	return nil
}
