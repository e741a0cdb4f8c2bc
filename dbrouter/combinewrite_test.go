package dbrouter

import (
	"database/sql"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/regiondb/regiondb/internal/testserver"
)

// insertCases feed TestParseInsert and FuzzParseInsert.
var insertCases = []struct {
	q      string
	ok     bool
	schema string
	table  string
	cols   []string
	simple bool
}{
	{q: "INSERT INTO t (v) VALUES (?)", ok: true, table: "t", cols: []string{"v"}, simple: true},
	{q: "insert ignore into `d`.`t``x` (`a`, t.b, d.t.c) value (1, 2, 3), (4, 5, 6)", ok: true, schema: "d", table: "t`x", cols: []string{"a", "b", "c"}, simple: true},
	{q: "INSERT LOW_PRIORITY t SET a = 1, b = (SELECT 2)", ok: true, table: "t", cols: []string{"a", "b"}},
	{q: "INSERT INTO t SET a = 1 RETURNING a"},
	{q: "INSERT INTO t FOO (a) VALUES (1)"},
	{q: "INSERT INTO t SET a = CONCAT('x', ?), b = 2", ok: true, table: "t", cols: []string{"a", "b"}, simple: true},
	{q: "INSERT INTO t SET a = 1 ON DUPLICATE KEY UPDATE a = 2", ok: true, table: "t", cols: []string{"a"}},
	{q: "INSERT INTO t (a) VALUES (1) ON DUPLICATE KEY UPDATE a = 2", ok: true, table: "t", cols: []string{"a"}},
	{q: "INSERT INTO t VALUES (1, 2)", ok: true, table: "t"},
	{q: "INSERT INTO t (a) SELECT a FROM u", ok: true, table: "t", cols: []string{"a"}},
	{q: "INSERT INTO t (SELECT * FROM u)", ok: true, table: "t"},
	{q: "INSERT INTO t SELECT * FROM u", ok: true, table: "t"},
	{q: "REPLACE /* c */ INTO d.t (a, b) VALUES (?, ?) -- x", ok: true, schema: "d", table: "t", cols: []string{"a", "b"}, simple: true},
	{q: "INSERT INTO t (a) VALUES ((SELECT 1))", ok: true, table: "t", cols: []string{"a"}},
	{q: "INSERT DELAYED INTO t (a) VALUES (1)"},
	{q: "INSERT INTO t PARTITION (p0) (a) VALUES (1)"},
	{q: "INSERT INTO t (a) VALUES (1) RETURNING id"},
	{q: "INSERT INTO \"t\" (a) VALUES (1)"},
	{q: "INSERT INTO t (a) VALUES ('it\\'s')"},
	{q: "INSERT INTO tä (a) VALUES (1)"},
	{q: "INSERT INTO t (a /*! , id */) VALUES (1)"},
	{q: "UPDATE t SET a = 1"},
	{q: "INSERT"},
	{q: "INSERT INTO"},
	{q: "INSERT INTO t (a"},
	{q: "INSERT INTO t SET a"},
}

func TestParseInsert(t *testing.T) {
	for _, c := range insertCases {
		st, ok := parseInsert(c.q)
		if ok != c.ok {
			t.Errorf("%q: ok %v, want %v", c.q, ok, c.ok)
			continue
		}
		if !ok {
			continue
		}
		if st.schema != c.schema || st.table != c.table || !slices.Equal(st.cols, c.cols) || st.simple != c.simple {
			t.Errorf("%q: %+v, want schema %q table %q cols %q simple %v", c.q, st, c.schema, c.table, c.cols, c.simple)
		}
	}
}

func FuzzParseInsert(f *testing.F) {
	for _, c := range insertCases {
		f.Add(c.q)
	}
	f.Fuzz(func(t *testing.T, q string) {
		st, ok := parseInsert(q)
		if ok && st.simple && len(st.cols) == 0 {
			t.Fatalf("%q: simple without columns", q)
		}
		if ok && (st.table == "" || slices.Contains(st.cols, "")) {
			t.Fatalf("%q: an empty name in %+v", q, st)
		}
		readsLastInsertID(q)
	})
}

func TestReadsLastInsertID(t *testing.T) {
	for q, want := range map[string]bool{
		"UPDATE t SET v = LAST_INSERT_ID(v + 1) WHERE id = 1": false,
		"UPDATE t SET v = last_insert_id ( 5 )":               false,
		"UPDATE t SET v = LAST_INSERT_ID()":                   true,
		"UPDATE t SET v = LAST_INSERT_ID( /* x */ )":          true,
		"UPDATE t SET v = LAST_INSERT_ID(LAST_INSERT_ID())":   true,
		"INSERT INTO t (v) VALUES (@@identity)":               true,
		"INSERT INTO t (v) VALUES (@@session.last_insert_id)": true,
		"INSERT INTO t (v) VALUES ('LAST_INSERT_ID()')":       false,
		"INSERT INTO t (`identity`) VALUES (1)":               false,
		"INSERT INTO t (v) VALUES (@@insert_id)":              false,
		"INSERT INTO t (v) VALUES ('unterminated)":            false,
		"UPDATE t SET v = 'a\\'b' WHERE id = 1":               false,
		"UPDATE t SET v = 'a\\'b', w = LAST_INSERT_ID(1)":     true,
	} {
		if got := readsLastInsertID(q); got != want {
			t.Errorf("%q: %v, want %v", q, got, want)
		}
	}
}

// TestCombinedInsertResult runs INSERT and REPLACE cases (and the UPDATEs
// and DDL around them) through the router's writer pool in a scope and
// through the plain driver, and compares LastInsertId, RowsAffected, the
// session's LAST_INSERT_ID() after each, and the tables' rows at the end.
// It also checks, from the writer's general log, which statements took
// the separate position read: exactly those the rule cannot prove. The
// control (the naive rule: combine every INSERT) gets a wrong
// LastInsertId for the explicit id.
func TestCombinedInsertResult(t *testing.T) {
	s := testserver.Require(t)
	plain, err := sql.Open("mysql", s.DSN("m1", testDB))
	if err != nil {
		t.Fatal(err)
	}
	defer plain.Close()
	admin, err := sql.Open("mysql", s.AdminDSN("m1"))
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()
	for _, q := range []string{"SET GLOBAL log_output = 'TABLE'", "SET GLOBAL general_log = 1"} {
		if _, err := admin.Exec(q); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() { admin.Exec("SET GLOBAL general_log = 0") })
	// positionReads counts the separate position reads the writer got.
	positionReads := func() int {
		t.Helper()
		var n int
		if err := admin.QueryRow("SELECT COUNT(*) FROM mysql.general_log WHERE command_type = 'Query' " +
			"AND CONVERT(argument USING utf8mb4) = 'SELECT @@last_gtid'").Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	suffix := fmt.Sprint(time.Now().UnixNano())
	setup := func(tag string) {
		t.Helper()
		for _, q := range []string{
			"CREATE TABLE D.ai_%s (id BIGINT AUTO_INCREMENT PRIMARY KEY, u INT UNIQUE, v INT)",
			"CREATE TABLE D.na_%s (id BIGINT PRIMARY KEY, v INT)",
			"CREATE TABLE D.tg_%s (id BIGINT AUTO_INCREMENT PRIMARY KEY, v INT)",
			"CREATE TRIGGER D.tg_%[1]s_bi BEFORE INSERT ON D.tg_%[1]s FOR EACH ROW SET NEW.id = IF(NEW.v = 7, 700, NEW.id)",
			"CREATE TABLE D.tl_%s (id BIGINT PRIMARY KEY, v INT)",
			"CREATE TRIGGER D.tl_%[1]s_bi BEFORE INSERT ON D.tl_%[1]s FOR EACH ROW SET NEW.v = IFNULL(NEW.v, LAST_INSERT_ID())",
			"CREATE VIEW D.vw_%[1]s AS SELECT id, u, v FROM D.ai_%[1]s",
		} {
			// Triggers need SUPER with the binary log on: the admin creates them.
			if _, err := admin.Exec(strings.ReplaceAll(fmt.Sprintf(q, tag+suffix), "D.", testDB+".")); err != nil {
				t.Fatal(err)
			}
		}
	}
	type step struct {
		q        string
		combined bool
	}
	steps := []step{
		{"INSERT INTO ai_%s (v) VALUES (1)", true},
		{"INSERT INTO ai_%s (v) VALUES (2), (3)", true},
		{"INSERT INTO ai_%s (id, v) VALUES (100, 1)", false},
		{"INSERT INTO ai_%s (v) VALUES (4)", true},
		{"INSERT INTO ai_%s (id, v) VALUES (200, 1), (150, 2)", false},
		{"INSERT INTO ai_%s (id, v) VALUES (NULL, 9)", false},
		{"INSERT INTO ai_%s VALUES (NULL, NULL, 9)", false},
		{"INSERT INTO ai_%s SET v = 5", true},
		{"INSERT INTO ai_%s SET id = 300, v = 5", false},
		{"INSERT INTO ai_%s (u, v) VALUES (1, 1)", true},
		{"INSERT IGNORE INTO ai_%s (u, v) VALUES (1, 2)", true},
		{"INSERT IGNORE INTO ai_%s (u, v) VALUES (1, 2), (2, 2)", true},
		{"INSERT INTO ai_%s (u, v) VALUES (1, 3) ON DUPLICATE KEY UPDATE v = 3", false},
		{"INSERT INTO ai_%s (u, v) VALUES (1, 3) ON DUPLICATE KEY UPDATE v = 3", false},
		{"INSERT INTO ai_%s (u, v) VALUES (3, 3) ON DUPLICATE KEY UPDATE v = 3", false},
		{"INSERT INTO ai_%s (u, v) VALUES (1, 4) ON DUPLICATE KEY UPDATE id = LAST_INSERT_ID(id), v = 4", false},
		{"INSERT INTO ai_%[1]s (v) SELECT v FROM ai_%[1]s WHERE id < 3", false},
		{"INSERT INTO ai_%[1]s (id, v) SELECT id + 1000, v FROM ai_%[1]s WHERE id < 3", false},
		{"REPLACE INTO ai_%s (u, v) VALUES (1, 8)", true},
		{"REPLACE INTO ai_%s (id, u, v) VALUES (1, 1, 8)", false},
		{"INSERT INTO ai_%s (v) VALUES (LAST_INSERT_ID(77))", true},
		{"INSERT INTO ai_%s (id, v) VALUES (5000, LAST_INSERT_ID(78))", false},
		{"INSERT INTO " + testDB + ".`ai_%s` (`v`) VALUES (6)", true},
		{"INSERT INTO vw_%s (v) VALUES (7)", false},
		{"INSERT INTO na_%s (id, v) VALUES (1, 1)", true},
		{"INSERT INTO na_%s (id, v) VALUES (1, 1) ON DUPLICATE KEY UPDATE v = 2", true},
		{"INSERT INTO na_%s (id, v) VALUES (1, 2) ON DUPLICATE KEY UPDATE v = 2", true},
		{"INSERT INTO na_%s (id, v) VALUES (2, LAST_INSERT_ID(5))", true},
		{"INSERT INTO ai_%s (v) VALUES (1)", true},
		{"INSERT INTO na_%s (id, v) VALUES (3, LAST_INSERT_ID())", false},
		{"INSERT INTO na_%s (id, v) VALUES (4, @@identity)", false},
		{"INSERT INTO na_%[1]s (id, v) SELECT id + 10, v FROM na_%[1]s", true},
		{"REPLACE INTO na_%s (id, v) VALUES (1, 9)", true},
		{"INSERT IGNORE INTO na_%s (id, v) VALUES (1, 9)", true},
		{"INSERT INTO na_%s VALUES (5, 5)", true},
		{"INSERT INTO ai_%s (v) VALUES (1)", true},
		{"UPDATE ai_%s SET v = LAST_INSERT_ID() WHERE id = 1", false},
		{"UPDATE ai_%s SET v = LAST_INSERT_ID(v) WHERE id = 2", true},
		{"INSERT INTO tg_%s (v) VALUES (1)", false},
		{"INSERT INTO tg_%s (v) VALUES (7)", false},
		{"INSERT INTO ai_%s (v) VALUES (1)", true},
		{"INSERT INTO tl_%s (id) VALUES (1)", false},
		// DDL through the router: the next INSERT learns the table again.
		{"ALTER TABLE na_%s MODIFY id BIGINT AUTO_INCREMENT", false},
		{"INSERT INTO na_%s (id, v) VALUES (700, 1)", false},
		{"INSERT INTO na_%s (v) VALUES (1)", true},
	}
	type outcome struct{ id, rows, lastID int64 }
	run := func(ex func(string) (sql.Result, error), q func(string) *sql.Row, tag string, check bool) []outcome {
		var out []outcome
		for _, st := range steps {
			before := 0
			if check {
				before = positionReads()
			}
			res, err := ex(fmt.Sprintf(st.q, tag+suffix))
			if err != nil {
				t.Fatalf("%s: %v", st.q, err)
			}
			var o outcome
			o.id, _ = res.LastInsertId()
			o.rows, _ = res.RowsAffected()
			if err := q("SELECT LAST_INSERT_ID()").Scan(&o.lastID); err != nil {
				t.Fatal(err)
			}
			if check {
				if sep := positionReads() - before; sep != 0 == st.combined || sep > 1 {
					t.Errorf("%s: %d separate position reads, want combined %v", st.q, sep, st.combined)
				}
			}
			out = append(out, o)
		}
		return out
	}
	contents := func(tag string) string {
		t.Helper()
		var b strings.Builder
		for _, tbl := range []string{"ai", "na", "tg", "tl"} {
			rows, err := plain.Query(fmt.Sprintf("SELECT * FROM %s_%s ORDER BY id", tbl, tag+suffix))
			if err != nil {
				t.Fatal(err)
			}
			cols, _ := rows.Columns()
			vals := make([]sql.NullInt64, len(cols))
			ptrs := make([]any, len(cols))
			for i := range vals {
				ptrs[i] = &vals[i]
			}
			for rows.Next() {
				if err := rows.Scan(ptrs...); err != nil {
					t.Fatal(err)
				}
				fmt.Fprintln(&b, tbl, vals)
			}
			rows.Close()
		}
		return b.String()
	}
	// The plain driver, on one connection.
	setup("p")
	pc, err := plain.Conn(ctxT(t))
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	want := run(func(q string) (sql.Result, error) { return pc.ExecContext(ctxT(t), q) },
		func(q string) *sql.Row { return pc.QueryRowContext(ctxT(t), q) }, "p", false)
	// The router's writer pool, on one connection, in a scope.
	setup("r")
	rt := openRouter(t, stackConfig(t, s, testserver.PrimaryRegion))
	ctx := NewContext(ctxT(t))
	wc, err := rt.Writer().Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer wc.Close()
	failures := rt.Stats().WritePositionFailures
	got := run(func(q string) (sql.Result, error) { return wc.ExecContext(ctx, q) },
		func(q string) *sql.Row { return wc.QueryRowContext(ctx, q) }, "r", true)
	for i, st := range steps {
		if got[i] != want[i] {
			t.Errorf("%s: router (LastInsertId, RowsAffected, LAST_INSERT_ID()) = %v, plain %v", st.q, got[i], want[i])
		}
	}
	if pw, rw := contents("p"), contents("r"); pw != rw {
		t.Errorf("tables differ:\nplain:\n%s\nrouter:\n%s", pw, rw)
	}
	if rt.Stats().WritePositionFailures != failures || rt.WrittenPosition(ctx) == "" {
		t.Error("the writes did not advance the scope")
	}

	// The control: combining every INSERT gets the explicit id wrong.
	cfg := stackConfig(t, s, testserver.PrimaryRegion)
	cfg.naiveInsertCombine = true
	naive := openRouter(t, cfg)
	explicit := fmt.Sprintf("INSERT INTO ai_%s (id, v) VALUES (9000, 1)", "r"+suffix)
	res, err := naive.ExecContext(NewContext(ctxT(t)), explicit)
	if err != nil {
		t.Fatal(err)
	}
	if id, _ := res.LastInsertId(); id == 9000 {
		t.Errorf("control: the naive rule got LastInsertId %d, the right one: the test cannot see the failure", id)
	}
	res, err = rt.ExecContext(NewContext(ctxT(t)), fmt.Sprintf("INSERT INTO ai_%s (id, v) VALUES (9001, 1)", "r"+suffix))
	if err != nil {
		t.Fatal(err)
	}
	if id, _ := res.LastInsertId(); id != 9001 {
		t.Errorf("explicit id through the router: LastInsertId %d, want 9001", id)
	}
}

// TestCombinedInsertPrivileges: the trigger check holds for a user without
// the TRIGGER privilege (MariaDB lists the trigger to any user with a
// privilege on the table): its INSERTs into a table with a trigger keep
// the separate position read, into one without are combined, like those
// of a user who holds TRIGGER.
func TestCombinedInsertPrivileges(t *testing.T) {
	s := testserver.Require(t)
	admin, err := sql.Open("mysql", s.AdminDSN("m1"))
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()
	suffix := fmt.Sprint(time.Now().UnixNano() % 1_000_000_000)
	users := []struct{ name, grants string }{{"nt" + suffix, "SELECT, INSERT"}, {"wt" + suffix, "SELECT, INSERT, TRIGGER"}}
	for _, q := range []string{
		"CREATE TABLE " + testDB + ".pn_" + suffix + " (id BIGINT PRIMARY KEY, v INT)",
		"CREATE TABLE " + testDB + ".pt_" + suffix + " (id BIGINT PRIMARY KEY, v INT)",
		"CREATE TRIGGER " + testDB + ".pt_" + suffix + "_bi BEFORE INSERT ON " + testDB + ".pt_" + suffix + " FOR EACH ROW SET NEW.v = NEW.v + 1",
		"SET GLOBAL log_output = 'TABLE'", "SET GLOBAL general_log = 1",
	} {
		if _, err := admin.Exec(q); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() { admin.Exec("SET GLOBAL general_log = 0") })
	for _, u := range users {
		for _, q := range []string{
			"CREATE USER '" + u.name + "'@'127.0.0.1' IDENTIFIED BY 'pw'",
			"GRANT " + u.grants + " ON " + testDB + ".* TO '" + u.name + "'@'127.0.0.1'",
		} {
			if _, err := admin.Exec(q); err != nil {
				t.Fatal(err)
			}
		}
		t.Cleanup(func() { admin.Exec("DROP USER '" + u.name + "'@'127.0.0.1'") })
	}
	positionReads := func(user string) int {
		t.Helper()
		var n int
		if err := admin.QueryRow("SELECT COUNT(*) FROM mysql.general_log WHERE command_type = 'Query' "+
			"AND CONVERT(argument USING utf8mb4) = 'SELECT @@last_gtid' AND user_host LIKE CONCAT(?, '[%')", user).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	for k, u := range users {
		dsn := fmt.Sprintf("%s:pw@tcp(%s)/%s?parseTime=true", u.name, s.Addr("m1"), testDB)
		db, err := sql.Open("mysql", dsn)
		if err != nil {
			t.Fatal(err)
		}
		var seen int
		if err := db.QueryRow("SELECT COUNT(*) FROM information_schema.TRIGGERS WHERE EVENT_OBJECT_TABLE = ?", "pt_"+suffix).Scan(&seen); err != nil {
			t.Fatal(err)
		}
		db.Close()
		if seen != 1 {
			t.Errorf("%s (%s) sees %d triggers on pt_%s, want 1", u.name, u.grants, seen, suffix)
		}
		cfg := stackConfig(t, s, testserver.PrimaryRegion)
		cfg.Writer.DSN = dsn
		rt := openRouter(t, cfg)
		for _, c := range []struct {
			table string
			want  int
		}{{"pn_", 0}, {"pt_", 3}} {
			before := positionReads(u.name)
			for j := range 3 {
				if _, err := rt.ExecContext(NewContext(ctxT(t)), "INSERT INTO "+c.table+suffix+" (id, v) VALUES (?, ?)", 10*k+j, j); err != nil {
					t.Fatal(err)
				}
			}
			if sep := positionReads(u.name) - before; sep != c.want {
				t.Errorf("%s (%s), %s: %d separate position reads for 3 inserts, want %d", u.name, u.grants, c.table, sep, c.want)
			}
		}
	}
}
