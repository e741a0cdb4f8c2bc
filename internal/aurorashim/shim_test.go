package aurorashim

import (
	"context"
	"database/sql"
	"errors"
	"testing"
	"time"

	"github.com/regiondb/regiondb/internal/testserver"
)

func TestRewrite(t *testing.T) {
	for _, tc := range []struct {
		name, in, want string
		err            error
	}{
		{"topology", "SELECT SERVER_ID FROM information_schema.replica_host_status WHERE SESSION_ID = 'MASTER_SESSION_ID'",
			"SELECT SERVER_ID FROM " + Database + ".replica_host_status WHERE SESSION_ID = 'MASTER_SESSION_ID'", nil},
		{"identity", "SELECT @@aurora_server_id, @@global.innodb_read_only", "SELECT @aurora_server_id, @@global.read_only", nil},
		{"plain", "SELECT 1", "SELECT 1", nil},
		{"unknown aurora name", "SELECT @@aurora_version", "", ErrUnknownAuroraName},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Rewrite(tc.in)
			if !errors.Is(err, tc.err) || got != tc.want {
				t.Fatalf("Rewrite(%q) = %q, %v; want %q, %v", tc.in, got, err, tc.want, tc.err)
			}
			if err == nil && Unrewrite(got) != tc.in {
				t.Fatalf("Unrewrite(%q) = %q, want %q", got, Unrewrite(got), tc.in)
			}
		})
	}
}

func TestResolverStale(t *testing.T) {
	now := time.Unix(1000, 0)
	r := &Resolver{Now: func() time.Time { return now }}
	r.Set("w:3306", "a")
	r.Repoint("w:3306", 5*time.Second, "b")
	if got := r.Lookup("w:3306"); got != "a" {
		t.Fatalf("within the stale window: %q, want a", got)
	}
	now = now.Add(5 * time.Second)
	if got := r.Lookup("w:3306"); got != "b" {
		t.Fatalf("after the stale window: %q, want b", got)
	}
	r.Set("ro:3306", "x", "y")
	seen := map[string]bool{}
	for i := 0; i < 200 && len(seen) < 2; i++ {
		seen[r.Lookup("ro:3306")] = true
	}
	if !seen["x"] || !seen["y"] || len(seen) != 2 {
		t.Fatalf("load-balanced name gave %v", seen)
	}
	if got := r.Lookup("other:1"); got != "other:1" {
		t.Fatalf("unknown name: %q", got)
	}
}

// TestShimFollowsPromote runs the production Aurora probe SQL through the
// shim on the real stack, before and after the stack's promote.
func TestShimFollowsPromote(t *testing.T) {
	st := testserver.Require(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	t.Cleanup(func() {
		if err := st.Reset(context.Background()); err != nil {
			t.Errorf("reset: %v", err)
		}
	})
	res := &Resolver{}
	res.Set("writer.cluster-x.test:3306", st.Addr("m1"))
	sh := &Shim{Stack: st, Resolver: res, Global: true, Instances: []Instance{
		{Server: "m1", ID: "tokyo-a", Region: testserver.PrimaryRegion},
		{Server: "r1", ID: "tokyo-b", Region: testserver.PrimaryRegion},
		{Server: "r2", ID: "virginia-a", Region: testserver.SecondaryRegion},
	}}
	if err := sh.Setup(ctx); err != nil {
		t.Fatal(err)
	}
	state, err := st.State(ctx)
	if err != nil {
		t.Fatal(err)
	}
	open := func(server string) *sql.DB {
		t.Helper()
		addr := st.Addr(server)
		if server == "m1" {
			addr = "writer.cluster-x.test:3306"
		}
		c, err := sh.Connector(state.AppUser + ":" + state.AppPassword + "@tcp(" + addr + ")/" + Database)
		if err != nil {
			t.Fatal(err)
		}
		db := sql.OpenDB(c)
		t.Cleanup(func() { db.Close() })
		return db
	}
	whoami := func(db *sql.DB) (id string, ro bool, writer string) {
		t.Helper()
		if err := db.QueryRowContext(ctx, "SELECT @@aurora_server_id, @@global.innodb_read_only").Scan(&id, &ro); err != nil {
			t.Fatal(err)
		}
		if err := db.QueryRowContext(ctx, "SELECT SERVER_ID FROM information_schema.replica_host_status WHERE SESSION_ID = 'MASTER_SESSION_ID'").Scan(&writer); err != nil && err != sql.ErrNoRows {
			t.Fatal(err)
		}
		return id, ro, writer
	}
	m1, r1, r2 := open("m1"), open("r1"), open("r2")
	if id, ro, w := whoami(m1); id != "tokyo-a" || ro || w != "tokyo-a" {
		t.Fatalf("m1: %s ro=%v writer=%s", id, ro, w)
	}
	if id, ro, w := whoami(r1); id != "tokyo-b" || !ro || w != "tokyo-a" {
		t.Fatalf("r1: %s ro=%v writer=%s", id, ro, w)
	}
	// The secondary region's cluster has no writer row; the global table
	// says where the writer is.
	if id, ro, w := whoami(r2); id != "virginia-a" || !ro || w != "" {
		t.Fatalf("r2: %s ro=%v writer=%q", id, ro, w)
	}
	var region string
	if err := r2.QueryRowContext(ctx, "SELECT AWS_REGION FROM information_schema.aurora_global_db_instance_status WHERE SESSION_ID = 'MASTER_SESSION_ID'").Scan(&region); err != nil || region != testserver.PrimaryRegion {
		t.Fatalf("global writer region %q, %v", region, err)
	}
	if _, err := r1.ExecContext(ctx, "SELECT @@aurora_version"); !errors.Is(err, ErrUnknownAuroraName) {
		t.Fatalf("untranslated Aurora name: %v", err)
	}

	if err := st.Promote(ctx, "r1"); err != nil {
		t.Fatal(err)
	}
	if err := sh.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	if id, ro, w := whoami(r1); id != "tokyo-b" || ro || w != "tokyo-b" {
		t.Fatalf("r1 after promote: %s ro=%v writer=%s", id, ro, w)
	}
	// The writer endpoint still resolves to m1, now a reader: the
	// stale-DNS case a client must recognise.
	if id, ro, w := whoami(m1); id != "tokyo-a" || !ro || w != "tokyo-b" {
		t.Fatalf("m1 after promote: %s ro=%v writer=%s", id, ro, w)
	}
	if sh.ConnectsTo("tokyo-a") == 0 || res.Dials("writer.cluster-x.test:3306", st.Addr("m1")) == 0 {
		t.Fatal("connections not counted")
	}
}
