package stack_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/regiondb/regiondb/internal/testserver"
)

// These tests run the stack command itself, in a folder and on ports of their
// own, to check what it does with bad input and crashes. They need the
// programs the stack runs, which `make test` installs.

const testPorts = 23100

func stackBinary(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "stack")
	out, err := exec.Command("go", "build", "-o", bin, "github.com/regiondb/regiondb/internal/cmd/stack").CombinedOutput()
	if err != nil {
		t.Fatalf("build stack: %v\n%s", err, out)
	}
	return bin
}

func requirePrograms(t *testing.T) string {
	t.Helper()
	tools := os.Getenv("REGIONDB_TOOLS")
	if tools == "" {
		tools, _ = filepath.Abs("../../.tools")
	}
	_, err1 := exec.LookPath("mariadbd")
	_, err2 := os.Stat(filepath.Join(tools, "node_modules", "dynalite", "cli.js"))
	if err1 != nil && !fileExists("/usr/sbin/mariadbd") || err2 != nil {
		if testserver.Required() {
			t.Fatalf("stack programs missing (run make deps): %v %v", err1, err2)
		}
		t.Skip("stack programs missing: run `make deps` (or `make test`)")
	}
	return tools
}

func fileExists(p string) bool { _, err := os.Stat(p); return err == nil }

func command(bin, dir, tools string, args ...string) *exec.Cmd {
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), "REGIONDB_STACK_DIR="+dir, "REGIONDB_STACK_PORTS="+strconv.Itoa(testPorts), "REGIONDB_TOOLS="+tools)
	return cmd
}

func TestPortTakenIsOneClearLine(t *testing.T) {
	tools := requirePrograms(t)
	bin := stackBinary(t)
	ln, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(testPorts+21))
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	out, err := command(bin, t.TempDir(), tools, "run", "--", "true").CombinedOutput()
	if err == nil {
		t.Fatal("stack started although a port was taken")
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	if len(lines) != 1 || !strings.Contains(lines[0], strconv.Itoa(testPorts+21)) || !strings.Contains(lines[0], "mc1") {
		t.Fatalf("want one line naming port %d and mc1, got:\n%s", testPorts+21, out)
	}
}

func TestRefusesForeignFolder(t *testing.T) {
	tools := requirePrograms(t)
	bin := stackBinary(t)
	dir := t.TempDir()
	keep := filepath.Join(dir, "precious.txt")
	os.WriteFile(keep, []byte("user data"), 0o644)
	out, err := command(bin, dir, tools, "run", "--", "true").CombinedOutput()
	if err == nil || !strings.Contains(string(out), "not empty") {
		t.Fatalf("want a refusal of a folder the stack did not make, got %v:\n%s", err, out)
	}
	if !fileExists(keep) {
		t.Fatal("the stack deleted a file it did not make")
	}
}

func TestKilledStackLeavesNoServers(t *testing.T) {
	tools := requirePrograms(t)
	bin := stackBinary(t)
	dir := t.TempDir()

	up := command(bin, dir, tools, "up")
	var out syncBuffer
	up.Stdout, up.Stderr = &out, &out
	if err := up.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("stack output:\n%s", out.String())
		}
	})
	children := waitChildren(t, dir, up.Process.Pid)
	if len(children) != 7 {
		t.Fatalf("want 7 servers, got %d", len(children))
	}
	up.Process.Signal(syscall.SIGKILL)
	up.Wait()
	for _, pid := range children {
		waitGone(t, pid)
	}

	// A second run in the same folder starts cleanly after the crash, and a
	// signal stops it with its servers.
	again := command(bin, dir, tools, "up")
	again.Stdout, again.Stderr = &out, &out
	if err := again.Start(); err != nil {
		t.Fatal(err)
	}
	children = waitChildren(t, dir, again.Process.Pid)
	again.Process.Signal(syscall.SIGTERM)
	if err := again.Wait(); err != nil {
		t.Fatalf("stack exit after SIGTERM: %v", err)
	}
	for _, pid := range children {
		waitGone(t, pid)
	}
	if fileExists(filepath.Join(dir, "state.json")) {
		t.Fatal("state.json left behind after a clean stop")
	}
}

// waitChildren waits until the stack with the given pid is up, and returns
// its servers' pids.
func waitChildren(t *testing.T, dir string, stackPID int) []int {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		pid, _ := os.ReadFile(filepath.Join(dir, "stack.pid"))
		if strings.TrimSpace(string(pid)) == strconv.Itoa(stackPID) && fileExists(filepath.Join(dir, "state.json")) {
			b, err := os.ReadFile(filepath.Join(dir, "children.json"))
			if err == nil {
				var recs []struct{ PID int }
				if json.Unmarshal(b, &recs) == nil {
					pids := make([]int, len(recs))
					for i, r := range recs {
						pids[i] = r.PID
					}
					return pids
				}
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatal("stack did not come up within 60 s")
	return nil
}

// waitGone waits until pid has exited (or is a zombie nobody reaps, whose
// other threads have exited too: a killed mariadbd's leader thread turns
// zombie while its other threads still hold its files, its port among them).
func waitGone(t *testing.T, pid int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	dir := "/proc/" + strconv.Itoa(pid)
	for time.Now().Before(deadline) {
		b, err := os.ReadFile(dir + "/stat")
		if err != nil {
			return
		}
		if strings.Contains(string(b), ") Z ") {
			if tasks, err := os.ReadDir(dir + "/task"); err != nil || len(tasks) <= 1 {
				return
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("server pid %d still running after its stack ended", pid)
}

// TestUnexpectedDeathFailsTheRun kills a server behind the stack's back
// (kill -9 of its pid) while a command that succeeds runs under `stack run`:
// the run fails, with one line naming the server and its last log lines. The
// control kills the same server through the fault control: the run succeeds.
func TestUnexpectedDeathFailsTheRun(t *testing.T) {
	tools := requirePrograms(t)
	bin := stackBinary(t)
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	run := func(mode string) (string, error) {
		cmd := command(bin, t.TempDir(), tools, "run", "--", self)
		cmd.Env = append(cmd.Env, childEnv+"="+mode)
		out, err := cmd.CombinedOutput()
		return string(out), err
	}

	out, err := run("behind")
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != 1 {
		t.Fatalf("stack run after a server died behind its back: %v, want exit status 1\n%s", err, out)
	}
	if strings.Contains(out, "child:") {
		t.Fatalf("the command under the stack failed:\n%s", out)
	}
	var deathLines []string
	for _, l := range strings.Split(out, "\n") {
		if strings.Contains(l, "died unexpectedly") {
			deathLines = append(deathLines, l)
		}
	}
	if len(deathLines) != 1 {
		t.Fatalf("want one line reporting the death, got %d:\n%s", len(deathLines), out)
	}
	t.Log(deathLines[0])
	for _, want := range []string{"server ddb2", "signal: killed", "last log lines:", "dynalite-server: listening"} {
		if !strings.Contains(deathLines[0], want) {
			t.Fatalf("death line lacks %q: %s", want, deathLines[0])
		}
	}

	t.Run("control: a fault-control kill is no failure", func(t *testing.T) {
		out, err := run("control")
		if err != nil || strings.Contains(out, "died unexpectedly") {
			t.Fatalf("stack run after a fault-control kill: %v, want success\n%s", err, out)
		}
	})
}

// syncBuffer is a bytes.Buffer safe for the concurrent writes of a child's
// stdout and stderr copiers and the test's reads.
type syncBuffer struct {
	mu sync.Mutex // protects b
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
