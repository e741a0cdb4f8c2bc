package dbrouter

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain checks that no test leaves a goroutine behind: every Router's
// monitors must stop in Close, and no connection of ours may stay parked in
// a network read. The stack's control client keeps no idle connections
// (testserver disables keep-alives), so nothing needs ignoring.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
