package dbrouter

import (
	"database/sql"
	"strings"
	"testing"
	"time"

	"github.com/regiondb/regiondb/internal/testserver"
)

// TestSharedQueryReadsAfterWait checks what queryShared relies on: in the
// one statement "wait for p, then read the applied position", MariaDB
// evaluates the select list left to right, so the position read includes
// p when the wait succeeded, though p was applied during the wait. The
// control reads the position before the wait and must miss p.
func TestSharedQueryReadsAfterWait(t *testing.T) {
	s := testserver.Require(t)
	cfg := stackConfig(t, s, testserver.PrimaryRegion)
	d, err := newDialect(DialectMariaDB, "")
	if err != nil {
		t.Fatal(err)
	}
	w, err := sql.Open("mysql", cfg.Writer.DSN)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	r, err := sql.Open("mysql", cfg.Readers[0].DSN)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	ctx := ctxT(t)
	for _, tc := range []struct {
		name    string
		control bool
	}{{"wait-then-read", false}, {"control-read-then-wait", true}} {
		t.Run(tc.name, func(t *testing.T) {
			if err := s.Stall(ctx, "r1"); err != nil {
				t.Fatal(err)
			}
			resumed := false
			defer func() {
				if !resumed {
					s.Resume(ctx, "r1")
				}
			}()
			conn, err := w.Conn(ctx)
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			if _, err := conn.ExecContext(ctx, "REPLACE INTO kv (k, v) VALUES ('shared-query', ?)", time.Now().UnixNano()); err != nil {
				t.Fatal(err)
			}
			var gtid string
			if err := conn.QueryRowContext(ctx, "SELECT @@last_gtid").Scan(&gtid); err != nil {
				t.Fatal(err)
			}
			p, err := parseMariaDBGTIDList(gtid)
			if err != nil {
				t.Fatal(err)
			}
			wait := d.waitQuery(p, 10*time.Second)
			pos := strings.TrimPrefix(d.readerQuery(), "SELECT ")
			q := wait + ", " + pos
			if tc.control {
				q = "SELECT " + pos + ", " + strings.TrimPrefix(wait, "SELECT ")
			}
			type result struct {
				pos string
				err error
			}
			done := make(chan result, 1)
			go func() {
				var a, b sql.NullString
				err := r.QueryRowContext(ctx, q).Scan(&a, &b)
				if tc.control {
					a, b = b, a // the position came first
				}
				done <- result{b.String, err}
			}()
			// Resume r1 once the statement waits on the server.
			admin, err := sql.Open("mysql", s.AdminDSN("r1"))
			if err != nil {
				t.Fatal(err)
			}
			defer admin.Close()
			waitFor(t, 10*time.Second, "the statement to wait on r1", func() bool {
				var n int
				err := admin.QueryRowContext(ctx, "SELECT COUNT(*) FROM information_schema.PROCESSLIST "+
					"WHERE INFO LIKE '%MASTER_GTID_WAIT%' AND ID <> CONNECTION_ID()").Scan(&n)
				return err == nil && n > 0
			})
			if err := s.Resume(ctx, "r1"); err != nil {
				t.Fatal(err)
			}
			resumed = true
			res := <-done
			if res.err != nil {
				t.Fatal(res.err)
			}
			got, err := parseMariaDBGTIDList(res.pos)
			if err != nil {
				t.Fatal(err)
			}
			if covered := got.covers(p); covered == tc.control {
				t.Errorf("position read %q, write %q: covered = %v, want %v", res.pos, gtid, covered, !tc.control)
			}
		})
	}
}
