package memcachestore

import (
	"bufio"
	"context"
	"errors"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/bradfitz/gomemcache/memcache"

	"github.com/regiondb/regiondb/dbrouter"
	"github.com/regiondb/regiondb/internal/testserver"
)

var (
	_ dbrouter.WatermarkStore = (*Store)(nil)
	_ dbrouter.ClaimDeadliner = (*Store)(nil)
	_ dbrouter.ClaimBudgeter  = (*Store)(nil)
)

// clock is a fake clock shared by the stores of one test (the "processes").
type clock struct{ ns atomic.Int64 }

func (c *clock) now() time.Time          { return time.Unix(0, c.ns.Load()) }
func (c *clock) advance(d time.Duration) { c.ns.Add(int64(d)) }

func newStores(t *testing.T, n int, clk *clock) []*Store {
	t.Helper()
	s := testserver.Require(t)
	out := make([]*Store, n)
	for i := range out {
		st := New(memcache.New(s.Memcached(testserver.PrimaryRegion)))
		st.now = clk.now
		out[i] = st
	}
	return out
}

func testKey(t *testing.T) string {
	return "memcachestore-test/" + t.Name() + "/" + strconv.FormatInt(time.Now().UnixNano(), 10)
}

// race has every store claim key at once and returns how many won.
func race(t *testing.T, stores []*Store, key string, ttl time.Duration) int {
	t.Helper()
	var wins atomic.Int32
	var wg sync.WaitGroup
	start := make(chan struct{})
	for _, st := range stores {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			now := st.now()
			won, until, err := st.ClaimUntil(context.Background(), key, ttl)
			if err != nil {
				t.Error(err)
			}
			// Winner and losers learn when the claim expires: within
			// one ttl from now (the clock of the test is shared).
			if err == nil && (!until.After(now) || until.After(now.Add(ttl))) {
				t.Errorf("Claim returned won=%v until %v, want within (%v, %v]", won, until, now, now.Add(ttl))
			}
			if won {
				wins.Add(1)
			}
		}()
	}
	close(start)
	wg.Wait()
	return int(wins.Load())
}

// TestClaimSubSecond checks the property the router needs: a claim lasts
// its own ttl (20 ms), not memcached's whole second, and among processes
// racing for a free or expired claim exactly one wins.
func TestClaimSubSecond(t *testing.T) {
	clk := &clock{}
	clk.ns.Store(time.Now().UnixNano())
	stores := newStores(t, 12, clk)
	key := testKey(t)
	const ttl = 20 * time.Millisecond
	for round := range 25 {
		if n := race(t, stores, key, ttl); n != 1 {
			t.Fatalf("round %d: %d winners, want 1", round, n)
		}
		// Within the ttl, nobody else wins.
		clk.advance(ttl / 2)
		if n := race(t, stores, key, ttl); n != 0 {
			t.Fatalf("round %d: %d winners within the holder's ttl, want 0", round, n)
		}
		// After it, the claim is free again although memcached still
		// holds the item for seconds.
		clk.advance(ttl)
	}
}

// TestClaimControlWholeSeconds shows what the deadline is for: a plain
// memcached "add" claim (expiry in whole seconds) cannot be won again 20 ms
// later, so a fleet would poll a reader at most once a second.
//
// memcached's clock ticks once a second, and an item of expiry 1 expires at
// its next tick, so it lives 0 to 1 s: an add made just before a tick was
// won again 20 ms later (8 of 400 runs). So the claim is made right after a
// tick, and a try whose second add came after the next tick (a stall of
// about a second) says nothing and is made again.
func TestClaimControlWholeSeconds(t *testing.T) {
	s := testserver.Require(t)
	addr := s.Memcached(testserver.PrimaryRegion)
	c := memcache.New(addr)
	c.Timeout = 5 * time.Second // what is measured is memcached's expiry, not its latency
	clock := memcachedClock(t, addr)
	for try := 1; ; try++ {
		key := testKey(t)
		add := func() bool {
			err := c.Add(&memcache.Item{Key: key, Value: []byte("1"), Expiration: 1})
			if err != nil && !errors.Is(err, memcache.ErrNotStored) {
				t.Fatalf("add-claim: %v", err)
			}
			return err == nil
		}
		sec, deadline := clock(), time.Now().Add(5*time.Second)
		for clock() == sec {
			if time.Now().After(deadline) {
				t.Fatalf("memcached's clock stayed at %s for 5 s", sec)
			}
			time.Sleep(time.Millisecond) // polling memcached's clock, not synchronising
		}
		sec = clock()
		if !add() {
			t.Fatal("first add-claim lost")
		}
		// A real 20 ms wait: what is measured is memcached's own expiry.
		time.Sleep(20 * time.Millisecond)
		again := add()
		if clock() != sec {
			if try == 5 {
				t.Fatal("memcached's clock ticked between the two add-claims in 5 tries")
			}
			continue
		}
		if again {
			t.Fatal("control: an add-claim was won again after 20 ms; the test cannot show the whole-second problem")
		}
		return
	}
}

// memcachedClock returns a function that reads the clock of the memcached
// at addr: its "time" stat, which it advances once a second.
func memcachedClock(t *testing.T, addr string) func() string {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	rd := bufio.NewReader(conn)
	return func() string {
		if err := conn.SetDeadline(time.Now().Add(10 * time.Second)); err != nil {
			t.Fatal(err)
		}
		if _, err := conn.Write([]byte("stats\r\n")); err != nil {
			t.Fatal(err)
		}
		now := ""
		for {
			line, err := rd.ReadString('\n')
			if err != nil {
				t.Fatalf("memcached stats: %v", err)
			}
			if v, ok := strings.CutPrefix(line, "STAT time "); ok {
				now = strings.TrimSpace(v)
			}
			if line == "END\r\n" {
				if now == "" {
					t.Fatal("memcached stats: no time")
				}
				return now
			}
		}
	}
}

// TestClaimCorruptValue: a value planted under a claim key is taken over as
// expired, never trusted as a far deadline (which would stop every process
// from polling the reader).
func TestClaimCorruptValue(t *testing.T) {
	clk := &clock{}
	clk.ns.Store(time.Now().UnixNano())
	stores := newStores(t, 4, clk)
	s := testserver.Require(t)
	c := memcache.New(s.Memcached(testserver.PrimaryRegion))
	for _, v := range []string{"garbage", "", "-1", "99999999999999999999999", "1e18", "9000000000000000000"} {
		key := testKey(t)
		if err := c.Set(&memcache.Item{Key: key, Value: []byte(v), Expiration: 60}); err != nil {
			t.Fatal(err)
		}
		if n := race(t, stores, key, 20*time.Millisecond); n != 1 {
			t.Fatalf("planted %q: %d winners, want 1", v, n)
		}
	}
}

func TestGetSet(t *testing.T) {
	clk := &clock{}
	clk.ns.Store(time.Now().UnixNano())
	st := newStores(t, 1, clk)[0]
	ctx := context.Background()
	key := testKey(t)
	if v, err := st.Get(ctx, key); err != nil || v != "" {
		t.Fatalf("Get of a missing key = %q, %v", v, err)
	}
	if err := st.Set(ctx, key, "v1 x", 300*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	if v, err := st.Get(ctx, key); err != nil || v != "v1 x" {
		t.Fatalf("Get = %q, %v", v, err)
	}
}

// countingClient counts the calls that reach memcached.
type countingClient struct {
	Client
	calls atomic.Int32
}

func (c *countingClient) Get(k string) (*memcache.Item, error) {
	c.calls.Add(1)
	return c.Client.Get(k)
}
func (c *countingClient) Add(it *memcache.Item) error { c.calls.Add(1); return c.Client.Add(it) }

// TestUnavailableFailsFast: with memcached unreachable, the first call
// fails and the following ones fail at once without touching the network,
// until the back-off passes; every error matches ErrUnavailable.
func TestUnavailableFailsFast(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // nothing listens there now: connection refused
	cc := &countingClient{Client: memcache.New(addr)}
	clk := &clock{}
	clk.ns.Store(time.Now().UnixNano())
	st := New(cc)
	st.now = clk.now
	ctx := context.Background()
	if _, err := st.Claim(ctx, "k", time.Second); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("Claim on a dead memcached: %v", err)
	}
	for range 10 {
		if _, err := st.Get(ctx, "k"); !errors.Is(err, ErrUnavailable) {
			t.Fatalf("Get during back-off: %v", err)
		}
		if _, err := st.Claim(ctx, "k", time.Second); !errors.Is(err, ErrUnavailable) {
			t.Fatalf("Claim during back-off: %v", err)
		}
	}
	if n := cc.calls.Load(); n != 1 {
		t.Fatalf("%d calls reached memcached during the back-off, want 1", n)
	}
	clk.advance(DefaultBackoff)
	st.Claim(ctx, "k", time.Second)
	if n := cc.calls.Load(); n != 2 {
		t.Fatalf("after the back-off: %d calls, want 2 (one new try)", n)
	}
}

// raceBudget has every store claim key with a budget at once and returns
// how many won; every caller must learn times within one interval.
func raceBudget(t *testing.T, stores []*Store, key string, hold, interval time.Duration, burst int) int {
	t.Helper()
	var wins atomic.Int32
	var wg sync.WaitGroup
	start := make(chan struct{})
	for _, st := range stores {
		wg.Go(func() {
			<-start
			now := st.now()
			won, held, next, err := st.ClaimBudget(context.Background(), key, hold, interval, burst)
			switch {
			case err != nil:
				t.Error(err)
			case held.After(now.Add(interval)) || next.After(now.Add(interval)) || next.Before(held):
				t.Errorf("ClaimBudget at %v: won=%v held %v next %v, want held <= next <= now + interval", now, won, held, next)
			case won:
				wins.Add(1)
			}
		})
	}
	close(start)
	wg.Wait()
	return int(wins.Load())
}

// TestClaimBudget checks the budget the router relies on: among processes
// racing for the key at most one wins, nobody wins while a winner's hold
// runs, after a hold the next claim wins at once while the burst lasts,
// and then only one claim per interval wins. Claiming every hold for ten
// intervals wins at most burst + 10 claims; the control, the same claims
// without a budget (ClaimUntil of a hold), wins one per hold.
func TestClaimBudget(t *testing.T) {
	const hold, interval, burst = 2 * time.Millisecond, 20 * time.Millisecond, 3
	clk := &clock{}
	clk.ns.Store(time.Now().UnixNano())
	stores := newStores(t, 12, clk)
	key := testKey(t)
	for i := range burst {
		if n := raceBudget(t, stores, key, hold, interval, burst); n != 1 {
			t.Fatalf("claim %d of the burst: %d winners, want 1", i, n)
		}
		clk.advance(hold / 2)
		if n := raceBudget(t, stores, key, hold, interval, burst); n != 0 {
			t.Fatalf("claim %d of the burst: %d winners during the hold, want 0", i, n)
		}
		clk.advance(hold / 2)
	}
	// The burst is spent: the next claim wins one interval after the first.
	_, _, next, err := stores[0].ClaimBudget(context.Background(), key, hold, interval, burst)
	if err != nil {
		t.Fatal(err)
	}
	first := clk.now().Add(-burst * hold)
	if want := first.Add(interval); !next.Equal(want) {
		t.Fatalf("budget spent: next claim at %v after the first, want %v", next.Sub(first), interval)
	}

	count := func(claim func(*Store, time.Time) bool) int {
		key = testKey(t)
		wins := 0
		for range 10 * interval / hold {
			if claim(stores[int(clk.ns.Load()/int64(hold))%len(stores)], clk.now()) {
				wins++
			}
			clk.advance(hold)
		}
		return wins
	}
	budget := count(func(st *Store, _ time.Time) bool {
		won, _, _, err := st.ClaimBudget(context.Background(), key, hold, interval, burst)
		if err != nil {
			t.Fatal(err)
		}
		return won
	})
	if budget > burst+10 {
		t.Errorf("claims every hold for 10 intervals: %d won, want <= %d", budget, burst+10)
	}
	if budget < 10 {
		t.Errorf("claims every hold for 10 intervals: %d won, want >= 10 (one per interval)", budget)
	}
	control := count(func(st *Store, _ time.Time) bool {
		won, _, err := st.ClaimUntil(context.Background(), key, hold)
		if err != nil {
			t.Fatal(err)
		}
		return won
	})
	if control <= burst+10 {
		t.Errorf("control: claims without a budget won %d times, no more than with one (%d): the test cannot see a budget", control, budget)
	}
	t.Logf("claims every %v for %v: %d won with a budget, %d without", hold, 10*interval, budget, control)
}

// TestClaimBudgetHostileValue: a planted value under a budgeted claim key
// (far deadlines, garbage) is taken over, never trusted (which would stop
// the fleet's queries); a live deadline of ClaimUntil (an older process of
// the fleet) holds the key as a claim does.
func TestClaimBudgetHostileValue(t *testing.T) {
	clk := &clock{}
	clk.ns.Store(time.Now().UnixNano())
	stores := newStores(t, 4, clk)
	s := testserver.Require(t)
	c := memcache.New(s.Memcached(testserver.PrimaryRegion))
	now := clk.now().UnixNano()
	far := strconv.FormatInt(now+int64(time.Hour), 10)
	live := strconv.FormatInt(now+int64(10*time.Millisecond), 10)
	for _, tc := range []struct {
		v    string
		wins int
	}{
		{"garbage", 1}, {"", 1}, {"b1", 1}, {"b1 x y", 1}, {"b1 " + far + " " + far, 1},
		{"b1 " + live + " " + far, 1}, {far, 1}, {"9000000000000000000", 1},
		{live, 0}, {"b1 " + live + " " + live, 0},
	} {
		key := testKey(t)
		if err := c.Set(&memcache.Item{Key: key, Value: []byte(tc.v), Expiration: 60}); err != nil {
			t.Fatal(err)
		}
		if n := raceBudget(t, stores, key, 2*time.Millisecond, 20*time.Millisecond, 3); n != tc.wins {
			t.Errorf("planted %q: %d winners, want %d", tc.v, n, tc.wins)
		}
	}
}
