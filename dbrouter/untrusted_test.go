package dbrouter

import (
	"context"
	"log/slog"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/regiondb/regiondb/internal/testserver"
)

// injectionUUID is the planted position: a "UUID" whose 16 bytes
// spell `' + sleep(5) + '`. Under MariaDB the old wait query pasted them
// into MASTER_GTID_WAIT('…').
const injectionUUID = "27202b20-736c-6565-7028-3529202b2027"

// untrustedPositions are positions as they may arrive from a caller, a
// cache item, a token or the shared watermark store, with the dialects
// that accept them. They feed the tests and the fuzz seeds.
var untrustedPositions = []struct {
	name                    string
	text                    string
	maria, mysql, heartbeat bool
}{
	{"empty", "", true, true, true},
	{"domain", "0:5", true, false, false},
	{"two domains", "0:8,1:5", true, false, false},
	{"max domain", "4294967295:18446744073709551615", true, false, false},
	{"uuid", uuidA + ":1234", false, true, false},
	{"upper-case uuid", strings.ToUpper(uuidA) + ":1", false, true, false},
	{"injection uuid", injectionUUID + ":1", false, true, false},
	{"heartbeat", "hb:99", false, false, true},
	{"domain and uuid", "0:1," + uuidA + ":1", false, false, false},
	{"domain and heartbeat", "0:1,hb:1", false, false, false},
	{"quote", "0':1", false, false, false},
	{"sql in domain", "0) OR SLEEP(5) -- :1", false, false, false},
	{"domain too big", "4294967296:1", false, false, false},
	{"leading zero", "01:1", false, false, false},
	{"plus sign", "+1:1", false, false, false},
	{"negative seq", "0:-1", false, false, false},
	{"seq overflow", "0:18446744073709551616", false, false, false},
	{"short uuid", "27202b20-736c-6565-7028-3529202b20:1", false, false, false},
	{"uuid no dashes", "27202b20736c656570283529202b2027abcd:1", false, false, false},
	{"uuid non-hex", "2720zb20-736c-6565-7028-3529202b2027:1", false, false, false},
	{"mariadb gtid", "0-1-8", false, false, false},
	{"empty part", "0:1,", false, false, false},
	{"spaces", " 0:1", false, false, false},
	{"nul", "0:1\x00", false, false, false},
	{"too many streams", strings.Repeat("1:1,", maxPositionParts) + "2:1", false, false, false},
}

// waitShapes are the only wait queries each dialect may send: numbers,
// UUIDs and the timeout, nothing else.
var waitShapes = map[Dialect]*regexp.Regexp{
	DialectMariaDB: regexp.MustCompile(`^SELECT IF\(@@global\.read_only = 0, NULL, MASTER_GTID_WAIT\('[0-9]{1,10}-0-[0-9]{1,20}(,[0-9]{1,10}-0-[0-9]{1,20})*', [0-9]+\.[0-9]{3}\)\)$`),
	DialectMySQL: regexp.MustCompile(`^SELECT WAIT_FOR_EXECUTED_GTID_SET\('` +
		`[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}:1-[0-9]{1,20}` +
		`(,[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}:1-[0-9]{1,20})*', [0-9]+\.[0-9]{3}\)$`),
}

func routerFor(t testing.TB, d Dialect) *Router {
	t.Helper()
	dl, err := newDialect(d, "")
	if err != nil {
		t.Fatal(err)
	}
	return &Router{dialect: dl}
}

func TestPositionDialect(t *testing.T) {
	for _, tc := range untrustedPositions {
		t.Run(tc.name, func(t *testing.T) {
			for d, want := range map[Dialect]bool{DialectMariaDB: tc.maria, DialectMySQL: tc.mysql, DialectHeartbeat: tc.heartbeat} {
				rt := routerFor(t, d)
				p, err := rt.parsePosition(tc.text)
				if (err == nil) != want {
					t.Errorf("%v: parsePosition(%q) error %v, want ok=%v", d, tc.text, err, want)
				}
				if got := rt.stats.positionsRejected.Load(); got != map[bool]int64{true: 0, false: 1}[want] {
					t.Errorf("%v: PositionsRejected = %d", d, got)
				}
				// Whatever the input, the wait query has its dialect's
				// fixed shape, or is "" (no wait).
				if err == nil {
					if q := rt.dialect.waitQuery(p, time.Second); q != "" && !waitShapes[d].MatchString(q) {
						t.Errorf("%v: wait query %q", d, q)
					}
				}
				_, done := rt.RequirePosition(t.Context(), tc.text)
				if !done() {
					t.Errorf("requirement reports a read before any read")
				}
				if got := rt.MergePositions(tc.text, ""); want && got != mustPos(t, tc.text).String() || !want && got != "" {
					t.Errorf("%v: MergePositions(%q, \"\") = %q", d, tc.text, got)
				}
			}
		})
	}
}

// TestWaitQueryForeignStreams checks that a wait query is never built from
// a stream of another dialect, even if such a position got past the entry
// checks: the typed keys make the MariaDB query format domain numbers and
// the MySQL query UUID bytes only.
func TestWaitQueryForeignStreams(t *testing.T) {
	all := mustPos(t, "0:1,"+injectionUUID+":1,hb:1")
	for _, d := range []Dialect{DialectMariaDB, DialectMySQL, DialectHeartbeat} {
		rt := routerFor(t, d)
		if q := rt.dialect.waitQuery(all, time.Second); q != "" {
			t.Errorf("%v: mixed position gives wait query %q", d, q)
		}
	}
	if q := (mysqlDialect{}).waitQuery(mustPos(t, injectionUUID+":1"), time.Second); !waitShapes[DialectMySQL].MatchString(q) ||
		!strings.Contains(q, "'"+injectionUUID+":1-1'") {
		t.Errorf("mysql: %q", q)
	}
	if q := (mysqlDialect{}).waitQuery(mustPos(t, uuidA+":0"), time.Second); q != "" {
		t.Errorf("mysql wait for nothing: %q", q)
	}
}

// TestForeignPositionFakes: the crash (DialectMySQL, "0:5", one
// read) and its heartbeat twin. MySQL 8 and Aurora do not run here, hence
// the fake servers.
func TestForeignPositionFakes(t *testing.T) {
	for _, d := range []Dialect{DialectMySQL, DialectHeartbeat} {
		t.Run(d.String(), func(t *testing.T) {
			w := &fakeServer{seq: 10, writer: true, mysql: d == DialectMySQL}
			r := &fakeServer{seq: 10, mysql: d == DialectMySQL}
			rt, err := Open(Config{
				Region: "a", Dialect: d,
				Writer:  Endpoint{Name: "w", Connector: w},
				Readers: []Endpoint{{Name: "r", Connector: r, Region: "a"}},
				MaxWait: 30 * time.Millisecond, PollInterval: time.Millisecond,
			})
			if err != nil {
				t.Fatal(err)
			}
			defer rt.Close()
			for _, pos := range []string{"0:5", "0:1", injectionUUID + ":1", "hb:1,0:1"} {
				if d == DialectMySQL && strings.HasPrefix(pos, injectionUUID) {
					continue // a valid MySQL position
				}
				ctx, ok := rt.RequirePosition(t.Context(), pos)
				before := w.served()
				if err := rt.QueryRowContext(ctx, "SELECT v FROM t").Scan(new(int64)); err != nil {
					t.Fatal(err)
				}
				if w.served() != before+1 || !ok() {
					t.Errorf("%q: writer served %d reads (want %d), ok %v", pos, w.served(), before+1, ok())
				}
			}
			want := map[Dialect]int64{DialectMySQL: 3, DialectHeartbeat: 4}[d]
			if got := rt.Stats().PositionsRejected; got != want {
				t.Errorf("PositionsRejected = %d, want %d", got, want)
			}
		})
	}
}

// TestForeignTokenToWriter: a token signed with the fleet's key but holding
// a position of another dialect (a fleet mid-migration) is rejected, and the
// scope's reads go to the writer.
func TestForeignTokenToWriter(t *testing.T) {
	w := &fakeServer{seq: 10, writer: true, mysql: true}
	r := &fakeServer{seq: 10, mysql: true}
	rt, err := Open(Config{
		Region: "a", Dialect: DialectMySQL, TokenKeys: []TokenKey{testKey1},
		Writer:  Endpoint{Name: "w", Connector: w},
		Readers: []Endpoint{{Name: "r", Connector: r, Region: "a"}},
		MaxWait: 30 * time.Millisecond, PollInterval: time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer rt.Close()
	c := &tokenCodec{keys: []TokenKey{testKey1}, maxAge: time.Hour}
	tok, err := c.encode(mustPos(t, "0:5"), time.Now())
	if err != nil {
		t.Fatal(err)
	}
	ctx, err := rt.WithToken(t.Context(), tok)
	if err == nil {
		t.Fatal("foreign token accepted")
	}
	if err := rt.QueryRowContext(ctx, "SELECT v FROM t").Scan(new(int64)); err != nil {
		t.Fatal(err)
	}
	if w.served() != 1 || r.served() != 0 {
		t.Errorf("writer served %d, reader %d", w.served(), r.served())
	}
	if s := rt.Stats(); s.PositionsRejected != 1 || s.TokensRejected != 1 {
		t.Errorf("stats %+v", s)
	}
}

func TestSharedForeignPosition(t *testing.T) {
	now := time.Now()
	for _, tc := range untrustedPositions {
		if tc.text == "" || strings.Contains(tc.text, " ") {
			continue // "" is "-" there; the value is space-separated
		}
		v := "v1 " + tc.text + " 0 0 1 " + itoa(int(now.UnixNano()))
		for d, want := range map[Dialect]bool{DialectMariaDB: tc.maria, DialectMySQL: tc.mysql, DialectHeartbeat: tc.heartbeat} {
			if _, ok := parseShared(v, routerFor(t, d).dialect.kind()); ok != want {
				t.Errorf("%v: parseShared(%q) ok %v", d, v, ok)
			}
		}
	}
	for _, bad := range []string{
		"v1 0:1 -5 0 1 0", "v1 0:1 0 0 2 0",
		"v1 0:1 0 " + itoa(int(now.Add(time.Hour).UnixNano())) + " 1 0",
		"v1 0:1 0 0 1 " + itoa(int(now.Add(time.Hour).UnixNano())),
	} {
		if _, ok := parseShared(bad, streamDomain); ok {
			t.Errorf("parseShared(%q) accepted", bad)
		}
	}
}

// TestInjectionPositionStack sends the planted position to a
// MariaDB router on the stack: the read goes to the writer, the readers'
// pools send nothing but their monitors' fixed queries, and the count says
// so.
func TestInjectionPositionStack(t *testing.T) {
	s := testserver.Require(t)
	rt := openRouter(t, stackConfig(t, s, testserver.PrimaryRegion))
	ctx := ctxT(t)
	for _, pos := range []string{injectionUUID + ":1", "0:5,hb:1", "x"} {
		rctx, ok := rt.RequirePosition(ctx, pos)
		if id := serverID(t, rctx, rt, "SELECT @@server_id"); id != idM1 || !ok() {
			t.Errorf("%q: read served by server %d (ok %v), want the writer", pos, id, ok())
		}
	}
	if got := rt.Stats().PositionsRejected; got != 3 {
		t.Errorf("PositionsRejected = %d", got)
	}
}

// panickyStore is a WatermarkStore whose Get panics a number of times (a
// user implementation with a bug), then acts as an empty store.
type panickyStore struct {
	panics atomic.Int64 // panics left
	gets   atomic.Int64
}

func (s *panickyStore) Get(context.Context, string) (string, error) {
	s.gets.Add(1)
	if s.panics.Add(-1) >= 0 {
		panic("store bug")
	}
	return "", nil
}
func (s *panickyStore) Set(context.Context, string, string, time.Duration) error { return nil }
func (s *panickyStore) Claim(context.Context, string, time.Duration) (bool, error) {
	return true, nil
}

// syncBuffer is an io.Writer safe for concurrent use (a log sink).
type syncBuffer struct {
	mu sync.Mutex // protects b
	b  strings.Builder
}

func (w *syncBuffer) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.Write(p)
}
func (w *syncBuffer) String() string { w.mu.Lock(); defer w.mu.Unlock(); return w.b.String() }

// TestMonitorRestartsAfterPanic: a monitor that panics is logged and
// restarted with backoff; the process lives on, the reader comes back, and
// Close stops everything (goleak in TestMain).
func TestMonitorRestartsAfterPanic(t *testing.T) {
	w := &fakeServer{seq: 10, writer: true, mysql: true}
	r := &fakeServer{seq: 10, mysql: true}
	store := &panickyStore{}
	store.panics.Store(3)
	var logs syncBuffer
	rt, err := Open(Config{
		Region: "a", Dialect: DialectMySQL,
		Writer:     Endpoint{Name: "w", Connector: w},
		Readers:    []Endpoint{{Name: "r", Connector: r, Region: "a"}},
		Watermarks: store, MonitorInterval: 50 * time.Millisecond,
		Logger: slog.New(slog.NewJSONHandler(&logs, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	defer rt.Close()
	waitFor(t, 10*time.Second, "the restarted monitor to poll the reader", func() bool {
		return store.gets.Load() > 3 && rt.Stats().MonitorQueries > 0
	})
	if n := strings.Count(logs.String(), "background goroutine failed; restarting"); n != 3 {
		t.Errorf("%d restarts logged, want 3:\n%s", n, logs.String())
	}
	if !strings.Contains(logs.String(), `"error":"panic: store bug"`) {
		t.Errorf("panic not logged:\n%s", logs.String())
	}
	waitFor(t, 10*time.Second, "the reader to serve again", func() bool {
		if err := rt.QueryRowContext(t.Context(), "SELECT v FROM t").Scan(new(int64)); err != nil {
			t.Fatal(err)
		}
		return r.served() > 0
	})
	if err := rt.Close(); err != nil {
		t.Fatal(err)
	}
}
