package stack

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"
)

// spawner starts every child process from one locked OS thread, so that the
// children's parent-death signal (SIGKILL when the stack dies, even by
// SIGKILL) is tied to a thread that lives as long as the stack.
type spawner struct {
	reqs chan spawnReq
}

type spawnReq struct {
	cmd  *exec.Cmd
	done chan error
}

func newSpawner() *spawner {
	s := &spawner{reqs: make(chan spawnReq)}
	go func() {
		runtime.LockOSThread() // never unlocked: the thread lives until the process exits
		for r := range s.reqs {
			r.done <- r.cmd.Start()
		}
	}()
	return s
}

func (s *spawner) start(cmd *exec.Cmd) error {
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Setpgid: true}
	done := make(chan error, 1)
	s.reqs <- spawnReq{cmd: cmd, done: done}
	return <-done
}

// proc is one running server process.
type proc struct {
	cmd    *exec.Cmd
	exited chan struct{}
	// expected is set before the stack itself signals the process (a fault
	// control, a reset, Down): its exit is then no failure.
	expected atomic.Bool
}

// run starts a server with its output appended to logPath. onExit, if not
// nil, runs in its own goroutine once the process has exited and been reaped.
func (s *spawner) run(logPath string, onExit func(*proc), name string, args ...string) (*proc, error) {
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(name, args...)
	cmd.Stdout = logf
	cmd.Stderr = logf
	if err := s.start(cmd); err != nil {
		logf.Close()
		return nil, err
	}
	p := &proc{cmd: cmd, exited: make(chan struct{})}
	go func() {
		cmd.Wait()
		logf.Close()
		close(p.exited)
		if onExit != nil {
			go onExit(p)
		}
	}()
	return p, nil
}

func (p *proc) alive() bool {
	select {
	case <-p.exited:
		return false
	default:
		return true
	}
}

// signal marks the exit as expected, sends sig and waits up to timeout for the process to exit, then
// kills it.
func (p *proc) signal(sig syscall.Signal, timeout time.Duration) {
	if !p.alive() {
		return
	}
	p.expected.Store(true)
	p.cmd.Process.Signal(sig)
	select {
	case <-p.exited:
	case <-time.After(timeout):
		p.cmd.Process.Kill()
		<-p.exited
	}
}

// cmdline returns a process's command line as recorded by the kernel, or ""
// if it is gone.
func cmdline(pid int) string {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cmdline")
	if err != nil {
		return ""
	}
	return string(bytes.TrimRight(b, "\x00"))
}

func joinArgs(name string, args []string) string {
	return strings.Join(append([]string{name}, args...), "\x00")
}

// killOrphan kills pid only if it still runs exactly the command line the
// stack recorded for it, so that an unrelated process is never touched.
func killOrphan(pid int, want string) bool {
	if pid <= 0 || want == "" {
		return false
	}
	got := cmdline(pid)
	if got == "" || !strings.HasSuffix(got, want[strings.Index(want, "\x00")+1:]) {
		return false
	}
	syscall.Kill(pid, syscall.SIGKILL)
	for i := 0; i < 100 && cmdline(pid) != ""; i++ {
		time.Sleep(20 * time.Millisecond)
	}
	return true
}

var errNotFound = errors.New("not found")

// lookPath finds a program, with a hint naming what installs it.
func lookPath(prog, hint string) (string, error) {
	for _, dir := range []string{"", "/usr/sbin/", "/usr/bin/", "/usr/local/bin/"} {
		if dir == "" {
			if p, err := exec.LookPath(prog); err == nil {
				return p, nil
			}
			continue
		}
		if _, err := os.Stat(dir + prog); err == nil {
			return dir + prog, nil
		}
	}
	return "", fmt.Errorf("%s %w: %s", prog, errNotFound, hint)
}
