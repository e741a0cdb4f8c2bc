package demo

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/regiondb/regiondb/internal/testserver"
)

// Build compiles the package pkg (e.g. "./examples/photoalbum") of the module
// into dir and returns the binary's path.
func Build(ctx context.Context, pkg, dir string) (string, error) {
	root, err := testserver.ModuleRoot()
	if err != nil {
		return "", err
	}
	bin := filepath.Join(dir, filepath.Base(pkg))
	cmd := exec.CommandContext(ctx, "go", "build", "-o", bin, pkg)
	cmd.Dir = root
	cmd.SysProcAttr = childAttr()
	out, err := cmd.CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("demo: go build %s: %v\n%s", pkg, err, out)
	}
	return bin, nil
}

// instance is one running photoalbum process.
type instance struct {
	region string
	url    string
	cmd    *exec.Cmd
	done   chan struct{} // closed once the process has exited and been reaped
	log    *os.File
}

const listenPrefix = "photoalbum: listening on "

// startInstance runs bin with args, its stdout and stderr going to logPath,
// and waits until it prints its listening line. The child gets SIGKILL if
// this process dies (parent-death signal), so it never outlives the demo.
func startInstance(ctx context.Context, region, bin string, args []string, logPath string) (*instance, error) {
	logf, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, args...)
	cmd.SysProcAttr = childAttr()
	cmd.Stderr = logf
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		logf.Close()
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		logf.Close()
		return nil, err
	}
	inst := &instance{region: region, cmd: cmd, done: make(chan struct{}), log: logf}
	urls := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			line := sc.Text()
			if u, ok := strings.CutPrefix(line, listenPrefix); ok {
				select {
				case urls <- strings.TrimSpace(u):
				default:
				}
			}
			fmt.Fprintln(logf, line)
		}
		io.Copy(logf, stdout)
		cmd.Wait()
		close(inst.done)
	}()
	timer := time.NewTimer(90 * time.Second)
	defer timer.Stop()
	select {
	case inst.url = <-urls:
		return inst, nil
	case <-inst.done:
		logf.Close()
		return nil, fmt.Errorf("demo: photoalbum (%s) exited before listening: %s; see %s", region, cmd.ProcessState, logPath)
	case <-ctx.Done():
		inst.stop()
		return nil, ctx.Err()
	case <-timer.C:
		inst.stop()
		return nil, fmt.Errorf("demo: photoalbum (%s) did not start listening within 90s; see %s", region, logPath)
	}
}

// stop asks the instance to shut down (SIGTERM), kills it after 10 s, and
// waits for it to exit. It is safe to call more than once.
func (i *instance) stop() {
	select {
	case <-i.done:
	default:
		i.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-i.done:
		case <-time.After(10 * time.Second):
			i.cmd.Process.Kill()
			<-i.done
		}
	}
	i.log.Close()
}

// exited reports whether the instance has stopped on its own.
func (i *instance) exited() bool {
	select {
	case <-i.done:
		return true
	default:
		return false
	}
}
