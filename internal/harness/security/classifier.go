package security

import (
	"context"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"

	"github.com/regiondb/regiondb/dbrouter"
	"github.com/regiondb/regiondb/internal/sqlprobe"
	"github.com/regiondb/regiondb/internal/testserver"
)

// classifier runs every sqlprobe case on the stack (the server must show
// its effect), then sends it through a Router and counts those the router
// routed as a read (to a reader). Its control is a naive prefix rule
// (SELECT and SHOW go to a reader), which must route some to a reader.
func classifier(ctx context.Context, s *testserver.Stack, res *Result, log io.Writer) error {
	env, closeEnv, err := sqlprobe.OpenEnv(ctx, s.Addr("m1"), s.Addr("r1"))
	if err != nil {
		return err
	}
	defer closeEnv()
	res.ClassifierCases = len(sqlprobe.Cases)
	for _, c := range sqlprobe.Cases {
		ok, err := c.Observe(ctx, env)
		if err != nil {
			return fmt.Errorf("security: case %s: %w", c.Name, err)
		}
		if ok {
			res.ClassifierEffects++
		} else {
			fmt.Fprintf(log, "security: case %s showed no effect\n", c.Name)
		}
		up := strings.ToUpper(strings.TrimSpace(c.Query))
		if strings.HasPrefix(up, "SELECT") || strings.HasPrefix(up, "SHOW") {
			res.UnsafeNaivePrefix++
		}
	}
	rt, err := dbrouter.Open(dbrouter.Config{
		Region: testserver.PrimaryRegion,
		Writer: dbrouter.Endpoint{Name: "m1", DSN: s.DSN("m1", sqlprobe.Database)},
		Readers: []dbrouter.Endpoint{
			{Name: "r1", DSN: s.DSN("r1", sqlprobe.Database), Region: testserver.PrimaryRegion},
		},
	})
	if err != nil {
		return err
	}
	defer rt.Close()
	for _, c := range sqlprobe.Cases {
		// Route the statement for real; a read goes to a reader (where
		// the application user cannot write), a write to the writer.
		before := rt.Stats()
		if rows, err := rt.QueryContext(ctx, c.Query); err == nil {
			rows.Close()
		}
		after := rt.Stats()
		if after.ReadsLocal+after.ReadsRemote > before.ReadsLocal+before.ReadsRemote || after.Writes == before.Writes {
			res.UnsafeToReader++
			fmt.Fprintf(log, "security: case %s (%s) routed as a read\n", c.Name, c.Query)
		}
	}
	rt.ExecContext(ctx, "DO RELEASE_ALL_LOCKS()")
	return nil
}

// ModuleRootFiles returns the module root.
func ModuleRootFiles() (string, error) { return testserver.ModuleRoot() }

var fuzzFunc = regexp.MustCompile(`(?m)^func (Fuzz\w*)\(\w+ \*testing\.F\)`)

// CountFuzzTargets counts the fuzz targets (func FuzzX(f *testing.F)) in
// the module's test files, as `go test -list 'Fuzz.*' ./...` lists them.
func CountFuzzTargets(root string) (int, error) {
	n := 0
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && path != root && (strings.HasPrefix(d.Name(), ".") || d.Name() == "testdata" || d.Name() == "node_modules") {
			return filepath.SkipDir
		}
		if d.IsDir() || !strings.HasSuffix(path, "_test.go") {
			return nil
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		n += len(fuzzFunc.FindAll(b, -1))
		return nil
	})
	return n, err
}
