package stack

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/regiondb/regiondb/internal/testserver"
)

// maxRestarts is how often the stack restarts one server after unexpected
// deaths.
const maxRestarts = 3

// lastLogLines is how many of a dead server's last log lines its death
// report quotes.
const lastLogLines = 3

// exited runs when one of the stack's servers has exited. An exit the stack
// asked for (a fault control, a reset, Down) is no event; any other is a
// death: logged on one line naming the server and its last log lines, and
// recorded in the state file, where `stack run` and the demo find it. The
// server is then restarted (at most maxRestarts times).
func (s *Stack) exited(sv *server, p *proc) {
	if p.expected.Load() {
		return
	}
	d := testserver.Death{
		Server:  sv.Name,
		Kind:    sv.Kind,
		Region:  sv.Region,
		PID:     p.cmd.Process.Pid,
		Exit:    p.cmd.ProcessState.String(),
		At:      time.Now().UTC(),
		LastLog: tailLines(s.logPath(sv), lastLogLines),
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	// A control operation may have signalled the process between the check
	// above and the lock.
	if p.expected.Load() || s.closed || sv.proc != p {
		return
	}
	s.deaths = append(s.deaths, d)
	s.cfg.Logf("%s", d)
	if err := s.writeState(); err != nil {
		s.cfg.Logf("write state after %s's death: %v", sv.Name, err)
	}
	// Bring the server back, so that what runs next finds the stack
	// whole; the death stays recorded and still fails the run.
	if s.restarts[sv.Name] >= maxRestarts {
		s.cfg.Logf("%s not restarted: it died %d times", sv.Name, s.restarts[sv.Name]+1)
		return
	}
	s.restarts[sv.Name]++
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := s.start(ctx, sv.Name, 0); err != nil {
		s.cfg.Logf("restart %s: %v", sv.Name, err)
	} else {
		s.cfg.Logf("%s restarted (restart %d of at most %d)", sv.Name, s.restarts[sv.Name], maxRestarts)
	}
	if err := s.writeState(); err != nil {
		s.cfg.Logf("write state after restarting %s: %v", sv.Name, err)
	}
}

// UnexpectedDeaths returns the server exits that no fault control asked for,
// in the order they happened.
func (s *Stack) UnexpectedDeaths() []testserver.Death {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]testserver.Death(nil), s.deaths...)
}

// logPath is the file holding what the server says about its own failures.
func (s *Stack) logPath(sv *server) string {
	if sv.Kind == testserver.KindMariaDB {
		return filepath.Join(sv.dataDir, "error.log")
	}
	return filepath.Join(s.cfg.Dir, sv.Name+".log")
}

// tailLines returns the last n non-empty lines of a file, each on one line
// and at most 300 bytes long.
func tailLines(path string, n int) []string {
	f, err := os.Open(path)
	if err != nil {
		return []string{"(no log: " + err.Error() + ")"}
	}
	defer f.Close()
	const window = 16 << 10
	var off int64
	if fi, err := f.Stat(); err == nil && fi.Size() > window {
		off = fi.Size() - window
	}
	buf := make([]byte, window)
	m, _ := f.ReadAt(buf, off)
	lines := strings.Split(string(buf[:m]), "\n")
	var out []string
	for i := len(lines) - 1; i >= 0 && len(out) < n; i-- {
		l := strings.TrimSpace(strings.ReplaceAll(lines[i], "\r", ""))
		if l == "" {
			continue
		}
		if len(l) > 300 {
			l = l[:300] + "..."
		}
		out = append([]string{l}, out...)
	}
	if len(out) == 0 {
		return []string{"(empty log)"}
	}
	return out
}
