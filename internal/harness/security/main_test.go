package security

import (
	"os"
	"testing"

	"go.uber.org/goleak"
)

// TestMain also serves as the harness's child process when TestRunStack
// re-executes the test binary with EnvChild set.
func TestMain(m *testing.M) {
	if IsChild() {
		os.Exit(ChildMain())
	}
	goleak.VerifyTestMain(m)
}
