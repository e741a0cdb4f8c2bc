package stack

import (
	"bufio"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
)

// rssTotal returns the summed resident set size of the running servers, in bytes.
func (s *Stack) rssTotal() int64 {
	s.mu.Lock()
	var pids []int
	for _, sv := range s.servers {
		if sv.proc != nil && sv.proc.alive() {
			pids = append(pids, sv.proc.cmd.Process.Pid)
		}
	}
	s.mu.Unlock()
	var total int64
	for _, pid := range pids {
		total += vmRSS(pid)
	}
	return total
}

func vmRSS(pid int) int64 {
	f, err := os.Open("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")), 10, 64)
			return kb << 10
		}
	}
	return 0
}

// WatchPeakRSS samples the servers' total RSS every interval until stop is
// closed, and returns a function reporting the peak seen.
func (s *Stack) WatchPeakRSS(interval time.Duration, stop <-chan struct{}) func() int64 {
	var peak atomic.Int64
	sample := func() {
		if v := s.rssTotal(); v > peak.Load() {
			peak.Store(v)
		}
	}
	sample()
	go func() {
		t := time.NewTicker(interval)
		defer t.Stop()
		for {
			select {
			case <-stop:
				return
			case <-t.C:
				sample()
			}
		}
	}()
	return peak.Load
}
