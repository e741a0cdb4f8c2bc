package dbrouter

import (
	"database/sql"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/regiondb/regiondb/internal/aurorashim"
	"github.com/regiondb/regiondb/internal/testserver"
)

func TestForwardable(t *testing.T) {
	for _, tc := range []struct {
		q    string
		want bool
	}{
		{"INSERT INTO kv VALUES (1, 2)", true},
		{"  /* c */ update kv SET v = 1", true},
		{"DELETE FROM kv", true},
		{"REPLACE INTO kv VALUES (1, 2)", true},
		{"SELECT v FROM kv WHERE k = 1 FOR UPDATE", true},
		{"WITH x AS (SELECT 1) SELECT * FROM x", true},
		{"SELECT * FROM kv INTO OUTFILE '/tmp/x'", false},
		{"CREATE TABLE t (a INT)", false},
		{"ALTER TABLE kv ADD c INT", false},
		{"DROP TABLE kv", false},
		{"TRUNCATE kv", false},
		{"XA START 'x'", false},
		{"SAVEPOINT a", false},
		{"LOAD DATA INFILE 'x' INTO TABLE kv", false},
		{"LOCK TABLES kv WRITE", false},
		{"SET @x = 1", false},
		{"CALL p()", false},
		{"/*!50000 CREATE TABLE t (a INT) */", false},
		{"INSERT INTO kv VALUES (1, 2) /*!, (3, 4) */", false},
		{"", false},
	} {
		if got := forwardable(tc.q); got != tc.want {
			t.Errorf("forwardable(%q) = %v, want %v", tc.q, got, tc.want)
		}
	}
}

func TestWriteForwardingConfig(t *testing.T) {
	fwd := map[string]Endpoint{"us-east-1": {Name: "fwd", DSN: "u:p@tcp(ro.example:3306)/db"}}
	base := Config{Region: "us-east-1", Writer: Endpoint{DSN: "u:p@tcp(w.example:3306)/db"}}
	for _, tc := range []struct {
		name  string
		edit  func(*Config)
		field string
	}{
		{"without Aurora", func(c *Config) { c.WriteForwarding = fwd }, "WriteForwarding"},
		{"wrong region", func(c *Config) {
			c.Aurora, c.Dialect = true, DialectHeartbeat
			c.WriteForwarding = map[string]Endpoint{"us-east-1": {DSN: "u:p@tcp(ro.example:3306)/db", Region: "eu-west-1"}}
		}, "WriteForwarding[us-east-1].Region"},
		{"bad pool", func(c *Config) {
			c.Aurora, c.Dialect = true, DialectHeartbeat
			c.WriteForwarding = fwd
			c.ForwardingPool = PoolConfig{MaxOpenConns: 2, MaxIdleConns: 3}
		}, "ForwardingPool"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := base
			tc.edit(&cfg)
			_, err := validate(cfg)
			var ce *ConfigError
			if !errors.As(err, &ce) || ce.Field != tc.field {
				t.Fatalf("validate: %v, want a ConfigError on %s", err, tc.field)
			}
		})
	}
	cfg := base
	cfg.Aurora, cfg.Dialect, cfg.WriteForwarding = true, DialectHeartbeat, fwd
	n, err := validate(cfg)
	if err != nil || n.forward == nil || n.forward.Region != "us-east-1" {
		t.Fatalf("validate: %v, %+v", err, n)
	}
	cfg.Region = "eu-west-1" // no entry for this region: no forwarding
	if n, err := validate(cfg); err != nil || n.forward != nil {
		t.Fatalf("other region: %v, %+v", err, n)
	}
}

// TestWriteForwarding runs a us-east-1 router of the shim's Global Database
// with forwarding through r2 (the emulation of internal/aurorashim, whose
// limits are listed there): writes are forwarded and read back from r2,
// restricted statements go to the writer, and a restricted statement inside
// a forwarded transaction fails with ErrForwardingRestricted, not
// ErrOutcomeUnknown.
func TestWriteForwarding(t *testing.T) {
	s := testserver.Require(t)
	sh, cfg := auroraStack(t, s)
	// A Tokyo router beats.
	beater := openAurora(t, cfg)
	ctx := ctxT(t)
	if _, err := beater.ExecContext(ctx, "INSERT INTO kv (k, v) VALUES ('fwd-warm', 1) ON DUPLICATE KEY UPDATE v = v + 1"); err != nil {
		t.Fatal(err)
	}
	// A forwarded write's position is the heartbeat row its session then
	// shows: wait for the beater's first beat (a service's heartbeat row
	// exists from its first deployment on; a test's starts empty, and a
	// write forwarded before it is a position failure, 1 run in 8 here).
	m1, err := sql.Open("mysql", s.DSN("m1", testDB))
	if err != nil {
		t.Fatal(err)
	}
	defer m1.Close()
	waitFor(t, 10*time.Second, "the first heartbeat", func() bool {
		var n int
		return m1.QueryRowContext(ctx, "SELECT COUNT(*) FROM regiondb_heartbeat WHERE id = 1").Scan(&n) == nil && n == 1
	})
	waitReplicated(t, s)

	fsh := &aurorashim.Shim{Stack: s, Resolver: sh.Resolver, Global: true, Instances: sh.Instances}
	dsn := strings.Replace(s.DSN("m1", testDB), s.Addr("m1"), "virginia-a.def.us-east-1.rds.test:3306", 1)
	fc, err := fsh.ForwardingConnector(dsn)
	if err != nil {
		t.Fatal(err)
	}
	ucfg := cfg
	ucfg.Region, ucfg.HeartbeatPeriod = testserver.SecondaryRegion, 0
	ucfg.NewConnector = fsh.Connector
	ucfg.WriteForwarding = map[string]Endpoint{testserver.SecondaryRegion: {Name: "fwd", DSN: dsn, Connector: fc}}
	rt := openAurora(t, ucfg)
	if !rt.forwarding() {
		t.Fatalf("not forwarding: writer %s in %s", rt.curWriter().spec.Name, rt.curWriter().spec.Region)
	}

	for i := range 10 {
		sctx := NewContext(ctx)
		k := "fwd-" + time.Now().Format("150405.000000") + "-" + string(rune('a'+i))
		if _, err := rt.ExecContext(sctx, "INSERT INTO kv (k, v) VALUES (?, 1)", k); err != nil {
			t.Fatal(err)
		}
		var v int
		if err := rt.QueryRowContext(sctx, "SELECT v FROM kv WHERE k = ?", k).Scan(&v); err != nil {
			t.Fatalf("read-back %d: %v", i, err)
		}
	}
	st := rt.Stats()
	if st.WritesForwarded != 10 || st.WritePositionFailures != 0 {
		t.Fatalf("%d writes forwarded (want 10), %d position failures", st.WritesForwarded, st.WritePositionFailures)
	}
	if n := fsh.PeakOpen("tokyo-a"); n > 1 { // OpenAurora's own confirmation only
		t.Errorf("%d connections to the writer, want at most OpenAurora's one", n)
	}

	// DDL is restricted: it goes to the writer.
	if _, err := rt.ExecContext(ctx, "CREATE TABLE IF NOT EXISTS fwd_ddl (a INT PRIMARY KEY)"); err != nil {
		t.Fatalf("DDL: %v", err)
	}
	if got := rt.Stats().WritesForwarded; got != 10 {
		t.Errorf("DDL was forwarded (%d)", got)
	}
	// A SERIALIZABLE transaction goes to the writer.
	tx, err := rt.BeginTx(ctx, &sql.TxOptions{Isolation: sql.LevelSerializable})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.ExecContext(ctx, "INSERT INTO kv (k, v) VALUES ('fwd-serial', 1) ON DUPLICATE KEY UPDATE v = v + 1"); err != nil {
		t.Fatal(err)
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
	if got := rt.Stats().WritesForwarded; got != 10 {
		t.Errorf("SERIALIZABLE transaction was forwarded (%d)", got)
	}
	// A forwarded transaction reads its own write, and the scope reads it
	// after the commit.
	sctx := NewContext(ctx)
	tx, err = rt.BeginTx(sctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	k := key(t)
	if _, err := tx.ExecContext(sctx, "INSERT INTO kv (k, v) VALUES (?, 3)", k); err != nil {
		t.Fatal(err)
	}
	var v int
	if err := tx.QueryRowContext(sctx, "SELECT v FROM kv WHERE k = ?", k).Scan(&v); err != nil || v != 3 {
		t.Fatalf("read in the forwarded transaction: %d, %v", v, err)
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
	if err := rt.QueryRowContext(sctx, "SELECT v FROM kv WHERE k = ?", k).Scan(&v); err != nil || v != 3 {
		t.Fatalf("read after the forwarded commit: %d, %v", v, err)
	}
	// A forwarded transaction that uses a savepoint: a typed error.
	tx, err = rt.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.ExecContext(ctx, "INSERT INTO kv (k, v) VALUES ('fwd-tx', 1) ON DUPLICATE KEY UPDATE v = v + 1"); err != nil {
		t.Fatal(err)
	}
	_, err = tx.ExecContext(ctx, "SAVEPOINT a")
	if !errors.Is(err, ErrForwardingRestricted) || errors.Is(err, ErrOutcomeUnknown) {
		t.Fatalf("SAVEPOINT in a forwarded transaction: %v, want ErrForwardingRestricted", err)
	}
	if err := tx.Rollback(); err != nil {
		t.Fatal(err)
	}
	if got := rt.Stats().WritesForwarded; got != 12 {
		t.Errorf("%d forwarded, want 12 (the two transactions)", got)
	}

	// A forwarding endpoint that does not answer: the write provably did
	// not reach it and runs on the writer.
	dead, err := fsh.ForwardingConnector(strings.Replace(dsn, "virginia-a.def.us-east-1.rds.test:3306", "127.0.0.1:1", 1))
	if err != nil {
		t.Fatal(err)
	}
	ucfg.WriteForwarding = map[string]Endpoint{testserver.SecondaryRegion: {Name: "fwd-dead", DSN: dsn, Connector: dead}}
	rt2 := openAurora(t, ucfg)
	if _, err := rt2.ExecContext(ctx, "INSERT INTO kv (k, v) VALUES ('fwd-dead', 1) ON DUPLICATE KEY UPDATE v = v + 1"); err != nil {
		t.Fatalf("write with the forwarding endpoint down: %v", err)
	}
	if st := rt2.Stats(); st.WritesForwarded != 1 || st.WriterSearches != 0 {
		t.Errorf("forwarded %d (want 1, then the writer), %d writer searches (want 0)", st.WritesForwarded, st.WriterSearches)
	}
}
