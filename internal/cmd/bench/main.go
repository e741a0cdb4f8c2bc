// Command bench runs one of regiondb's measurements against the local stack
// (found through REGIONDB_STACK, as the `make bench-NAME` targets run it
// under the stack command):
//
//	go run ./internal/cmd/bench NAME [flags]
//
// Each NAME is one harness under internal/harness (ryw, overhead, failover,
// session, cache, fleet, security, aurora); its file in this folder
// documents what it measures and the keys of its result. Progress goes to
// stderr (and, for some, to stdout); the last stdout line is always one
// JSON object. The command exits with status 1 when the measurement could
// not run or its result does not count (a control that saw no failure, a
// check that failed), after printing that line if there is one.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"sort"
	"time"

	cacheharness "github.com/regiondb/regiondb/internal/harness/cache"
	securityharness "github.com/regiondb/regiondb/internal/harness/security"
	"github.com/regiondb/regiondb/internal/testserver"
)

// logFunc prints one progress line to stderr.
type logFunc func(format string, args ...any)

// runFunc runs a measurement on the stack. A non-nil result is printed as
// the last stdout line, also when err says the run does not count.
type runFunc func(ctx context.Context, s *testserver.Stack, logf logFunc) (result any, err error)

// command is one subcommand: setup declares its flags on fs and returns the
// measurement; timeout bounds it (zero: no bound beyond its own flags).
type command struct {
	summary string
	timeout time.Duration
	setup   func(fs *flag.FlagSet) runFunc
}

var commands = map[string]command{
	"ryw":      {"read-your-writes strategies and guarantees, each with its naive control", 0, ryw},
	"overhead": {"read-path overhead over a raw *sql.DB, and peak connections per role", 0, overhead},
	"failover": {"writer failover, lossy failovers and region loss, with a naive control", 10 * time.Minute, failover},
	"session":  {"session writes per request, cross-region anomalies, outages, logout races", 10 * time.Minute, session},
	"cache":    {"cache hit path, stampede, stale refill, invalidation and read-your-writes", 5 * time.Minute, cache},
	"fleet":    {"N routers in one process, with and without the shared watermark store", 10 * time.Minute, fleet},
	"security": {"hostile positions, tokens, watermarks and cache items; the classifier", 10 * time.Minute, security},
	"aurora":   {"the Aurora paths through the Aurora shim", 10 * time.Minute, aurora},
}

func main() {
	// The cache and security harnesses re-run this executable as their child
	// processes, marked by an environment variable.
	switch {
	case cacheharness.IsChild():
		os.Exit(cacheharness.ChildMain())
	case securityharness.IsChild():
		os.Exit(securityharness.ChildMain())
	}
	os.Exit(run(os.Args[1:]))
}

func run(args []string) int {
	if len(args) == 0 {
		usage()
		return 2
	}
	name := args[0]
	c, ok := commands[name]
	if !ok {
		fmt.Fprintf(os.Stderr, "bench: unknown measurement %q\n", name)
		usage()
		return 2
	}
	fs := flag.NewFlagSet("bench "+name, flag.ExitOnError)
	measure := c.setup(fs)
	_ = fs.Parse(args[1:]) // ExitOnError: Parse exits on a bad flag
	logf := func(format string, args ...any) { fmt.Fprintf(os.Stderr, format+"\n", args...) }

	s, err := testserver.Lookup()
	if err != nil {
		logf("bench %s: %v", name, err)
		return 1
	}
	ctx := context.Background()
	if c.timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, c.timeout)
		defer cancel()
	}
	result, err := measure(ctx, s, logf)
	if result != nil {
		b, merr := json.Marshal(result)
		if merr != nil {
			logf("bench %s: %v", name, merr)
			return 1
		}
		fmt.Println(string(b))
	}
	if err != nil {
		logf("bench %s: %v", name, err)
		return 1
	}
	return 0
}

func usage() {
	names := make([]string, 0, len(commands))
	for n := range commands {
		names = append(names, n)
	}
	sort.Strings(names)
	fmt.Fprintln(os.Stderr, "usage: go run ./internal/cmd/bench NAME [flags]  (NAME -h lists its flags)")
	for _, n := range names {
		fmt.Fprintf(os.Stderr, "  %-9s %s\n", n, commands[n].summary)
	}
}
