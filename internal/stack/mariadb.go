package stack

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/regiondb/regiondb/internal/testserver"
)

var mariadbServers = []string{"m1", "r1", "r2"}

// template creates, once per stack folder, a freshly initialised datadir that
// every MariaDB instance is copied from.
func (s *Stack) template(ctx context.Context) error {
	tdir := filepath.Join(s.cfg.Dir, "template")
	if _, err := os.Stat(filepath.Join(tdir, "data", "mysql")); err == nil {
		return nil
	}
	os.RemoveAll(tdir)
	if err := os.MkdirAll(filepath.Join(tdir, "tmp"), 0o755); err != nil {
		return err
	}
	s.cfg.Logf("initialising the MariaDB template datadir")
	err := runQuiet("mariadb-install-db", "--no-defaults", "--datadir="+filepath.Join(tdir, "data"), "--tmpdir="+filepath.Join(tdir, "tmp"),
		"--user=root", "--skip-test-db", "--auth-root-authentication-method=normal")
	if err != nil {
		os.RemoveAll(tdir)
		return fmt.Errorf("stack: mariadb-install-db: %w", err)
	}
	return nil
}

func (s *Stack) mariadbArgs(sv *server) []string {
	d := sv.dataDir
	semiSyncReplica := "0"
	if s.inPrimaryRegion(sv.Name) {
		semiSyncReplica = "1"
	}
	id := strconv.Itoa(int(sv.Name[1]-'0') + map[byte]int{'m': 0, 'r': 1}[sv.Name[0]])
	args := []string{"--no-defaults", "--datadir=" + filepath.Join(d, "data"), "--port=" + strconv.Itoa(sv.Port),
		"--socket=" + filepath.Join(d, "mysqld.sock"), "--pid-file=" + filepath.Join(d, "mysqld.pid"),
		"--tmpdir=" + filepath.Join(d, "tmp"), "--log-error=" + filepath.Join(d, "error.log"), "--user=root",
		"--bind-address=127.0.0.1", "--skip-name-resolve", "--server-id=" + id, "--log-bin=mysql-bin",
		"--log-slave-updates=1", "--binlog-format=ROW", "--gtid-strict-mode=1", "--relay-log=relay-bin",
		"--report-host=127.0.0.1", "--report-port=" + strconv.Itoa(sv.Port),
		// Semi-synchronous replication (lossless, AFTER_SYNC): a commit is acknowledged only once a
		// replica of the writer's region has the event, as Aurora acknowledges only commits durable
		// on its in-region storage quorum. A failover then loses no acknowledged write. Replicas of
		// other regions never acknowledge (commits do not wait for a cross-region link), and a
		// writer with no acknowledging replica connected does not wait at all.
		"--rpl-semi-sync-master-enabled=1", "--rpl-semi-sync-slave-enabled=" + semiSyncReplica,
		"--rpl-semi-sync-master-wait-point=AFTER_SYNC", "--rpl-semi-sync-master-timeout=1000",
		"--rpl-semi-sync-master-wait-no-slave=OFF",
		"--innodb-buffer-pool-size=32M", "--innodb-log-file-size=16M", "--innodb-log-buffer-size=1M",
		"--performance-schema=OFF", "--key-buffer-size=1M", "--aria-pagecache-buffer-size=1M",
		"--max-connections=512", "--table-open-cache=400", "--tmp-table-size=4M", "--max-heap-table-size=4M",
		"--innodb-flush-log-at-trx-commit=2", "--sync-binlog=0", "--innodb-doublewrite=0",
		"--skip-innodb-adaptive-hash-index"}
	if sv.Role != "primary" {
		// read_only set at runtime does not survive a restart: a replica must start read-only.
		args = append(args, "--read-only=1")
	}
	return args
}

// freshMariaDB kills any running MariaDB, copies the template into each
// instance folder and starts the three servers, then sets up replication.
func (s *Stack) freshMariaDB(ctx context.Context) error {
	var wg sync.WaitGroup
	for _, n := range mariadbServers {
		if p := s.servers[n].proc; p != nil {
			wg.Add(1)
			go func() { defer wg.Done(); p.signal(syscall.SIGKILL, 5*time.Second) }()
		}
	}
	wg.Wait()
	s.primary = "m1"
	for _, n := range mariadbServers {
		sv := s.servers[n]
		sv.Role, sv.source = "replica", "m1"
		if n == "m1" {
			sv.Role, sv.source = "primary", ""
		}
		sv.dataDir = filepath.Join(s.cfg.Dir, n)
		if err := os.RemoveAll(sv.dataDir); err != nil {
			return err
		}
		if err := os.MkdirAll(filepath.Join(sv.dataDir, "tmp"), 0o755); err != nil {
			return err
		}
		if err := runQuiet("cp", "-a", filepath.Join(s.cfg.Dir, "template", "data"), filepath.Join(sv.dataDir, "data")); err != nil {
			return fmt.Errorf("stack: copy template: %w", err)
		}
		if err := s.startProcess(sv); err != nil {
			return err
		}
	}
	for _, n := range mariadbServers {
		if err := s.waitReady(s.servers[n]); err != nil {
			return err
		}
	}
	err := s.exec(ctx, "m1",
		"CREATE USER 'repl'@'127.0.0.1' IDENTIFIED BY 'replpw'",
		"GRANT REPLICATION SLAVE, REPLICATION SLAVE ADMIN ON *.* TO 'repl'@'127.0.0.1'",
		"CREATE USER '"+appUser+"'@'127.0.0.1' IDENTIFIED BY '"+appPassword+"'",
		// All privileges on the regiondb* databases, none that bypass read_only.
		"GRANT ALL PRIVILEGES ON `regiondb%`.* TO '"+appUser+"'@'127.0.0.1'",
		"GRANT SLAVE MONITOR, BINLOG MONITOR, PROCESS ON *.* TO '"+appUser+"'@'127.0.0.1'",
		"CREATE DATABASE regiondb")
	if err != nil {
		return err
	}
	for _, n := range []string{"r1", "r2"} {
		if err := s.linkProxy(n, s.defaultLinkDelay(n)); err != nil {
			return err
		}
		if err := s.exec(ctx, n, "SET GLOBAL gtid_slave_pos=''", s.changeMaster(n, "slave_pos"), "START SLAVE"); err != nil {
			return err
		}
	}
	pos, err := s.queryString(ctx, "m1", "SELECT @@gtid_binlog_pos")
	if err != nil {
		return err
	}
	for _, n := range []string{"r1", "r2"} {
		if err := s.waitGTID(ctx, n, pos, 10*time.Second); err != nil {
			return err
		}
	}
	return nil
}

// linkProxy makes sure the server's replication proxy exists, points at the
// current primary, and has the given delay.
func (s *Stack) linkProxy(name string, delay time.Duration) error {
	target := s.servers[s.primary].Addr()
	if p, ok := s.proxies[name]; ok {
		p.SetDelay(delay)
		p.Retarget(target)
		return nil
	}
	hook := s.proxyFailed(name+"'s replication proxy", s.servers[name].Region, func(old, p *delayProxy) bool {
		if s.proxies[name] != old {
			return false
		}
		s.proxies[name] = p
		return true
	})
	p, err := newDelayProxy("127.0.0.1:"+strconv.Itoa(s.proxyPort(name)), target, delay, hook)
	if err != nil {
		return fmt.Errorf("stack: replication proxy for %s: %w", name, err)
	}
	s.proxies[name] = p
	return nil
}

func (s *Stack) changeMaster(name, useGTID string) string {
	return fmt.Sprintf("CHANGE MASTER TO MASTER_HOST='127.0.0.1', MASTER_PORT=%d, MASTER_USER='repl', MASTER_PASSWORD='replpw', MASTER_USE_GTID=%s, MASTER_CONNECT_RETRY=1, MASTER_HEARTBEAT_PERIOD=1",
		s.proxyPort(name), useGTID)
}

func (s *Stack) waitGTID(ctx context.Context, name, pos string, timeout time.Duration) error {
	if pos == "" {
		return nil
	}
	r, err := s.queryString(ctx, name, fmt.Sprintf("SELECT MASTER_GTID_WAIT('%s', %g)", pos, timeout.Seconds()))
	if err != nil {
		return err
	}
	if r != "0" {
		return fmt.Errorf("stack: %s did not reach GTID %s within %s", name, pos, timeout)
	}
	return nil
}

func (s *Stack) startMariaDB(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.freshMariaDB(ctx)
}

// inPrimaryRegion reports whether the MariaDB server is in the current
// primary's region.
func (s *Stack) inPrimaryRegion(name string) bool {
	return s.servers[name].Region == s.servers[s.primary].Region
}

// defaultLinkDelay is the delay of a replica's link to the current primary:
// none in the primary's region, DefaultRemoteLinkDelay across regions.
func (s *Stack) defaultLinkDelay(name string) time.Duration {
	if s.inPrimaryRegion(name) {
		return 0
	}
	return DefaultRemoteLinkDelay
}

// semiSync is the statement that makes a replica acknowledge semi-sync
// commits only if it is in the primary's region (it takes effect when its
// IO thread starts).
func (s *Stack) semiSync(name string) string {
	on := "0"
	if s.inPrimaryRegion(name) {
		on = "1"
	}
	return "SET GLOBAL rpl_semi_sync_slave_enabled=" + on
}

// promote makes the replica the primary and re-points the other running
// MariaDB servers at it. The replica may be in another region than the old
// primary (after the whole writer region is lost): links then get the
// delays of the new geometry, and only the new primary's region acknowledges
// semi-sync commits. A running server that had applied more than the
// promoted replica rejoins like a restarted former primary.
func (s *Stack) promote(ctx context.Context, name string) error {
	sv, err := s.server(name)
	if err != nil {
		return err
	}
	if sv.Kind != testserver.KindMariaDB || sv.Role != "replica" {
		return fmt.Errorf("stack: %s is not a MariaDB replica", name)
	}
	if sv.proc == nil || !sv.proc.alive() {
		return fmt.Errorf("stack: %s is not running", name)
	}
	// Apply everything already received before taking over, as a failover does.
	if err := s.exec(ctx, name, "STOP SLAVE IO_THREAD", "START SLAVE SQL_THREAD"); err != nil {
		return err
	}
	if t := s.lagTimers[name]; t != nil {
		t.Stop()
	}
	if err := s.waitRelayApplied(ctx, name); err != nil {
		return err
	}
	if s.promotedAt, err = s.queryString(ctx, name, "SELECT @@gtid_slave_pos"); err != nil {
		return err
	}
	if err := s.exec(ctx, name, "STOP SLAVE", "RESET SLAVE ALL", "SET GLOBAL rpl_semi_sync_slave_enabled=0", "SET GLOBAL read_only=0"); err != nil {
		return err
	}
	old := s.primary
	crossRegion := s.servers[old].Region != sv.Region
	s.servers[old].Role = "replica"
	sv.Role, sv.source = "primary", ""
	s.primary = name
	for _, n := range mariadbServers {
		o := s.servers[n]
		if n == name || o.proc == nil || !o.proc.alive() {
			continue
		}
		if crossRegion {
			if p, ok := s.proxies[n]; ok {
				p.SetDelay(s.defaultLinkDelay(n))
			}
		}
		own, err := s.queryString(ctx, n, "SELECT @@gtid_binlog_pos")
		if err != nil {
			return err
		}
		if lowerGTID(own, s.promotedAt) != own {
			err = s.rejoin(ctx, n)
		} else {
			err = s.repoint(ctx, n)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// waitRelayApplied waits until the SQL thread has applied all it received.
func (s *Stack) waitRelayApplied(ctx context.Context, name string) error {
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		state, err := s.slaveStatus(ctx, name)
		if err != nil {
			return err
		}
		if state["Gtid_IO_Pos"] == "" || state["Gtid_IO_Pos"] == state["Gtid_Slave_Pos"] {
			return nil
		}
		time.Sleep(10 * time.Millisecond)
	}
	return fmt.Errorf("stack: %s did not apply its relay log within 10 s", name)
}

func (s *Stack) slaveStatus(ctx context.Context, name string) (map[string]string, error) {
	db, err := s.admin(name)
	if err != nil {
		return nil, err
	}
	defer db.Close()
	rows, err := db.QueryContext(ctx, "SHOW SLAVE STATUS")
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	cols, _ := rows.Columns()
	out := map[string]string{}
	if rows.Next() {
		vals := make([]any, len(cols))
		ptrs := make([]any, len(cols))
		for i := range vals {
			ptrs[i] = &vals[i]
		}
		if err := rows.Scan(ptrs...); err != nil {
			return nil, err
		}
		for i, c := range cols {
			if b, ok := vals[i].([]byte); ok {
				out[c] = string(b)
			} else if vals[i] != nil {
				out[c] = fmt.Sprint(vals[i])
			}
		}
	}
	out["Gtid_Slave_Pos"], _ = s.queryString(ctx, name, "SELECT @@gtid_slave_pos")
	return out, rows.Err()
}

// repoint makes a running replica (or a former primary) replicate from the
// current primary through its proxy.
func (s *Stack) repoint(ctx context.Context, name string) error {
	sv := s.servers[name]
	delay := s.defaultLinkDelay(name)
	if p, ok := s.proxies[name]; ok {
		delay = time.Duration(p.delay.Load())
	}
	if err := s.linkProxy(name, delay); err != nil {
		return err
	}
	if err := s.exec(ctx, name, "STOP SLAVE", s.semiSync(name), s.changeMaster(name, "slave_pos"), "START SLAVE"); err != nil {
		return err
	}
	sv.source = s.primary
	return nil
}

// rejoin turns a MariaDB server that followed (or was) an earlier primary
// into a replica of the current one. Its own binlog may end with
// transactions the new primary never got (unacknowledged ones on a former
// primary, or ones the promoted replica had not received yet); it drops them
// from its GTID state, as a rebuilt Aurora reader would, and replicates from
// the last transaction both have. (Their rows stay: the stack logs it.)
func (s *Stack) rejoin(ctx context.Context, name string) error {
	own, err := s.queryString(ctx, name, "SELECT @@gtid_binlog_pos")
	if err != nil {
		return err
	}
	start := lowerGTID(own, s.promotedAt)
	if start != own {
		s.cfg.Logf("%s rejoins %s at %s: it had transactions up to %s that %s never got", name, s.primary, start, own, s.primary)
	}
	if err := s.linkProxy(name, s.defaultLinkDelay(name)); err != nil {
		return err
	}
	err = s.exec(ctx, name, "SET GLOBAL read_only=1", "STOP SLAVE", "RESET MASTER",
		"SET GLOBAL gtid_slave_pos='"+start+"'", s.semiSync(name), s.changeMaster(name, "slave_pos"), "START SLAVE")
	if err != nil {
		return err
	}
	s.servers[name].source = s.primary
	return nil
}

// lowerGTID returns whichever of two single-domain MariaDB GTID positions
// (domain-server-seq) has the lower sequence number.
func lowerGTID(a, b string) string {
	seq := func(p string) int64 {
		i := strings.LastIndexByte(p, '-')
		n, err := strconv.ParseInt(p[i+1:], 10, 64)
		if err != nil || i < 0 {
			return -1
		}
		return n
	}
	if a == "" || b == "" {
		return a + b
	}
	if seq(a) <= seq(b) {
		return a
	}
	return b
}
