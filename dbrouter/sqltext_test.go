package dbrouter

import (
	"strings"
	"testing"

	"github.com/regiondb/regiondb/internal/sqlprobe"
	"github.com/regiondb/regiondb/internal/testserver"
)

// classifyCases feeds TestReadOnly and the seeds of FuzzReadOnly.
var classifyCases = []struct {
	name  string
	query string
	read  bool
}{
	{"select", "SELECT * FROM t WHERE id = ?", true},
	{"lower case", "select 1", true},
	{"leading space", " \n\t SELECT 1", true},
	{"block comment", "/* app:feed */ SELECT 1", true},
	{"line comments", "-- hi\n# there\nSELECT 1", true},
	{"show", "SHOW TABLES", true},
	{"with", "WITH x AS (SELECT 1) SELECT * FROM x", true},
	{"parenthesised union", "(SELECT 1) UNION (SELECT 2)", true},
	{"system variable", "SELECT @@server_id", true},
	{"string with keywords", "SELECT 'FOR UPDATE; DELETE INTO' FROM t", true},
	{"quoted identifier", "SELECT `update`, `into` FROM t", true},
	{"doubled quote", "SELECT 'it''s' FROM t", true},
	{"functions", "SELECT COUNT(*), MAX(a), CONCAT(b, 'x'), COALESCE(c, 0) FROM t WHERE d IN (1, 2) AND e > NOW()", true},
	{"subquery", "SELECT * FROM (SELECT a FROM t) AS x WHERE EXISTS (SELECT 1 FROM u WHERE u.a = x.a)", true},
	{"join using", "SELECT * FROM t LEFT JOIN u USING (id) FORCE INDEX (i)", true},
	{"window", "SELECT ROW_NUMBER() OVER (PARTITION BY a ORDER BY b) FROM t", true},
	{"numbers", "SELECT 1, 1.5, .5, 1., 1e5, 1.5E-3, 0x1F, 0b101 FROM t", true},
	{"qualified column", "SELECT t.a, db.t.b FROM db.t", true},
	{"global variable", "SELECT @@global.server_id, @@read_only", true},
	{"placeholder", "SELECT a FROM t WHERE b = ? AND c <=> ?", true},
	{"double quotes no backslash", `SELECT "a" FROM t`, true},
	{"charset introducer", "SELECT _utf8mb4'x', X'41', N'y'", true},
	{"nested parentheses", "((SELECT 1))", true},
	{"show columns", "SHOW FULL COLUMNS FROM t LIKE 'a%'", true},
	{"show create", "SHOW CREATE TABLE t", true},
	{"show global variables", "SHOW GLOBAL VARIABLES LIKE 'read_only'", true},
	{"show table status", "SHOW TABLE STATUS", true},

	{"escaped quote", `SELECT 'a\'b FOR UPDATE' FROM t`, false},
	{"backslash in string", `SELECT 'a\\b' FROM t`, false},
	{"backslash in double quotes", `SELECT "a\\b" FROM t`, false},
	{"no_backslash_escapes lock", `SELECT 'a\', GET_LOCK('l1',0) #'`, false},
	{"ansi_quotes lock", `SELECT 1 AS "a\", GET_LOCK('l2',0) #"`, false},
	{"glued 1.0LOCK", "SELECT * FROM t WHERE a = 1.0LOCK IN SHARE MODE", false},
	{"glued 1e0LOCK", "SELECT * FROM t WHERE a = 1e0LOCK IN SHARE MODE", false},
	{"glued .5LOCK", "SELECT * FROM t WHERE a > .5LOCK IN SHARE MODE", false},
	{"glued 1.5INTO var", "SELECT 1.5INTO @v", false},
	{"glued 1.5INTO outfile", "SELECT 1.5INTO OUTFILE '/tmp/x'", false},
	{"glued 1.5FOR SHARE", "SELECT * FROM t WHERE a < 1.5FOR SHARE", false},
	{"glued 1.5FOR UPDATE", "SELECT * FROM t WHERE a < 1.5FOR UPDATE", false},
	{"glued 0x1INTO", "SELECT 0x1INTO @v", false},
	{"glued 0b1INTO", "SELECT 0b1INTO @v", false},
	{"glued 1e+5LOCK", "SELECT 1e+5LOCK IN SHARE MODE", false},
	{"digit identifier", "SELECT 1abc FROM t", false},
	{"@@identity", "SELECT @@identity", false},
	{"@@last_insert_id", "SELECT @@LAST_INSERT_ID", false},
	{"@@insert_id", "SELECT @@insert_id", false},
	{"@@warning_count", "SELECT @@warning_count", false},
	{"@@error_count", "SELECT @@error_count", false},
	{"@@last_gtid", "SELECT @@last_gtid", false},
	{"@@session", "SELECT @@session.sql_mode", false},
	{"@@local", "SELECT @@local.sql_mode", false},
	{"user variable", "SELECT @x", false},
	{"quoted user variable", "SELECT @`x`, @'y'", false},
	{"user variable in where", "SELECT a FROM t WHERE b = @x", false},
	{"row_count", "SELECT ROW_COUNT()", false},
	{"sql_calc_found_rows", "SELECT SQL_CALC_FOUND_ROWS * FROM t LIMIT 1", false},
	{"is_used_lock", "SELECT IS_USED_LOCK('a')", false},
	{"release_all_locks", "SELECT RELEASE_ALL_LOCKS()", false},
	{"quoted function", "SELECT `GET_LOCK`('a', 0)", false},
	{"double-quoted function", `SELECT "GET_LOCK"('a', 0)`, false},
	{"spaced function", "SELECT GET_LOCK /* x */ ('a', 0)", false},
	{"stored function", "SELECT f(1) FROM t", false},
	{"qualified function", "SELECT db.f(1)", false},
	{"sleep", "SELECT SLEEP(1)", true},
	{"load_file", "SELECT LOAD_FILE('/etc/passwd')", false},
	{"connection_id", "SELECT CONNECTION_ID()", false},
	{"lastval", "SELECT LASTVAL(s)", false},
	{"setval", "SELECT SETVAL(s, 10)", false},
	{"previous value", "SELECT PREVIOUS VALUE FOR s", false},
	{"procedure analyse", "SELECT * FROM t PROCEDURE ANALYSE()", false},
	{"show warnings", "SHOW WARNINGS", false},
	{"show count warnings", "SHOW COUNT(*) WARNINGS", false},
	{"show errors", "SHOW ERRORS", false},
	{"show session status", "SHOW SESSION STATUS", false},
	{"show status", "SHOW STATUS LIKE 'Com%'", false},
	{"show session variables", "SHOW VARIABLES", false},
	{"show master status", "SHOW MASTER STATUS", false},
	{"show binlog events", "SHOW BINLOG EVENTS", false},
	{"show binary logs", "SHOW BINARY LOGS", false},
	{"show slave status", "SHOW SLAVE STATUS", false},
	{"show replica status", "SHOW REPLICA STATUS", false},
	{"show processlist", "SHOW FULL PROCESSLIST", false},
	{"show profile", "SHOW PROFILE", false},
	{"show global status", "SHOW GLOBAL STATUS", false},
	{"show tables where lock", "SHOW TABLES WHERE GET_LOCK('a', 0)", false},
	{"spaced session scope", "SELECT @@session . identity", false},
	{"commented session scope", "SELECT @@session/**/.identity", false},
	{"global scope", "SELECT @@global . server_id", true},
	{"structured variable", "SELECT @@default.key_buffer_size", false},
	{"gbk backtick", "SELECT 1 AS a\x81` , GET_LOCK('a',0) #`", false},
	{"utf-8 backtick", "SELECT `caf\xc3\xa9`", false},
	{"utf-8 word", "SELECT caf\xc3\xa9 FROM t", true},
	{"colon", "SELECT :a", false},
	{"odbc escape", "SELECT {fn NOW()}", false},
	{"control character", "SELECT 1\x00", false},
	{"dash dash control", "SELECT 1 --\x01 FOR UPDATE", false},
	{"backslash outside string", "SELECT 1 \\N", false},
	{"for system_time", "SELECT * FROM t FOR SYSTEM_TIME AS OF '2024-01-01'", true},
	{"trailing semicolon", "SELECT 1;  ", true},
	{"minus minus no space", "SELECT 1--1", true},
	{"optimizer hint", "SELECT /*+ MAX_EXECUTION_TIME(100) */ 1", true},

	{"insert", "INSERT INTO t VALUES (1)", false},
	{"update", "UPDATE t SET a = 1", false},
	{"delete", "DELETE FROM t", false},
	{"replace", "REPLACE INTO t VALUES (1)", false},
	{"call", "CALL p()", false},
	{"set", "SET @a = 1", false},
	{"empty", "", false},
	{"only comment", "/* x */", false},
	{"for update", "SELECT * FROM t WHERE id = 1 FOR UPDATE", false},
	{"for update lower", "select * from t for update nowait", false},
	{"for share", "SELECT * FROM t FOR SHARE", false},
	{"lock in share mode", "SELECT * FROM t LOCK IN SHARE MODE", false},
	{"into var", "SELECT a INTO @x FROM t", false},
	{"into outfile", "SELECT * FROM t INTO OUTFILE '/tmp/x'", false},
	{"get_lock", "SELECT GET_LOCK('a', 10)", false},
	{"release_lock", "SELECT release_lock('a')", false},
	{"is_free_lock", "SELECT IS_FREE_LOCK('a')", false},
	{"nextval", "SELECT NEXTVAL(s)", false},
	{"next value for", "SELECT NEXT VALUE FOR s", false},
	{"last_insert_id", "SELECT LAST_INSERT_ID()", false},
	{"found_rows", "SELECT FOUND_ROWS()", false},
	{"assignment", "SELECT @a := 1", false},
	{"second statement", "SELECT 1; DELETE FROM t", false},
	{"executable comment", "/*!40101 SET NAMES utf8 */", false},
	{"executable comment inside", "SELECT 1 /*!50000 FOR UPDATE */", false},
	{"mariadb executable comment", "/*M!100000 DELETE FROM t */ SELECT 1", false},
	{"unterminated comment", "/* SELECT 1", false},
	{"unterminated string", "SELECT 'abc", false},
	{"unterminated identifier", "SELECT `abc", false},
	{"with delete", "WITH x AS (SELECT 1) DELETE FROM t", false},
	{"with update", "WITH x AS (SELECT 1) UPDATE t SET a = 1", false},
	{"comment hides write", "/* SELECT */ DELETE FROM t", false},
	{"line comment hides write", "-- SELECT\nDELETE FROM t", false},
	{"explain", "EXPLAIN SELECT 1", false},
	{"show then statement", "SHOW TABLES; DROP TABLE t", false},
	{"for at end", "SELECT 1 FOR", false},
	{"master_gtid_wait", "SELECT MASTER_GTID_WAIT('0-1-1', 1)", false},
	{"parenthesised show", "(SHOW TABLES)", false},
	{"parenthesis then delete", "(DELETE FROM t)", false},
	{"do", "DO SLEEP(1)", false},
}

func TestReadOnly(t *testing.T) {
	for _, tc := range classifyCases {
		t.Run(tc.name, func(t *testing.T) {
			if got := readOnly(tc.query); got != tc.read {
				t.Errorf("readOnly(%q) = %v, want %v", tc.query, got, tc.read)
			}
		})
	}
}

func TestReadOnlyAllocs(t *testing.T) {
	for _, q := range []string{
		"/* c */ SELECT a, b FROM t WHERE id = ? AND name = 'x' FOR SYSTEM_TIME ALL",
		"SELECT COUNT(*), @@server_id FROM t WHERE x > 1.5e3 AND y = 0x1f AND z IN (1, 2)",
		"SHOW FULL COLUMNS FROM t",
	} {
		if !readOnly(q) {
			t.Errorf("%q not read-only", q)
		}
		if n := testing.AllocsPerRun(100, func() { readOnly(q) }); n != 0 {
			t.Errorf("readOnly(%q) allocates %v times", q, n)
		}
	}
}

// FuzzReadOnly checks that the classifier never panics and that what it
// calls read-only stays so under the edits that cannot make a statement
// write, and that appending a write clause always makes it a write.
func FuzzReadOnly(f *testing.F) {
	for _, tc := range classifyCases {
		f.Add(tc.query)
	}
	for _, c := range sqlprobe.Cases {
		f.Add(c.Query)
	}
	f.Fuzz(func(t *testing.T, q string) {
		ro := readOnly(q)
		if !ro {
			return
		}
		// Nothing whose meaning depends on sql_mode, and no user
		// variable, outside comments.
		if strings.Contains(q, "\\") && !strings.ContainsAny(q, "#-/") {
			t.Errorf("read-only with a backslash: %q", q)
		}
		if strings.Contains(strings.ReplaceAll(q, "@@", ""), "@") && !strings.ContainsAny(q, "#-/'\"`") {
			t.Errorf("read-only with a user variable: %q", q)
		}
		if readOnly("DELETE FROM t; " + q) {
			t.Errorf("write prefix still read-only: %q", q)
		}
		// Unless q ends inside a line comment or is a SHOW (read-only
		// whatever follows; the server rejects garbage), a trailing FOR
		// UPDATE makes it a write.
		i := skipSpaceAndComments(q, 0)
		w, _ := word(q, max(i, 0))
		show := keywordIs(w, "SHOW")
		if !show && !strings.ContainsAny(q, "#-") && readOnly(q+" FOR UPDATE") {
			t.Errorf("%q FOR UPDATE classified read-only", q)
		}
		if readOnly(q+"; DELETE FROM t") && !strings.ContainsAny(q, "#-") {
			t.Errorf("%q; DELETE classified read-only", q)
		}
		for _, tail := range []string{" AND GET_LOCK('a', 0)", " 1.0LOCK IN SHARE MODE", " AND @x", " AND `f`(1)"} {
			if !show && !strings.ContainsAny(q, "#-") && readOnly(q+tail) {
				t.Errorf("%q + %q classified read-only", q, tail)
			}
		}
	})
}

func TestClassCache(t *testing.T) {
	var c classCache
	for range 2 {
		for _, tc := range classifyCases {
			if got := c.readOnly(tc.query); got != tc.read {
				t.Errorf("cached readOnly(%q) = %v, want %v", tc.query, got, tc.read)
			}
		}
	}
	for i := range classCacheSize + 10 {
		c.readOnly("SELECT " + strings.Repeat("x", i%50) + itoa(i))
	}
	if n := c.n.Load(); n > classCacheSize {
		t.Errorf("cache grew to %d entries", n)
	}
	q := "SELECT v FROM kv WHERE k = ?"
	c.readOnly(q)
	if n := testing.AllocsPerRun(100, func() { c.readOnly(q) }); n != 0 {
		t.Errorf("cached lookup allocates %v times", n)
	}
}

// TestClassifierEffectsStack runs each statement of sqlprobe.Cases on the
// stack's MariaDB and checks that the server shows its effect (a lock held,
// a row locked, a variable set, a file written, an answer that belongs to
// the session or the writer), and that the classifier sends it to the
// writer.
func TestClassifierEffectsStack(t *testing.T) {
	s := testserver.Require(t)
	env, closeEnv, err := sqlprobe.OpenEnv(t.Context(), s.Addr("m1"), s.Addr("r1"))
	if err != nil {
		t.Fatal(err)
	}
	defer closeEnv()
	for _, c := range sqlprobe.Cases {
		t.Run(c.Name, func(t *testing.T) {
			if readOnly(c.Query) {
				t.Errorf("%s is classified read-only", c.Query)
			}
			if ok, err := c.Observe(t.Context(), env); err != nil || !ok {
				t.Errorf("%s (%v): effect observed %v, %v", c.Query, c.Effect, ok, err)
			}
		})
	}
}

func TestClassifierListsSorted(t *testing.T) {
	for name, l := range map[string][]string{"deniedWords": deniedWords[:], "sessionVars": sessionVars[:], "pureFuncs": pureFuncs[:]} {
		for i := 1; i < len(l); i++ {
			if compareKeyword(l[i-1], l[i]) >= 0 {
				t.Errorf("%s: %q before %q", name, l[i-1], l[i])
			}
		}
		for _, w := range l {
			if !inSorted(l, strings.ToLower(w)) {
				t.Errorf("%s: %q not found", name, w)
			}
		}
	}
}
