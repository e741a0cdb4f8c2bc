package demo

import (
	"context"
	"database/sql"
	"io"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"testing"
	"time"

	"github.com/regiondb/regiondb/internal/testserver"
)

// TestQuickstart runs examples/quickstart in N. Virginia (its reader r2
// replicates 150 ms behind the writer) and checks that a note added is
// counted by the very next request, through the router and the cache.
func TestQuickstart(t *testing.T) {
	s := testserver.Require(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	bin, err := Build(ctx, "./examples/quickstart", t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	cmd := exec.Command(bin,
		"-region", virginia, "-addr", addr,
		"-writer", s.DSN("m1", "regiondb"), "-reader", s.DSN(s.Reader(virginia), "regiondb"),
		"-memcached", s.Memcached(virginia), "-dynamodb", s.DynamoDBEndpoint(virginia),
		"-token-key", "quickstart-test-key-0123456789")
	cmd.Env = append(os.Environ(), "AWS_ACCESS_KEY_ID=local", "AWS_SECRET_ACCESS_KEY=local")
	cmd.SysProcAttr = childAttr()
	logf, err := os.Create(t.TempDir() + "/quickstart.log")
	if err != nil {
		t.Fatal(err)
	}
	defer logf.Close()
	t.Cleanup(func() {
		if t.Failed() {
			b, _ := os.ReadFile(logf.Name())
			t.Logf("quickstart's output:\n%s", b)
		}
	})
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	defer func() {
		cmd.Process.Kill()
		<-exited
	}()

	jar, _ := cookiejar.New(nil)
	hc := &http.Client{Jar: jar, Timeout: 10 * time.Second}
	defer hc.CloseIdleConnections()
	base := "http://" + addr
	count := regexp.MustCompile(`^(\d+) notes; your last one: "(.*)"`)
	get := func() (int, string) {
		t.Helper()
		resp, err := hc.Get(base + "/notes")
		if err != nil {
			t.Fatalf("GET /notes: %v", err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		m := count.FindStringSubmatch(string(b))
		if resp.StatusCode != http.StatusOK || m == nil {
			t.Fatalf("GET /notes: %s %q", resp.Status, b)
		}
		n, _ := strconv.Atoi(m[1])
		return n, m[2]
	}
	// Wait until it serves: it creates its tables first, and they reach the
	// reader 150 ms later.
	for deadline := time.Now().Add(60 * time.Second); ; {
		select {
		case err := <-exited:
			b, _ := os.ReadFile(logf.Name())
			t.Fatalf("quickstart exited: %v\n%s", err, b)
		default:
		}
		resp, err := hc.Get(base + "/notes")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("quickstart did not serve within 60 s: %v", err)
		}
		time.Sleep(50 * time.Millisecond) // polling a subprocess until it listens
	}
	// The truth, on the writer. (Checking against the previous answer
	// would not do: the stack's Reset empties the database but not
	// memcached, so the first count can be a previous run's.)
	writer, err := sql.Open("mysql", s.DSN("m1", "regiondb"))
	if err != nil {
		t.Fatal(err)
	}
	defer writer.Close()
	for i := range 20 {
		body := "note " + strconv.Itoa(i)
		resp, err := hc.PostForm(base+"/notes", url.Values{"body": {body}})
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("POST /notes: %s", resp.Status)
		}
		var want int
		if err := writer.QueryRowContext(ctx, "SELECT COUNT(*) FROM quickstart_notes").Scan(&want); err != nil {
			t.Fatal(err)
		}
		got, last := get()
		if got != want || last != body {
			t.Fatalf("after adding %q, the next request showed %d notes (the writer has %d), last %q", body, got, want, last)
		}
	}
}
