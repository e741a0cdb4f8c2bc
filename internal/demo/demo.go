// Package demo drives the README's demo: it starts one photoalbum instance
// per region of the local stack (examples/photoalbum, as subprocesses
// configured by flags), plays a scripted two-region scenario with faults
// against them while simulated people use the service, verifies every read
// that must show an earlier write, and writes a report and an SVG chart.
package demo

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	_ "github.com/go-sql-driver/mysql" // the schema check on the readers

	"github.com/regiondb/regiondb/internal/testserver"
)

const (
	tokyo    = testserver.PrimaryRegion
	virginia = testserver.SecondaryRegion
	// Database and session table the instances use.
	database     = "regiondb_photoalbum"
	sessionTable = "photoalbum_sessions"
	// cacheTTL is short so that the hot family record expires during the run.
	cacheTTL = 2 * time.Second
)

var regionNames = map[string]string{tokyo: "Tokyo", virginia: "N. Virginia"}

// Config configures Run.
type Config struct {
	// Stack is the running local stack. Required.
	Stack *testserver.Stack
	// OutDir receives report.txt, report.json, latency.svg and the
	// instances' logs and traces. Required.
	OutDir string
	// Scale stretches the timeline: 1 plays the full scenario (about 45 s
	// after start-up). If zero, 1.
	Scale float64
	// People is the number of background people (in families of two, one
	// per home region). If zero, 8.
	People int
	// Binary is a prebuilt photoalbum; if empty, Run builds it.
	Binary string
	// Progress receives one line per scenario step. If nil, nothing.
	Progress io.Writer
	// Control plays the naive control: the instances get different token
	// keys (a misconfiguration: each region rejects the other's tokens, so
	// reads in the other region no longer wait for the writes); the
	// scenario, faults included, is the same. Its report must show
	// violations: that proves the driver's checks can fail.
	Control bool
	// RegionalOutages adds, after the failover, "us-east-1's DynamoDB down
	// for 10 s" and "Tokyo's databases down, then r2 promoted". make demo
	// plays them (internal/cmd/demo); TestDemo plays the shorter scenario.
	RegionalOutages bool
	// TokenInSession runs the instances with -token-in-session: the
	// read-your-writes token in the session instead of its own cookie.
	TokenInSession bool
}

// event is a scripted moment marked on the chart.
type event struct {
	At    time.Duration `json:"at_ms"`
	Label string        `json:"label"`
	Fault bool          `json:"fault"`
}

type driver struct {
	cfg   Config
	s     *testserver.Stack
	hc    *http.Client
	urls  map[string]string
	insts map[string]*instance
	rec   *recorder
	chk   *checker
	seq   int
	probe *runProbe
	logMu sync.Mutex // serialises the lines written to Config.Progress
	// paused holds the background people (during the hot-record burst).
	paused atomic.Bool
	// faulted is set once a destructive fault ran: Run then resets the stack.
	faulted bool

	mu       sync.Mutex // protects events, notes and stories
	events   []event
	notes    []string
	stories  []storyResult
	hot      hotResult          // set by hotFamily
	recovery map[string]float64 // set by failover: ms from kill to first write, by region
	// promotedMS is when the promotion began, in ms after the kill, and
	// promoteCallMS how long the stack's promote call took (it also
	// re-points r2 and waits for it).
	promotedMS, promoteCallMS float64
	// failoverAt is when the failover killed the writer.
	failoverAt time.Duration
	// regionLossRecovery is recovery for the loss of Tokyo's databases
	// (RegionalOutages).
	regionLossRecovery map[string]float64
	// health is what the instances' /healthz said during the run.
	health *healthLog
	// deathsBefore is how many unexpected server deaths the stack had
	// recorded before the run.
	deathsBefore int
}

func (d *driver) logf(format string, args ...any) {
	if d.cfg.Progress != nil {
		d.logMu.Lock()
		defer d.logMu.Unlock()
		fmt.Fprintf(d.cfg.Progress, "[%6.2fs] %s\n", time.Since(d.rec.start).Seconds(), fmt.Sprintf(format, args...))
	}
}

func (d *driver) mark(label string, fault bool) {
	d.mu.Lock()
	d.events = append(d.events, event{At: time.Since(d.rec.start) / time.Millisecond, Label: label, Fault: fault})
	d.mu.Unlock()
	d.logf("%s", label)
}

func (d *driver) note(format string, args ...any) {
	d.mu.Lock()
	d.notes = append(d.notes, fmt.Sprintf(format, args...))
	d.mu.Unlock()
}

func (d *driver) other(region string) string {
	if region == tokyo {
		return virginia
	}
	return tokyo
}

func (d *driver) at(sec float64) time.Duration {
	return time.Duration(sec * d.cfg.Scale * float64(time.Second))
}

// sleepUntil waits until offset since the scenario's start.
func (d *driver) sleepUntil(ctx context.Context, offset time.Duration) error {
	t := time.NewTimer(time.Until(d.rec.start.Add(offset)))
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

func decodeJSON(resp *http.Response, v any) error {
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s", resp.Status)
	}
	return json.NewDecoder(resp.Body).Decode(v)
}

// Run plays the scenario and returns its report, also written to cfg.OutDir.
// The instances it starts are stopped before it returns, also on failure.
func Run(ctx context.Context, cfg Config) (*Report, error) {
	return runWith(ctx, cfg, nil)
}

// runProbe lets a test see the instances Run started.
type runProbe struct {
	insts []*instance
}

func runWith(ctx context.Context, cfg Config, probe *runProbe) (*Report, error) {
	if cfg.Stack == nil || cfg.OutDir == "" {
		return nil, errors.New("demo: Config.Stack and Config.OutDir are required")
	}
	if cfg.Scale <= 0 {
		cfg.Scale = 1
	}
	if cfg.People <= 0 {
		cfg.People = 8
	}
	if err := os.MkdirAll(cfg.OutDir, 0o755); err != nil {
		return nil, err
	}
	d := &driver{
		cfg: cfg, s: cfg.Stack,
		hc:    &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 128, MaxConnsPerHost: 256}},
		urls:  map[string]string{},
		insts: map[string]*instance{},
		rec:   &recorder{start: time.Now()},
		probe: probe,
	}
	d.chk = newChecker(d.rec)
	d.health = &healthLog{open: map[string]*outage{}}
	defer d.hc.CloseIdleConnections()
	deaths, err := d.s.UnexpectedDeaths(ctx)
	if err != nil {
		return nil, err
	}
	d.deathsBefore = len(deaths)
	bin := cfg.Binary
	if bin == "" {
		tmp, err := os.MkdirTemp("", "regiondb-demo-")
		if err != nil {
			return nil, err
		}
		defer os.RemoveAll(tmp)
		d.logf("building examples/photoalbum")
		if bin, err = Build(ctx, "./examples/photoalbum", tmp); err != nil {
			return nil, err
		}
	}
	// A previous run's failover leaves r1 as the writer: start from the
	// stack's initial topology, and restore it when done.
	if err := d.freshTopology(ctx); err != nil {
		return nil, err
	}
	defer func() {
		if d.faulted {
			rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Minute)
			defer cancel()
			if err := d.s.Reset(rctx); err != nil {
				d.logf("reset the stack after the faults: %v", err)
			}
		}
	}()
	defer d.stopInstances()
	if err := d.startInstances(ctx, bin); err != nil {
		return nil, err
	}
	return d.play(ctx)
}

func (d *driver) tokenKey(region string) string {
	if d.cfg.Control {
		return "control-key-of-" + region
	}
	return "regiondb-demo-key-do-not-use-in-production"
}

// freshTopology resets the stack unless m1 is the writer and every server runs.
func (d *driver) freshTopology(ctx context.Context) error {
	st, err := d.s.State(ctx)
	if err != nil {
		return err
	}
	fresh := true
	for _, sv := range st.Servers {
		if !sv.Running || (sv.Name == "m1" && sv.Role != "primary") {
			fresh = false
		}
	}
	if fresh {
		return nil
	}
	d.logf("resetting the stack to its initial topology")
	return d.s.Reset(ctx)
}

func (d *driver) instanceArgs(region string) []string {
	s := d.s
	other := d.other(region)
	args := []string{
		"-region", region,
		"-addr", "127.0.0.1:0",
		"-writer", s.DSN("m1", database),
		"-reader", tokyo + "=" + s.DSN(s.Reader(tokyo), database),
		"-reader", virginia + "=" + s.DSN(s.Reader(virginia), database),
		"-memcached", s.Memcached(region),
		"-remote-memcached", other + "=" + s.Memcached(other),
		"-dynamodb", s.DynamoDBEndpoint(region),
		"-remote-dynamodb", other + "=" + s.DynamoDBEndpoint(other),
		"-dynamodb-local",
		"-session-table", sessionTable,
		"-create-session-table",
		"-token-key", d.tokenKey(region),
		"-cache-ttl", cacheTTL.String(),
		// A fresh key space per run: the stack's Reset empties the
		// database (ids start again) but not memcached.
		"-cache-prefix", fmt.Sprintf("photoalbum:run%d:", d.rec.start.UnixNano()),
		"-insecure-cookies",
		"-debug",
		"-trace-file", filepath.Join(d.cfg.OutDir, "traces-"+region+".jsonl"),
		"-trace-ratio", "0.02",
	}
	if region == tokyo {
		args = append(args, "-migrate")
	}
	if d.cfg.TokenInSession {
		args = append(args, "-token-in-session")
	}
	return args
}

func (d *driver) startInstances(ctx context.Context, bin string) error {
	// Tokyo first: it migrates the schema on the writer.
	for _, region := range []string{tokyo, virginia} {
		inst, err := startInstance(ctx, region, bin, d.instanceArgs(region), filepath.Join(d.cfg.OutDir, "photoalbum-"+region+".log"))
		if err != nil {
			return err
		}
		d.insts[region] = inst
		if d.probe != nil {
			d.probe.insts = append(d.probe.insts, inst)
		}
		d.urls[region] = inst.url
		d.logf("photoalbum %s (%s) listening on %s", region, regionNames[region], inst.url)
		if region == tokyo {
			// Tokyo created the schema on the writer; let it reach every
			// reader before the other region starts, as a deployment
			// would run its migration well before rolling out.
			if err := d.waitSchema(ctx); err != nil {
				return err
			}
		}
	}
	// The local stand-in for a DynamoDB Global Table: copy the session
	// table between the regions' dynalites with a 1 s delay.
	if err := d.s.Replicate(ctx, sessionTable, time.Second); err != nil {
		d.note("session table not replicated between regions (%v): sessions stay regional", err)
	}
	return nil
}

// waitReplicated waits until both readers have applied every write the
// writer has so far. The setup's writes (sign-ups, families, albums) are made
// by one person on behalf of others, who learn of them by no link or token:
// the scenario starts once they have reached every region, as a service's
// users would have been set up long before they browse.
func (d *driver) waitReplicated(ctx context.Context) error {
	primary, err := d.s.Primary(ctx)
	if err != nil {
		return err
	}
	w, err := sql.Open("mysql", d.s.DSN(primary, ""))
	if err != nil {
		return err
	}
	defer w.Close()
	var pos string
	if err := w.QueryRowContext(ctx, "SELECT @@global.gtid_binlog_pos").Scan(&pos); err != nil {
		return fmt.Errorf("demo: writer %s position: %w", primary, err)
	}
	for _, name := range []string{d.s.Reader(tokyo), d.s.Reader(virginia)} {
		db, err := sql.Open("mysql", d.s.DSN(name, ""))
		if err != nil {
			return err
		}
		var res sql.NullInt64
		err = db.QueryRowContext(ctx, "SELECT MASTER_GTID_WAIT(?, 30)", pos).Scan(&res)
		db.Close()
		if err != nil || res.Int64 != 0 {
			return fmt.Errorf("demo: the set-up did not reach reader %s within 30 s (%v, %v)", name, res, err)
		}
	}
	return nil
}

// waitSchema waits until both readers have the service's tables.
func (d *driver) waitSchema(ctx context.Context) error {
	for _, name := range []string{d.s.Reader(tokyo), d.s.Reader(virginia)} {
		db, err := sql.Open("mysql", d.s.DSN(name, database))
		if err != nil {
			return err
		}
		deadline := time.Now().Add(30 * time.Second)
		for {
			_, err = db.ExecContext(ctx, "SELECT 1 FROM notifications LIMIT 0")
			if err == nil || time.Now().After(deadline) || ctx.Err() != nil {
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
		db.Close()
		if err != nil {
			return fmt.Errorf("demo: the schema did not reach reader %s: %w", name, err)
		}
	}
	return nil
}

func (d *driver) stopInstances() {
	var wg sync.WaitGroup
	for _, inst := range d.insts {
		wg.Go(inst.stop)
	}
	wg.Wait()
}

func (d *driver) newPerson(name, home string) *person {
	return &person{
		c:        newClient(name, d.hc, d.urls, d.rec),
		home:     home,
		password: "correct horse " + name,
		mustSee:  map[int64]bool{},
		names:    map[string]bool{name: true},
	}
}

// must is for setup steps, which run before any fault: a failure there ends the demo.
func must(r response, what string) error {
	if !r.ok() {
		return fmt.Errorf("demo: %s: %s", what, r)
	}
	return nil
}

func (d *driver) signup(ctx context.Context, p *person) error {
	d.seq++
	p.email = fmt.Sprintf("%s.%d.%d@example.com", p.c.name, d.rec.start.UnixNano(), d.seq)
	r := p.c.do(ctx, p.home, http.MethodPost, "/signup", "POST /signup",
		map[string]string{"email": p.email, "name": p.c.name, "password": p.password})
	if err := must(r, "sign up "+p.c.name); err != nil {
		return err
	}
	var u struct{ ID int64 }
	r.decode(&u)
	p.id = u.ID
	return nil
}

// makeFamily creates a family and an album owned by the first person, and
// adds the others.
func (d *driver) makeFamily(ctx context.Context, name string, members []*person, roles []string) error {
	owner := members[0]
	r := owner.c.do(ctx, owner.home, http.MethodPost, "/families", "POST /families", map[string]string{"name": name})
	if err := must(r, "create family"); err != nil {
		return err
	}
	var f struct{ ID int64 }
	r.decode(&f)
	fam := "/families/" + strconv.FormatInt(f.ID, 10)
	for i, m := range members[1:] {
		r := owner.c.do(ctx, owner.home, http.MethodPost, fam+"/members", "POST /families/{id}/members",
			map[string]string{"email": m.email, "role": roles[i]})
		if err := must(r, "add member"); err != nil {
			return err
		}
	}
	r = owner.c.do(ctx, owner.home, http.MethodPost, fam+"/albums", "POST /families/{id}/albums", map[string]string{"title": name + " album"})
	if err := must(r, "create album"); err != nil {
		return err
	}
	var al struct{ ID int64 }
	r.decode(&al)
	for _, m := range members {
		m.familyID, m.albumID = f.ID, al.ID
	}
	return nil
}
