// Package testserver lets tests and harnesses find the local two-region stack
// of real servers (MariaDB primary and GTID replicas, memcached, dynalite)
// started by the stack command, and drive faults on it.
//
// The stack runs as one process, started by `make test` or `make demo`
// (`go run ./internal/cmd/stack run -- CMD`). It exports the path of its state
// file in the REGIONDB_STACK environment variable of CMD, and sets
// REGIONDB_REQUIRE_STACK=1 there, so that a missing stack fails the tests
// instead of skipping them.
//
// Topology (server names as used by the fault controls):
//
//	ap-northeast-1 (primary region)   us-east-1
//	  m1   MariaDB primary (writer)     r2   MariaDB replica (reader), replicating
//	  r1   MariaDB replica (reader)          through a delaying TCP proxy (150 ms)
//	  mc1  memcached                    mc2  memcached
//	  ddb1 dynalite                     ddb2 dynalite
//
// A client of one region reaches the MariaDB servers of the other through
// client routes ("m1 via us-east-1", "r1 via us-east-1", "r2 via
// ap-northeast-1"): delaying TCP proxies that add the regions' round trip
// (150 ms unless REGIONDB_STACK_RTT says otherwise), so that a cross-region
// query costs what it costs in production. [Stack.DSN] and [Stack.Addr]
// give the direct address, as always; [Stack.DSNFrom] and [Stack.AddrFrom]
// give the one a client of a given region uses.
//
// The application user (regiondb/regiondb) has all privileges on databases
// whose names start with "regiondb" but cannot bypass read_only, so a write
// sent to a replica fails with MySQL error 1290 instead of breaking replication.
package testserver

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// Region names of the local stack.
const (
	PrimaryRegion   = "ap-northeast-1"
	SecondaryRegion = "us-east-1"
)

// Environment variables shared by the stack command and its clients.
const (
	// EnvState names the stack's state file.
	EnvState = "REGIONDB_STACK"
	// EnvRequire, when "1", makes Require fail instead of skip without a stack.
	EnvRequire = "REGIONDB_REQUIRE_STACK"
)

// Server kinds.
const (
	KindMariaDB   = "mariadb"
	KindMemcached = "memcached"
	KindDynamoDB  = "dynamodb"
	// KindProxy is the kind of a dead proxy in State.UnexpectedDeaths
	// (a client route or a replication link).
	KindProxy = "proxy"
)

// Server describes one server of the stack.
type Server struct {
	Name    string `json:"name"`
	Kind    string `json:"kind"`
	Region  string `json:"region"`
	Host    string `json:"host"`
	Port    int    `json:"port"`
	Running bool   `json:"running"`
	// PID is the process id of a running server.
	PID int `json:"pid,omitempty"`
	// Role is "primary" or "replica" for MariaDB servers.
	Role string `json:"role,omitempty"`
}

// Addr returns host:port.
func (s Server) Addr() string { return s.Host + ":" + strconv.Itoa(s.Port) }

// Route is a client route: a delaying TCP proxy through which clients of
// region From reach the MariaDB server Server of the other region, with
// RTTMillis added to every round trip.
type Route struct {
	Name      string `json:"name"` // "m1 via us-east-1"
	Server    string `json:"server"`
	From      string `json:"from"`
	Host      string `json:"host"`
	Port      int    `json:"port"`
	RTTMillis int64  `json:"rtt_ms"`
	Running   bool   `json:"running"`
}

// Addr returns host:port.
func (r Route) Addr() string { return r.Host + ":" + strconv.Itoa(r.Port) }

// State is what the stack publishes in its state file and control API.
type State struct {
	Dir        string   `json:"dir"`
	ControlURL string   `json:"control_url"`
	Servers    []Server `json:"servers"`
	// Routes are the client routes between the regions.
	Routes []Route `json:"routes"`
	// AppUser and AppPassword are the application's database credentials.
	AppUser     string `json:"app_user"`
	AppPassword string `json:"app_password"`
	// UnexpectedDeaths are the server exits no fault control asked for (a
	// crash, a kill behind the stack's back), oldest first. The stack fails
	// the command it runs when there is any.
	UnexpectedDeaths []Death `json:"unexpected_deaths"`
}

// Death is one server exit that no fault control asked for.
type Death struct {
	Server string    `json:"server"`
	Kind   string    `json:"kind"`
	Region string    `json:"region"`
	PID    int       `json:"pid"`
	Exit   string    `json:"exit"` // as os.ProcessState says: "signal: killed", "exit status 1"
	At     time.Time `json:"at"`
	// LastLog are the last lines the server wrote to its log.
	LastLog []string `json:"last_log"`
}

// String is the death on one line, with the server's last log lines.
func (d Death) String() string {
	return fmt.Sprintf("server %s (%s, %s, pid %d) died unexpectedly (%s); last log lines: %s",
		d.Server, d.Kind, d.Region, d.PID, d.Exit, strings.Join(d.LastLog, " | "))
}

// Stack is a handle on a running stack. It is safe for concurrent use.
type Stack struct {
	client *http.Client

	mu    sync.Mutex // protects state
	state State
}

// snapshot returns the state as last seen.
func (s *Stack) snapshot() State {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.state
}

// ErrNoStack is returned by Lookup when no stack is running.
var ErrNoStack = errors.New("testserver: no regiondb stack is running (run `make test`, or `make stack` in another shell)")

// Lookup finds the running stack through REGIONDB_STACK, or the default state
// file .stack/state.json at the module root.
func Lookup() (*Stack, error) {
	path := os.Getenv(EnvState)
	if path == "" {
		root, err := ModuleRoot()
		if err != nil {
			return nil, ErrNoStack
		}
		path = filepath.Join(root, ".stack", "state.json")
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, ErrNoStack
	}
	var st State
	if err := json.Unmarshal(b, &st); err != nil {
		return nil, fmt.Errorf("testserver: corrupt state file %s: %w", path, err)
	}
	// No keep-alives: a control call leaves no idle connection (and no
	// goroutine) behind for the caller's leak checks to find.
	s := &Stack{state: st, client: &http.Client{Timeout: 60 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}}
	if err := s.refresh(context.Background()); err != nil {
		return nil, fmt.Errorf("%w: state file %s is stale: %v", ErrNoStack, path, err)
	}
	return s, nil
}

// Required reports whether the tests run under the README's test command,
// where a missing stack is a failure.
func Required() bool { return os.Getenv(EnvRequire) == "1" }

// Require returns the running stack. Without one it fails the test under
// `make test` and skips it, with one line saying how to start the stack,
// anywhere else.
func Require(tb testing.TB) *Stack {
	tb.Helper()
	s, err := Lookup()
	if err != nil {
		if Required() {
			tb.Fatalf("integration test needs the stack: %v", err)
		}
		tb.Skipf("integration test skipped: %v", err)
	}
	return s
}

// ModuleRoot returns the directory holding regiondb's go.mod, searched
// upwards from the working directory (past the go.mod of a nested module
// such as compat/).
func ModuleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if b, err := os.ReadFile(filepath.Join(dir, "go.mod")); err == nil &&
			bytes.HasPrefix(bytes.TrimSpace(b), []byte("module github.com/regiondb/regiondb\n")) {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("testserver: no go.mod above the working directory")
		}
		dir = parent
	}
}

// State returns the stack's current state (servers, roles, which is primary).
func (s *Stack) State(ctx context.Context) (State, error) {
	if err := s.refresh(ctx); err != nil {
		return State{}, err
	}
	return s.snapshot(), nil
}

func (s *Stack) refresh(ctx context.Context) error {
	var st State
	if err := s.call(ctx, "state", nil, &st); err != nil {
		return err
	}
	s.mu.Lock()
	s.state = st
	s.mu.Unlock()
	return nil
}

// Server returns the named server as last seen.
func (s *Stack) Server(name string) Server {
	for _, sv := range s.snapshot().Servers {
		if sv.Name == name {
			return sv
		}
	}
	return Server{Name: name}
}

// Addr returns host:port of the named server ("m1", "r1", "r2", "mc1", ...).
func (s *Stack) Addr(name string) string { return s.Server(name).Addr() }

// DSN returns a go-sql-driver/mysql DSN for the application user on the named
// MariaDB server and database ("" for none).
func (s *Stack) DSN(name, database string) string {
	st := s.snapshot()
	return fmt.Sprintf("%s:%s@tcp(%s)/%s?parseTime=true", st.AppUser, st.AppPassword, s.Addr(name), database)
}

// AddrFrom returns host:port of the named server for a client in region:
// the server itself in its own region, else its client route, which adds
// the regions' round trip.
func (s *Stack) AddrFrom(region, name string) string {
	st := s.snapshot()
	for _, sv := range st.Servers {
		if sv.Name == name && sv.Region == region {
			return sv.Addr()
		}
	}
	for _, r := range st.Routes {
		if r.Server == name && r.From == region {
			return r.Addr()
		}
	}
	return s.Addr(name)
}

// DSNFrom is [Stack.DSN] for a client in region (see [Stack.AddrFrom]).
func (s *Stack) DSNFrom(region, name, database string) string {
	st := s.snapshot()
	return fmt.Sprintf("%s:%s@tcp(%s)/%s?parseTime=true", st.AppUser, st.AppPassword, s.AddrFrom(region, name), database)
}

// AdminDSN returns a root DSN for the named MariaDB server. Writes through it
// on a replica break replication: use it for inspection only.
func (s *Stack) AdminDSN(name string) string {
	return fmt.Sprintf("root@tcp(%s)/?parseTime=true", s.Addr(name))
}

// Memcached returns the address of the region's memcached.
func (s *Stack) Memcached(region string) string { return s.Addr(s.byRegion(KindMemcached, region)) }

// DynamoDBEndpoint returns the base URL of the region's dynalite.
func (s *Stack) DynamoDBEndpoint(region string) string {
	return "http://" + s.Addr(s.byRegion(KindDynamoDB, region))
}

// Reader returns the name of the region's MariaDB replica ("r1" or "r2").
func (s *Stack) Reader(region string) string {
	if region == PrimaryRegion {
		return "r1"
	}
	return "r2"
}

func (s *Stack) byRegion(kind, region string) string {
	for _, sv := range s.snapshot().Servers {
		if sv.Kind == kind && sv.Region == region {
			return sv.Name
		}
	}
	return ""
}

// Primary returns the name of the current MariaDB primary (it changes after Promote).
func (s *Stack) Primary(ctx context.Context) (string, error) {
	if err := s.refresh(ctx); err != nil {
		return "", err
	}
	for _, sv := range s.snapshot().Servers {
		if sv.Kind == KindMariaDB && sv.Role == "primary" {
			return sv.Name, nil
		}
	}
	return "", errors.New("testserver: no primary")
}

// UnexpectedDeaths returns the server exits no fault control asked for since
// the stack started (none: an empty slice).
func (s *Stack) UnexpectedDeaths(ctx context.Context) ([]Death, error) {
	st, err := s.State(ctx)
	if err != nil {
		return nil, err
	}
	return st.UnexpectedDeaths, nil
}

// Kill sends SIGKILL to the named server and waits for it to exit.
func (s *Stack) Kill(ctx context.Context, name string) error { return s.op(ctx, "kill", name, 0) }

// Stop stops the named server cleanly (SIGTERM) and waits for it to exit.
func (s *Stack) Stop(ctx context.Context, name string) error { return s.op(ctx, "stop", name, 0) }

// Start brings a stopped or killed server back and waits until it serves. A
// former primary comes back as a read-only replica of the current primary.
func (s *Stack) Start(ctx context.Context, name string) error { return s.op(ctx, "start", name, 0) }

// Stall stops the replica's SQL (apply) thread: it keeps fetching the binlog
// but applies nothing, so it falls behind for as long as it is stalled.
func (s *Stack) Stall(ctx context.Context, replica string) error {
	return s.op(ctx, "stall", replica, 0)
}

// Resume restarts the replica's SQL thread after Stall or Lag.
func (s *Stack) Resume(ctx context.Context, replica string) error {
	return s.op(ctx, "resume", replica, 0)
}

// Lag stalls the replica now and resumes it after d, without blocking: the
// replica falls d behind and then catches up.
func (s *Stack) Lag(ctx context.Context, replica string, d time.Duration) error {
	return s.op(ctx, "lag", replica, d)
}

// SetLinkDelay sets the one-way delay of the replica's replication link (the
// delaying TCP proxy between it and the primary). r2's default is 150 ms, r1's 0.
func (s *Stack) SetLinkDelay(ctx context.Context, replica string, d time.Duration) error {
	return s.op(ctx, "linkdelay", replica, d)
}

// SetRegionRTT sets the round trip the client routes add between the
// regions (default 150 ms; Reset restores it).
func (s *Stack) SetRegionRTT(ctx context.Context, d time.Duration) error {
	if d < 0 {
		return fmt.Errorf("testserver: region round trip %s is negative", d)
	}
	q := url.Values{"ms": {strconv.FormatInt(d.Milliseconds(), 10)}}
	if err := s.call(ctx, "regionrtt", q, nil); err != nil {
		return err
	}
	return s.refresh(ctx)
}

// Promote makes the replica the primary (read_only off, replication reset) and
// re-points every other running replica at it with GTID. Kill the old primary
// first, as a failover would. The replica may be in the other region (r2,
// after KillRegion of the writer's region): then links get the delays of the
// new geometry (150 ms to ap-northeast-1's servers), and only servers in the
// new primary's region acknowledge semi-sync commits. Servers stopped at the
// time rejoin as replicas of the new primary when started; a server that had
// transactions the new primary lacks drops them from its GTID state.
func (s *Stack) Promote(ctx context.Context, replica string) error {
	return s.op(ctx, "promote", replica, 0)
}

// KillRegion kills every MariaDB server of the region at once (SIGKILL), as a
// regional outage would: KillRegion(ctx, PrimaryRegion) takes m1 and r1
// down; Promote(ctx, "r2") then makes us-east-1 the writer's region.
func (s *Stack) KillRegion(ctx context.Context, region string) error {
	return s.op(ctx, "killregion", region, 0)
}

// Reset puts the MariaDB servers back to a fresh topology (m1 primary, r1 and
// r2 replicas, empty regiondb database, default link delays), starts any
// stopped server, and stops session-table replication. It takes about 2 s.
func (s *Stack) Reset(ctx context.Context) error { return s.op(ctx, "reset", "", 0) }

// Replicate copies the items of the named DynamoDB table between the two
// regions' dynalites, each change arriving in the other region after delay
// (last writer wins), like a DynamoDB Global Table. The table must exist in
// both regions. Calling it again changes the delay; a delay < 0 stops it.
func (s *Stack) Replicate(ctx context.Context, table string, delay time.Duration) error {
	q := url.Values{"table": {table}, "ms": {strconv.FormatInt(delay.Milliseconds(), 10)}}
	return s.call(ctx, "replicate", q, nil)
}

func (s *Stack) op(ctx context.Context, op, server string, d time.Duration) error {
	q := url.Values{}
	if server != "" {
		q.Set("server", server)
	}
	if d != 0 {
		q.Set("ms", strconv.FormatInt(d.Milliseconds(), 10))
	}
	if err := s.call(ctx, op, q, nil); err != nil {
		return err
	}
	return s.refresh(ctx)
}

func (s *Stack) call(ctx context.Context, op string, q url.Values, out any) error {
	u := s.snapshot().ControlURL + "/v1/" + op
	if len(q) > 0 {
		u += "?" + q.Encode()
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u, nil)
	if err != nil {
		return err
	}
	resp, err := s.client.Do(req)
	if err != nil {
		return fmt.Errorf("testserver: %s: %w", op, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("testserver: %s %s: %s", op, q.Encode(), bytes.TrimSpace(body))
	}
	if out != nil {
		return json.Unmarshal(body, out)
	}
	return nil
}
