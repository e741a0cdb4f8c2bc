package cache

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/regiondb/regiondb/cache"
)

// Environment of a stampede child process.
const (
	envChild  = "REGIONDB_CACHEHARNESS_CHILD"
	envMC     = "REGIONDB_CACHEHARNESS_MC"
	envKey    = "REGIONDB_CACHEHARNESS_KEY"
	envN      = "REGIONDB_CACHEHARNESS_N"
	envLoadMS = "REGIONDB_CACHEHARNESS_LOAD_MS"
)

// IsChild reports whether this process was started by [Stampede] as one of
// its processes. Call it first in TestMain or main, and then
// os.Exit(ChildMain()).
func IsChild() bool { return os.Getenv(envChild) == "stampede" }

// StampedeConfig configures [Stampede].
type StampedeConfig struct {
	// Addr is the memcached address.
	Addr string
	// Key is the key all processes miss. It must not be cached yet.
	Key string
	// Processes is the number of OS processes. If zero, 4.
	Processes int
	// PerProcess is the number of concurrent Gets per process. If zero, 16.
	PerProcess int
	// LoadTime is how long each loader call takes. If zero, 100 ms.
	LoadTime time.Duration
}

// StampedeResult is what [Stampede] measured.
type StampedeResult struct {
	Gets        int   `json:"gets"`
	LoaderCalls int   `json:"loader_calls"`
	Errors      int   `json:"errors"`
	WrongValues int   `json:"wrong_values"`
	PerProcess  []int `json:"loader_calls_per_process"`
}

type childReport struct {
	Gets        int    `json:"gets"`
	LoaderCalls int    `json:"loader_calls"`
	Errors      int    `json:"errors"`
	WrongValues int    `json:"wrong_values"`
	FirstError  string `json:"first_error,omitempty"`
}

// Stampede starts cfg.Processes copies of this executable (which must call
// [IsChild]/[ChildMain] first), each with its own Cache and memcached
// connections, releases them at once (a barrier over their stdin), lets each
// run cfg.PerProcess concurrent Gets of one missing key, and sums the loader
// calls they made.
func Stampede(ctx context.Context, cfg StampedeConfig) (StampedeResult, error) {
	if cfg.Processes == 0 {
		cfg.Processes = 4
	}
	if cfg.PerProcess == 0 {
		cfg.PerProcess = 16
	}
	if cfg.LoadTime == 0 {
		cfg.LoadTime = 100 * time.Millisecond
	}
	exe, err := os.Executable()
	if err != nil {
		return StampedeResult{}, err
	}
	type proc struct {
		cmd   *exec.Cmd
		stdin io.WriteCloser
		out   *bufio.Reader
	}
	procs := make([]*proc, 0, cfg.Processes)
	defer func() {
		for _, p := range procs {
			p.stdin.Close()
			p.cmd.Process.Kill()
			p.cmd.Wait()
		}
	}()
	for range cfg.Processes {
		cmd := exec.CommandContext(ctx, exe, "-test.run=^$")
		cmd.Env = append(os.Environ(), envChild+"=stampede", envMC+"="+cfg.Addr, envKey+"="+cfg.Key,
			envN+"="+strconv.Itoa(cfg.PerProcess), envLoadMS+"="+strconv.FormatInt(cfg.LoadTime.Milliseconds(), 10))
		cmd.Stderr = os.Stderr
		stdin, err := cmd.StdinPipe()
		if err != nil {
			return StampedeResult{}, err
		}
		stdout, err := cmd.StdoutPipe()
		if err != nil {
			return StampedeResult{}, err
		}
		if err := cmd.Start(); err != nil {
			return StampedeResult{}, err
		}
		procs = append(procs, &proc{cmd: cmd, stdin: stdin, out: bufio.NewReader(stdout)})
	}
	for i, p := range procs {
		line, err := p.out.ReadString('\n')
		if err != nil || line != "ready\n" {
			return StampedeResult{}, fmt.Errorf("cacheharness: stampede process %d not ready: %q %v", i, line, err)
		}
	}
	for _, p := range procs { // the barrier: all are connected and waiting
		if _, err := io.WriteString(p.stdin, "go\n"); err != nil {
			return StampedeResult{}, err
		}
	}
	var res StampedeResult
	for i, p := range procs {
		line, err := p.out.ReadBytes('\n')
		if err != nil {
			return res, fmt.Errorf("cacheharness: stampede process %d: %v", i, err)
		}
		var r childReport
		if err := json.Unmarshal(bytes.TrimSpace(line), &r); err != nil {
			return res, fmt.Errorf("cacheharness: stampede process %d: %q: %v", i, line, err)
		}
		if r.FirstError != "" {
			return res, fmt.Errorf("cacheharness: stampede process %d: %s", i, r.FirstError)
		}
		res.Gets += r.Gets
		res.LoaderCalls += r.LoaderCalls
		res.Errors += r.Errors
		res.WrongValues += r.WrongValues
		res.PerProcess = append(res.PerProcess, r.LoaderCalls)
	}
	return res, nil
}

// ChildMain is the body of a stampede process; it returns the exit code.
func ChildMain() int {
	n, _ := strconv.Atoi(os.Getenv(envN))
	ms, _ := strconv.Atoi(os.Getenv(envLoadMS))
	key := os.Getenv(envKey)
	mc := Client(os.Getenv(envMC))
	defer mc.Close()
	c, err := cache.New(cache.Config{Client: mc})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer c.Close()
	// Warm one connection per goroutine so the release is not a dial race.
	for range n {
		mc.Get("regiondb:cacheharness:warmup")
	}
	fmt.Println("ready")
	if _, err := bufio.NewReader(os.Stdin).ReadString('\n'); err != nil {
		return 1
	}
	want := []byte("value of " + key)
	var (
		calls atomic.Int64
		mu    sync.Mutex // protects rep
		rep   childReport
		wg    sync.WaitGroup
	)
	load := func(ctx context.Context) ([]byte, error) {
		calls.Add(1)
		time.Sleep(time.Duration(ms) * time.Millisecond) // the database's work
		return want, nil
	}
	for range n {
		wg.Go(func() {
			v, err := c.Get(context.Background(), key, load)
			mu.Lock()
			defer mu.Unlock()
			rep.Gets++
			switch {
			case err != nil:
				rep.Errors++
				if rep.FirstError == "" {
					rep.FirstError = err.Error()
				}
			case !bytes.Equal(v, want):
				rep.WrongValues++
			}
		})
	}
	wg.Wait()
	rep.LoaderCalls = int(calls.Load())
	b, _ := json.Marshal(rep)
	fmt.Println(string(b))
	return 0
}
