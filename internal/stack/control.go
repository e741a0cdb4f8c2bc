package stack

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/regiondb/regiondb/internal/testserver"
)

// serveControl starts the HTTP control API that internal/testserver calls.
func (s *Stack) serveControl() error {
	ln, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(s.cfg.port(40)))
	if err != nil {
		return fmt.Errorf("stack: control API: %w", err)
	}
	mux := http.NewServeMux()
	ops := map[string]func(ctx context.Context, server string, d time.Duration) error{
		"kill":      func(_ context.Context, n string, _ time.Duration) error { return s.signal(n, syscall.SIGKILL) },
		"stop":      func(_ context.Context, n string, _ time.Duration) error { return s.signal(n, syscall.SIGTERM) },
		"start":     s.start,
		"stall":     func(ctx context.Context, n string, _ time.Duration) error { return s.sqlThread(ctx, n, false, 0) },
		"resume":    func(ctx context.Context, n string, _ time.Duration) error { return s.sqlThread(ctx, n, true, 0) },
		"lag":       func(ctx context.Context, n string, d time.Duration) error { return s.sqlThread(ctx, n, false, d) },
		"linkdelay": s.linkDelay,
		"regionrtt": func(_ context.Context, _ string, d time.Duration) error { return s.setRegionRTT(d) },
		"promote":   func(ctx context.Context, n string, _ time.Duration) error { return s.promote(ctx, n) },
		// killregion takes a region name in its server parameter.
		"killregion": func(_ context.Context, region string, _ time.Duration) error { return s.killRegion(region) },
		"reset":      func(ctx context.Context, _ string, _ time.Duration) error { return s.reset(ctx) },
		"state":      func(context.Context, string, time.Duration) error { return nil },
	}
	for name, op := range ops {
		mux.HandleFunc("/v1/"+name, func(w http.ResponseWriter, r *http.Request) {
			ms, _ := strconv.Atoi(r.URL.Query().Get("ms"))
			s.mu.Lock()
			defer s.mu.Unlock()
			if err := op(r.Context(), r.URL.Query().Get("server"), time.Duration(ms)*time.Millisecond); err != nil {
				http.Error(w, err.Error(), http.StatusConflict)
				return
			}
			if err := s.writeState(); err != nil {
				http.Error(w, err.Error(), http.StatusInternalServerError)
				return
			}
			json.NewEncoder(w).Encode(s.State())
		})
	}
	mux.HandleFunc("/v1/replicate", func(w http.ResponseWriter, r *http.Request) {
		ms, err := strconv.Atoi(r.URL.Query().Get("ms"))
		table := r.URL.Query().Get("table")
		if err != nil || table == "" {
			http.Error(w, "replicate needs table and ms", http.StatusBadRequest)
			return
		}
		if err := s.repl.Replicate(r.Context(), table, time.Duration(ms)*time.Millisecond); err != nil {
			http.Error(w, err.Error(), http.StatusConflict)
			return
		}
		w.Write([]byte("{}"))
	})
	s.ctl = &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go s.ctl.Serve(ln)
	return nil
}

func (s *Stack) signal(name string, sig syscall.Signal) error {
	sv, err := s.server(name)
	if err != nil {
		return err
	}
	if sv.proc != nil {
		sv.proc.signal(sig, 15*time.Second)
	}
	return nil
}

// start brings a server back; a MariaDB server that last followed (or was)
// another primary than the current one rejoins as its replica.
func (s *Stack) start(ctx context.Context, name string, _ time.Duration) error {
	sv, err := s.server(name)
	if err != nil {
		return err
	}
	if sv.proc != nil && sv.proc.alive() {
		return nil
	}
	follow := sv.Kind == testserver.KindMariaDB && name != s.primary && sv.source != s.primary
	if err := s.startProcess(sv); err != nil {
		return err
	}
	if err := s.waitReady(sv); err != nil {
		return err
	}
	if follow {
		return s.rejoin(ctx, name)
	}
	return nil
}

// killRegion kills every MariaDB server of the region at once, as a
// regional outage would.
func (s *Stack) killRegion(region string) error {
	var names []string
	for _, n := range mariadbServers {
		if s.servers[n].Region == region {
			names = append(names, n)
		}
	}
	if len(names) == 0 {
		return fmt.Errorf("stack: no MariaDB server in region %q (%s or %s)", region, testserver.PrimaryRegion, testserver.SecondaryRegion)
	}
	var wg sync.WaitGroup
	for _, n := range names {
		if p := s.servers[n].proc; p != nil {
			wg.Go(func() { p.signal(syscall.SIGKILL, 15*time.Second) })
		}
	}
	wg.Wait()
	return nil
}

func (s *Stack) replica(name string) (*server, error) {
	sv, err := s.server(name)
	if err != nil {
		return nil, err
	}
	if sv.Kind != testserver.KindMariaDB || sv.Role != "replica" {
		return nil, fmt.Errorf("stack: %s is not a MariaDB replica", name)
	}
	return sv, nil
}

// sqlThread stops or starts the replica's apply thread; with d > 0 a stop is
// undone after d.
func (s *Stack) sqlThread(ctx context.Context, name string, run bool, d time.Duration) error {
	if _, err := s.replica(name); err != nil {
		return err
	}
	if t := s.lagTimers[name]; t != nil {
		t.Stop()
		delete(s.lagTimers, name)
	}
	stmt := "STOP SLAVE SQL_THREAD"
	if run {
		stmt = "START SLAVE SQL_THREAD"
	}
	if err := s.exec(ctx, name, stmt); err != nil {
		return err
	}
	if !run && d > 0 {
		s.lagTimers[name] = time.AfterFunc(d, func() {
			s.mu.Lock()
			defer s.mu.Unlock()
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			s.exec(ctx, name, "START SLAVE SQL_THREAD")
		})
	}
	return nil
}

func (s *Stack) linkDelay(_ context.Context, name string, d time.Duration) error {
	if _, err := s.replica(name); err != nil {
		return err
	}
	p, ok := s.proxies[name]
	if !ok {
		return fmt.Errorf("stack: %s has no replication link", name)
	}
	p.SetDelay(d)
	return nil
}

// reset restores the fresh topology and starts every stopped server.
func (s *Stack) reset(ctx context.Context) error {
	for n, t := range s.lagTimers {
		t.Stop()
		delete(s.lagTimers, n)
	}
	s.repl.StopAll()
	s.promotedAt = ""
	s.setRegionRTT(s.cfg.RegionRTT)
	if err := s.freshMariaDB(ctx); err != nil {
		return err
	}
	for _, n := range []string{"mc1", "mc2", "ddb1", "ddb2"} {
		if err := s.start(ctx, n, 0); err != nil {
			return err
		}
	}
	return nil
}
