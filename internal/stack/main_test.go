package stack_test

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"slices"
	"syscall"
	"testing"
	"time"

	"github.com/regiondb/regiondb/internal/testserver"
)

// childEnv makes the test binary play the command a test runs under the
// stack (`stack run -- <test binary>`) instead of running the tests.
const childEnv = "REGIONDB_STACK_TEST_CHILD"

func TestMain(m *testing.M) {
	if mode := os.Getenv(childEnv); mode != "" {
		if err := child(mode); err != nil {
			fmt.Fprintln(os.Stderr, "child:", err)
			os.Exit(3)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// child kills ddb2, behind the stack's back ("behind": kill -9 of its pid)
// or through the fault control ("control"), and succeeds once the stack has
// seen the exit (and, behind its back, restarted ddb2).
func child(mode string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s, err := testserver.Lookup()
	if err != nil {
		return err
	}
	switch mode {
	case "behind":
		pid := s.Server("ddb2").PID
		if pid <= 0 {
			return fmt.Errorf("no pid for ddb2 in the state")
		}
		if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
			return err
		}
		for {
			deaths, err := s.UnexpectedDeaths(ctx)
			if err != nil {
				return err
			}
			// The stack records the death and restarts the server.
			if slices.ContainsFunc(deaths, func(d testserver.Death) bool { return d.Server == "ddb2" }) {
				if sv := s.Server("ddb2"); sv.Running && sv.PID != pid {
					resp, err := http.Get(s.DynamoDBEndpoint(testserver.SecondaryRegion) + "/")
					if err != nil {
						return fmt.Errorf("restarted ddb2 does not serve: %w", err)
					}
					resp.Body.Close()
					return nil
				}
			}
			if ctx.Err() != nil {
				return fmt.Errorf("the stack did not record ddb2's death")
			}
			time.Sleep(20 * time.Millisecond)
		}
	case "control":
		if err := s.Kill(ctx, "ddb2"); err != nil {
			return err
		}
		if s.Server("ddb2").Running {
			return fmt.Errorf("ddb2 still running after the fault-control kill")
		}
		return nil
	}
	return fmt.Errorf("unknown mode %q", mode)
}
