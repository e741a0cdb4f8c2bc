package session_test

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"testing"
	"time"

	"go.uber.org/goleak"

	sessionharness "github.com/regiondb/regiondb/internal/harness/session"
	"github.com/regiondb/regiondb/internal/testserver"
)

// TestMain fails the package if a test leaves a goroutine running.
// The stack's control client (internal/testserver) keeps idle connections
// of http.DefaultTransport, which are closed first.
func TestMain(m *testing.M) {
	code := m.Run()
	http.DefaultTransport.(*http.Transport).CloseIdleConnections()
	if code == 0 {
		if err := goleak.Find(); err != nil {
			fmt.Fprintln(os.Stderr, "goleak: leaked goroutines:", err)
			code = 1
		}
	}
	os.Exit(code)
}

// replicationDelay is the Global Tables stand-in's delay, as in production.
const replicationDelay = time.Second

// openEnv returns a fresh session table in both regions of the stack,
// replicated with replicationDelay; it skips (or, under `make test`, fails)
// without the stack.
func openEnv(t *testing.T) *sessionharness.Env {
	t.Helper()
	s := testserver.Require(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	e, err := sessionharness.Open(ctx, s, "sessions_test", replicationDelay)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := e.Close(ctx); err != nil {
			t.Errorf("close env: %v", err)
		}
	})
	return e
}
