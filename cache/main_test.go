package cache_test

import (
	"os"
	"testing"

	cacheharness "github.com/regiondb/regiondb/internal/harness/cache"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	if cacheharness.IsChild() { // a process of the cross-process stampede test
		os.Exit(cacheharness.ChildMain())
	}
	goleak.VerifyTestMain(m)
}
