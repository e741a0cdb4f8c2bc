// Command stack runs regiondb's local two-region stack of real servers.
//
//	stack run -- CMD [ARG...]   start the stack, run CMD, stop the stack; exit with CMD's status,
//	                            or 1 if CMD succeeded but a server died that no fault control stopped
//	stack up                    start the stack and keep it until interrupted
//
// CMD gets REGIONDB_STACK (the state file internal/testserver reads) and
// REGIONDB_REQUIRE_STACK=1 in its environment. The stack's folder is
// REGIONDB_STACK_DIR (default .stack at the module root), its ports start at
// REGIONDB_STACK_PORTS (default 21100), and dynalite is looked up under
// REGIONDB_TOOLS (default .tools); REGIONDB_STACK_RTT (a Go duration,
// default 150ms) is the round trip of the client routes between the regions
// (testserver.Route). Every server stops when the stack does,
// also when CMD fails or the stack is interrupted or killed.
//
// The stack supervises its servers: an exit that no fault control asked for
// (a crash, a kill behind its back) is logged on one line naming the server
// and its last log lines, recorded in the state file, and the server is
// restarted (at most 3 times); the death still fails the run.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	"github.com/regiondb/regiondb/internal/stack"
	"github.com/regiondb/regiondb/internal/testserver"
)

func main() {
	os.Exit(run(os.Args[1:]))
}

func usage() int {
	fmt.Fprintln(os.Stderr, "usage: stack run -- CMD [ARG...] | stack up")
	return 2
}

func run(args []string) int {
	if len(args) == 0 {
		return usage()
	}
	var child []string
	switch args[0] {
	case "up":
	case "run":
		if len(args) < 3 || args[1] != "--" {
			return usage()
		}
		child = args[2:]
	default:
		return usage()
	}
	cfg, err := config()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP)
	start := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	st, err := stack.Up(ctx, cfg)
	cancel()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	stop := make(chan struct{})
	peak := st.WatchPeakRSS(time.Second, stop)
	fmt.Fprintf(os.Stderr, "stack: up in %.1fs (MariaDB primary + 2 GTID replicas, 2 memcached, 2 dynalite; ports from %d; %s)\n",
		time.Since(start).Seconds(), cfg.PortBase, st.StatePath())
	defer func() {
		close(stop)
		t := time.Now()
		st.Down()
		fmt.Fprintf(os.Stderr, "stack: stopped in %.1fs; peak server RSS %d MiB\n", time.Since(t).Seconds(), peak()>>20)
	}()
	if child == nil {
		fmt.Fprintln(os.Stderr, "stack: running; interrupt to stop")
		<-sigs
		return 0
	}
	cmd := exec.Command(child[0], child[1:]...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	cmd.Env = append(os.Environ(), testserver.EnvState+"="+st.StatePath(), testserver.EnvRequire+"=1")
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		fmt.Fprintf(os.Stderr, "stack: %v\n", err)
		return 1
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	for {
		select {
		case sig := <-sigs:
			fmt.Fprintf(os.Stderr, "stack: %v: stopping %s\n", sig, child[0])
			cmd.Process.Signal(sig)
			go func() {
				time.Sleep(10 * time.Second)
				cmd.Process.Kill()
			}()
		case err := <-done:
			code := 0
			var exit *exec.ExitError
			if errors.As(err, &exit) {
				code = 1
				if c := exit.ExitCode(); c > 0 {
					code = c
				}
			} else if err != nil {
				fmt.Fprintf(os.Stderr, "stack: %v\n", err)
				code = 1
			}
			// Every death was logged on its own line when it happened.
			if deaths := st.UnexpectedDeaths(); len(deaths) > 0 {
				fmt.Fprintf(os.Stderr, "stack: failing the run: %d server death(s) that no fault control asked for (see above)\n", len(deaths))
				if code == 0 {
					code = 1
				}
			}
			return code
		}
	}
}

func config() (stack.Config, error) {
	root, err := testserver.ModuleRoot()
	if err != nil {
		return stack.Config{}, errors.New("stack: run me inside the regiondb module")
	}
	cfg := stack.Config{
		Dir:      envOr("REGIONDB_STACK_DIR", filepath.Join(root, ".stack")),
		PortBase: stack.DefaultPortBase,
		Dynalite: filepath.Join(envOr("REGIONDB_TOOLS", filepath.Join(root, ".tools")), "node_modules", "dynalite"),
		Logf:     func(f string, a ...any) { fmt.Fprintf(os.Stderr, "stack: "+f+"\n", a...) },
	}
	if cfg.Dir, err = filepath.Abs(cfg.Dir); err != nil {
		return cfg, err
	}
	if v := os.Getenv("REGIONDB_STACK_PORTS"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1024 || n > 65000 {
			return cfg, fmt.Errorf("stack: REGIONDB_STACK_PORTS=%q is not a port number between 1024 and 65000", v)
		}
		cfg.PortBase = n
	}
	if v := os.Getenv("REGIONDB_STACK_RTT"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d < 0 {
			return cfg, fmt.Errorf("stack: REGIONDB_STACK_RTT=%q is not a non-negative duration such as 150ms", v)
		}
		cfg.RegionRTT = d
	}
	return cfg, nil
}

func envOr(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}
