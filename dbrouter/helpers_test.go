package dbrouter

import (
	"context"
	"database/sql"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/regiondb/regiondb/internal/testserver"
)

const testDB = "regiondb_dbrouter"

var setupOnce sync.Once

// stackConfig returns a Config for the stack: writer m1, readers r1
// (ap-northeast-1) and r2 (us-east-1), local region region.
func stackConfig(t testing.TB, s *testserver.Stack, region string) Config {
	t.Helper()
	setupOnce.Do(func() { setupDB(t, s) })
	return Config{
		Region: region,
		Writer: Endpoint{Name: "m1", DSN: s.DSN("m1", testDB)},
		Readers: []Endpoint{
			{Name: "r1", DSN: s.DSN("r1", testDB), Region: testserver.PrimaryRegion},
			{Name: "r2", DSN: s.DSN("r2", testDB), Region: testserver.SecondaryRegion},
		},
		TokenKeys: []TokenKey{{ID: 1, Secret: []byte("0123456789abcdef0123456789abcdef")}},
	}
}

func setupDB(t testing.TB, s *testserver.Stack) {
	t.Helper()
	db, err := sql.Open("mysql", s.DSN("m1", ""))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	for _, q := range []string{
		"CREATE DATABASE IF NOT EXISTS " + testDB,
		"CREATE TABLE IF NOT EXISTS " + testDB + ".kv (k VARCHAR(64) PRIMARY KEY, v BIGINT NOT NULL)",
	} {
		if _, err := db.Exec(q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	waitReplicated(t, s)
}

// waitReplicated waits until every replica has applied everything the
// primary has.
func waitReplicated(t testing.TB, s *testserver.Stack) {
	t.Helper()
	if err := s.WaitReplicated(context.Background()); err != nil {
		t.Fatal(err)
	}
}

func openRouter(t testing.TB, cfg Config) *Router {
	t.Helper()
	rt, err := Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rt.Close() })
	return rt
}

// waitFor polls cond until it holds or d passes.
func waitFor(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(5 * time.Millisecond) // polling a condition, not synchronising
	}
}

func ctxT(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// key returns a fresh key (kv.k is VARCHAR(64)).
func key(t testing.TB) string {
	n := t.Name()
	if len(n) > 40 {
		n = n[len(n)-40:]
	}
	return fmt.Sprintf("%s-%d", n, time.Now().UnixNano())
}
