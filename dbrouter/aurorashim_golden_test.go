package dbrouter

import (
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/regiondb/regiondb/internal/aurorashim"
)

var updateGolden = flag.Bool("update-aurora-golden", false, "rewrite testdata/aurorashim.golden")

// auroraSQL is every statement dbrouter sends only to Aurora MySQL. The
// Aurora shim of the tests (internal/aurorashim) runs them on MariaDB after
// renaming Aurora's tables and variables.
var auroraSQL = []string{
	probeAuroraIDQuery,
	probeAuroraTopologyQuery,
	auroraHostsQuery,
	auroraGlobalQuery,
	forwardConsistencyQuery,
}

// TestAuroraShimOnlyRenames asserts that what the shim runs differs from the
// production Aurora SQL by name substitution only: the shimmed statements
// are the golden ones, and undoing the renames gives the production text
// back byte for byte.
func TestAuroraShimOnlyRenames(t *testing.T) {
	var b strings.Builder
	for _, q := range auroraSQL {
		s, err := aurorashim.Rewrite(q)
		if err != nil {
			t.Fatal(err)
		}
		if back := aurorashim.Unrewrite(s); back != q {
			t.Errorf("shim changed more than names:\nproduction %q\nshim       %q\nundone     %q", q, s, back)
		}
		b.WriteString(q + "\n\t" + s + "\n")
	}
	path := filepath.Join("testdata", "aurorashim.golden")
	if *updateGolden {
		if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run with -update-aurora-golden once)", err)
	}
	if b.String() != string(want) {
		t.Errorf("production Aurora SQL or its shim form changed; got\n%s\nwant\n%s", b.String(), want)
	}
}
