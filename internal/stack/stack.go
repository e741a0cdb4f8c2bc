// Package stack runs the local two-region stack of real servers that regiondb's
// tests, harnesses and demo use: a MariaDB primary with two GTID replicas
// (one per region, the us-east-1 one behind a delaying TCP proxy), client
// routes (delaying TCP proxies through which a client of one region reaches
// the MariaDB servers of the other, at a real round trip), a memcached
// and a dynalite (DynamoDB-compatible) per region, a test-only replicator for
// DynamoDB tables, and an HTTP control API for faults. The internal/testserver
// package is its client.
//
// Every server is a child of the stack process, started with a parent-death
// signal, so none outlives the stack, even when the stack is killed; a stack
// that finds the recorded children of a crashed earlier run kills them first
// (only if their command lines still match). It deletes nothing outside its
// own folder.
//
// The stack supervises its servers: an exit that no control operation asked
// for is a death, logged on one line with the server's last log lines,
// recorded in the state file (testserver.State.UnexpectedDeaths) and followed
// by a restart. dynalite runs from the stack's own entry script
// (dynalite-server.js), which keeps a client's aborted request from ending
// it and its data on disk.
package stack

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	_ "github.com/go-sql-driver/mysql" // the MariaDB driver for setup and faults

	"github.com/regiondb/regiondb/internal/testserver"
)

// DefaultPortBase is the first of the ports the stack uses (base+1 to base+40),
// below Linux's ephemeral range (32768-60999) so that no client connection
// holds one of them by chance.
const DefaultPortBase = 21100

// DefaultRemoteLinkDelay is the one-way delay of the us-east-1 replica's
// replication link.
const DefaultRemoteLinkDelay = 150 * time.Millisecond

const (
	appUser     = "regiondb"
	appPassword = "regiondb"
	marker      = ".regiondb-stack"
)

// Config says where the stack lives.
type Config struct {
	// Dir is the stack's own folder (absolute). It must be empty, missing, or
	// a folder an earlier stack made.
	Dir string
	// PortBase is the first port; the stack uses PortBase+1 to PortBase+40.
	PortBase int
	// Dynalite is the folder of the dynalite npm package (holding index.js).
	Dynalite string
	// RegionRTT is the round trip a client route adds between the regions
	// (see testserver.Route). If zero, DefaultRegionRTT is used.
	RegionRTT time.Duration
	// Logf reports progress; nil is silent.
	Logf func(format string, args ...any)
}

type server struct {
	testserver.Server
	proc    *proc
	prog    string
	dataDir string // MariaDB: instance folder
	// source is the primary a MariaDB replica was last pointed at ("" for
	// the primary itself): a replica restarted after a promotion follows
	// the new primary.
	source string
}

// Stack is a running stack.
type Stack struct {
	cfg Config
	sp  *spawner

	mu      sync.Mutex // serialises control operations; protects the fields below
	servers map[string]*server
	order   []string
	proxies map[string]*delayProxy // MariaDB server -> its replication link proxy
	// routes are the client routes by name, in routeOrder.
	routes     map[string]*route
	routeOrder []string
	primary    string
	// promotedAt is the GTID position the current primary had applied when it was promoted.
	promotedAt string
	lagTimers  map[string]*time.Timer

	repl *replicator
	ctl  *http.Server
	// deaths are the server exits no control operation asked for.
	deaths []testserver.Death
	// closed is set by Down: exits after it are no deaths.
	closed bool
	// restarts counts, per server, its restarts after unexpected deaths.
	restarts map[string]int
}

func (c *Config) port(offset int) int { return c.PortBase + offset }

// Up checks the machine, starts every server and the control API, and writes
// the state file. On error it has stopped whatever it started.
func Up(ctx context.Context, cfg Config) (_ *Stack, err error) {
	if cfg.Logf == nil {
		cfg.Logf = func(string, ...any) {}
	}
	if cfg.RegionRTT == 0 {
		cfg.RegionRTT = DefaultRegionRTT
	}
	if cfg.RegionRTT < 0 {
		return nil, fmt.Errorf("stack: region round trip %s is negative", cfg.RegionRTT)
	}
	if !filepath.IsAbs(cfg.Dir) || filepath.Clean(cfg.Dir) == "/" {
		return nil, fmt.Errorf("stack: folder %q must be an absolute path below the project", cfg.Dir)
	}
	if err := claimDir(cfg.Dir); err != nil {
		return nil, err
	}
	s := &Stack{cfg: cfg, sp: newSpawner(), servers: map[string]*server{}, proxies: map[string]*delayProxy{}, routes: map[string]*route{}, lagTimers: map[string]*time.Timer{}, restarts: map[string]int{}}
	defer func() {
		if err != nil {
			s.Down()
		}
	}()
	if err := s.checkPrograms(); err != nil {
		return nil, err
	}
	s.define()
	s.defineRoutes()
	if err := s.checkPorts(); err != nil {
		return nil, err
	}
	if err := s.startRoutes(); err != nil {
		return nil, err
	}
	if err := s.template(ctx); err != nil {
		return nil, err
	}
	errc := make(chan error, 2)
	go func() { errc <- s.startAux() }()
	go func() { errc <- s.startMariaDB(ctx) }()
	for range 2 {
		if e := <-errc; e != nil && err == nil {
			err = e
		}
	}
	if err != nil {
		return nil, err
	}
	s.repl = newReplicator(s.DynamoDBEndpoint(testserver.PrimaryRegion), s.DynamoDBEndpoint(testserver.SecondaryRegion))
	if err := s.serveControl(); err != nil {
		return nil, err
	}
	if err := s.writeState(); err != nil {
		return nil, err
	}
	return s, nil
}

// claimDir makes dir the stack's folder, refusing a folder that holds other
// things or a live stack, and killing the recorded children of a dead one.
func claimDir(dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("stack: create folder: %w", err)
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("stack: read folder: %w", err)
	}
	if len(entries) > 0 {
		if _, err := os.Stat(filepath.Join(dir, marker)); err != nil {
			return fmt.Errorf("stack: folder %s is not empty and was not made by a stack; choose another REGIONDB_STACK_DIR", dir)
		}
	}
	if b, err := os.ReadFile(filepath.Join(dir, "stack.pid")); err == nil {
		pid, _ := strconv.Atoi(strings.TrimSpace(string(b)))
		if pid > 0 && pid != os.Getpid() && strings.Contains(cmdline(pid), "stack") && syscall.Kill(pid, 0) == nil {
			return fmt.Errorf("stack: another stack (pid %d) is running from %s; stop it first (kill %d)", pid, dir, pid)
		}
	}
	var children []childRecord
	if b, err := os.ReadFile(filepath.Join(dir, "children.json")); err == nil {
		json.Unmarshal(b, &children)
		for _, c := range children {
			killOrphan(c.PID, c.Cmdline)
		}
		os.Remove(filepath.Join(dir, "children.json"))
	}
	os.Remove(filepath.Join(dir, "state.json"))
	if err := os.WriteFile(filepath.Join(dir, marker), []byte("made by regiondb's stack; safe to delete when no stack runs\n"), 0o644); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, "stack.pid"), []byte(strconv.Itoa(os.Getpid())+"\n"), 0o644)
}

type childRecord struct {
	PID     int    `json:"pid"`
	Cmdline string `json:"cmdline"`
}

func (s *Stack) checkPrograms() error {
	for _, p := range []struct{ prog, hint string }{
		{"mariadbd", "run `make deps` (Debian package mariadb-server)"},
		{"mariadb-install-db", "run `make deps` (Debian package mariadb-server)"},
		{"memcached", "run `make deps` (Debian package memcached)"},
		{"node", "install Node.js (Debian package nodejs)"},
	} {
		if _, err := lookPath(p.prog, p.hint); err != nil {
			return fmt.Errorf("stack: %w", err)
		}
	}
	if _, err := os.Stat(filepath.Join(s.cfg.Dynalite, "index.js")); err != nil {
		return fmt.Errorf("stack: dynalite not found in %s: run `make deps` (npm package dynalite, installed into .tools)", s.cfg.Dynalite)
	}
	return nil
}

// define lays out the servers and their ports.
func (s *Stack) define() {
	add := func(name, kind, region, role string, offset int) {
		s.servers[name] = &server{Server: testserver.Server{Name: name, Kind: kind, Region: region, Host: "127.0.0.1", Port: s.cfg.port(offset), Role: role}}
		s.order = append(s.order, name)
	}
	add("m1", testserver.KindMariaDB, testserver.PrimaryRegion, "primary", 1)
	add("r1", testserver.KindMariaDB, testserver.PrimaryRegion, "replica", 2)
	add("r2", testserver.KindMariaDB, testserver.SecondaryRegion, "replica", 3)
	add("mc1", testserver.KindMemcached, testserver.PrimaryRegion, "", 21)
	add("mc2", testserver.KindMemcached, testserver.SecondaryRegion, "", 22)
	add("ddb1", testserver.KindDynamoDB, testserver.PrimaryRegion, "", 31)
	add("ddb2", testserver.KindDynamoDB, testserver.SecondaryRegion, "", 32)
	s.primary = "m1"
}

// proxyPort is the port of a MariaDB server's replication link proxy.
func (s *Stack) proxyPort(name string) int {
	return s.servers[name].Port + 10
}

func (s *Stack) checkPorts() error {
	type use struct {
		port int
		what string
	}
	var uses []use
	for _, n := range s.order {
		uses = append(uses, use{s.servers[n].Port, n})
		if s.servers[n].Kind == testserver.KindMariaDB {
			uses = append(uses, use{s.proxyPort(n), n + "'s replication proxy"})
		}
	}
	for _, n := range s.routeOrder {
		uses = append(uses, use{s.routes[n].port, "the client route " + n})
	}
	uses = append(uses, use{s.cfg.port(40), "the control API"})
	for _, u := range uses {
		ln, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(u.port))
		if err != nil {
			return fmt.Errorf("stack: port %d (%s) is already in use; stop what holds it or set REGIONDB_STACK_PORTS to another base", u.port, u.what)
		}
		ln.Close()
	}
	return nil
}

// Down stops everything and removes the state file. It is safe to call more
// than once.
func (s *Stack) Down() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed = true
	if s.ctl != nil {
		s.ctl.Close()
		s.ctl = nil
	}
	if s.repl != nil {
		s.repl.Close()
	}
	for _, t := range s.lagTimers {
		t.Stop()
	}
	var wg sync.WaitGroup
	for _, sv := range s.servers {
		if sv.proc != nil {
			wg.Add(1)
			go func() {
				defer wg.Done()
				sv.proc.signal(syscall.SIGTERM, 10*time.Second)
			}()
		}
	}
	wg.Wait()
	for _, p := range s.proxies {
		p.Close()
	}
	s.proxies = map[string]*delayProxy{}
	for _, rt := range s.routes {
		if rt.proxy != nil {
			rt.proxy.Close()
		}
	}
	os.Remove(filepath.Join(s.cfg.Dir, "state.json"))
	os.Remove(filepath.Join(s.cfg.Dir, "children.json"))
	os.Remove(filepath.Join(s.cfg.Dir, "stack.pid"))
}

// recordChildren writes the running children's pids and command lines, so a
// later stack can clean up after a crash of this one.
func (s *Stack) recordChildren() {
	var recs []childRecord
	for _, n := range s.order {
		if sv := s.servers[n]; sv.proc != nil && sv.proc.alive() {
			recs = append(recs, childRecord{PID: sv.proc.cmd.Process.Pid, Cmdline: joinArgs(sv.proc.cmd.Path, sv.proc.cmd.Args[1:])})
		}
	}
	b, _ := json.Marshal(recs)
	os.WriteFile(filepath.Join(s.cfg.Dir, "children.json"), b, 0o644)
}

// State returns the published state.
func (s *Stack) State() testserver.State {
	st := testserver.State{Dir: s.cfg.Dir, ControlURL: "http://127.0.0.1:" + strconv.Itoa(s.cfg.port(40)), AppUser: appUser, AppPassword: appPassword,
		UnexpectedDeaths: append([]testserver.Death{}, s.deaths...)}
	for _, n := range s.order {
		sv := s.servers[n]
		out := sv.Server
		out.Running = sv.proc != nil && sv.proc.alive()
		if out.Running {
			out.PID = sv.proc.cmd.Process.Pid
		}
		st.Servers = append(st.Servers, out)
	}
	st.Routes = s.routeStates()
	return st
}

// StatePath is the state file's path.
func (s *Stack) StatePath() string { return filepath.Join(s.cfg.Dir, "state.json") }

func (s *Stack) writeState() error {
	s.recordChildren()
	b, err := json.MarshalIndent(s.State(), "", "  ")
	if err != nil {
		return err
	}
	tmp := s.StatePath() + ".tmp"
	if err := os.WriteFile(tmp, b, 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, s.StatePath())
}

// DynamoDBEndpoint is the URL of the region's dynalite.
func (s *Stack) DynamoDBEndpoint(region string) string {
	for _, n := range s.order {
		if sv := s.servers[n]; sv.Kind == testserver.KindDynamoDB && sv.Region == region {
			return "http://" + sv.Addr()
		}
	}
	return ""
}

// startAux starts the memcacheds and dynalites, the dynalites with empty data.
func (s *Stack) startAux() error {
	for _, n := range []string{"ddb1", "ddb2"} {
		d := s.dynaliteData(s.servers[n])
		if err := os.RemoveAll(d); err != nil {
			return fmt.Errorf("stack: empty %s: %w", d, err)
		}
		if err := os.MkdirAll(d, 0o755); err != nil {
			return fmt.Errorf("stack: %w", err)
		}
	}
	for _, n := range []string{"mc1", "mc2", "ddb1", "ddb2"} {
		if err := s.startProcess(s.servers[n]); err != nil {
			return err
		}
	}
	for _, n := range []string{"mc1", "mc2", "ddb1", "ddb2"} {
		if err := s.waitReady(s.servers[n]); err != nil {
			return err
		}
	}
	return nil
}

func (s *Stack) startProcess(sv *server) error {
	var prog string
	var args []string
	port := strconv.Itoa(sv.Port)
	switch sv.Kind {
	case testserver.KindMemcached:
		prog, _ = lookPath("memcached", "")
		args = []string{"-u", "root", "-l", "127.0.0.1", "-p", port, "-U", "0", "-m", "64", "-c", "1024", "-t", "2"}
	case testserver.KindDynamoDB:
		prog, _ = lookPath("node", "")
		script, err := s.dynaliteScript()
		if err != nil {
			return fmt.Errorf("stack: start %s: %w", sv.Name, err)
		}
		args = []string{script, s.cfg.Dynalite, "127.0.0.1", port, s.dynaliteData(sv)}
	case testserver.KindMariaDB:
		prog, _ = lookPath("mariadbd", "")
		args = s.mariadbArgs(sv)
	}
	p, err := s.sp.run(filepath.Join(s.cfg.Dir, sv.Name+".log"), func(p *proc) { s.exited(sv, p) }, prog, args...)
	if err != nil {
		return fmt.Errorf("stack: start %s: %w", sv.Name, err)
	}
	sv.proc = p
	return nil
}

// waitReady polls the server until it answers, for at most 30 s.
func (s *Stack) waitReady(sv *server) error {
	deadline := time.Now().Add(30 * time.Second)
	for {
		if !sv.proc.alive() {
			return fmt.Errorf("stack: %s exited at start: %s", sv.Name, lastLine(filepath.Join(s.cfg.Dir, sv.Name+".log"), sv))
		}
		if err := s.probe(sv); err == nil {
			return nil
		} else if time.Now().After(deadline) {
			return fmt.Errorf("stack: %s not ready after 30 s: %v", sv.Name, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (s *Stack) probe(sv *server) error {
	switch sv.Kind {
	case testserver.KindMariaDB:
		db, err := s.admin(sv.Name)
		if err != nil {
			return err
		}
		defer db.Close()
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		return db.PingContext(ctx)
	case testserver.KindDynamoDB:
		c := http.Client{Timeout: time.Second}
		resp, err := c.Get("http://" + sv.Addr() + "/")
		if err != nil {
			return err
		}
		resp.Body.Close()
		return nil
	default:
		c, err := net.DialTimeout("tcp", sv.Addr(), time.Second)
		if err != nil {
			return err
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(time.Second))
		if _, err := c.Write([]byte("version\r\n")); err != nil {
			return err
		}
		buf := make([]byte, 64)
		n, err := c.Read(buf)
		if err != nil || !strings.HasPrefix(string(buf[:n]), "VERSION") {
			return fmt.Errorf("no VERSION reply: %v", err)
		}
		return nil
	}
}

func lastLine(path string, sv *server) string {
	errLog := path
	if sv.Kind == testserver.KindMariaDB {
		errLog = filepath.Join(sv.dataDir, "error.log")
	}
	b, _ := os.ReadFile(errLog)
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	for i := len(lines) - 1; i >= 0; i-- {
		if strings.Contains(lines[i], "ERROR") || i == len(lines)-1 {
			return strings.TrimSpace(lines[i])
		}
	}
	return "(no log)"
}

func (s *Stack) admin(name string) (*sql.DB, error) {
	db, err := sql.Open("mysql", "root@tcp("+s.servers[name].Addr()+")/?timeout=2s&readTimeout=30s&writeTimeout=5s")
	if err != nil {
		return nil, err
	}
	db.SetMaxOpenConns(2)
	return db, nil
}

func (s *Stack) exec(ctx context.Context, name string, stmts ...string) error {
	db, err := s.admin(name)
	if err != nil {
		return err
	}
	defer db.Close()
	conn, err := db.Conn(ctx)
	if err != nil {
		return fmt.Errorf("stack: %s: %w", name, err)
	}
	defer conn.Close()
	for _, q := range stmts {
		if _, err := conn.ExecContext(ctx, q); err != nil {
			return fmt.Errorf("stack: %s: %s: %w", name, q, err)
		}
	}
	return nil
}

func (s *Stack) queryString(ctx context.Context, name, q string) (string, error) {
	db, err := s.admin(name)
	if err != nil {
		return "", err
	}
	defer db.Close()
	var v sql.NullString
	if err := db.QueryRowContext(ctx, q).Scan(&v); err != nil {
		return "", fmt.Errorf("stack: %s: %s: %w", name, q, err)
	}
	return v.String, nil
}

var errUnknownServer = errors.New("unknown server")

func (s *Stack) server(name string) (*server, error) {
	sv, ok := s.servers[name]
	if !ok {
		return nil, fmt.Errorf("stack: %w %q (one of m1 r1 r2 mc1 mc2 ddb1 ddb2)", errUnknownServer, name)
	}
	return sv, nil
}

func runQuiet(name string, args ...string) error {
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s: %v: %s", name, err, lastOf(string(out)))
	}
	return nil
}

func lastOf(out string) string {
	lines := strings.Split(strings.TrimSpace(out), "\n")
	return lines[len(lines)-1]
}
