package dbrouter

import (
	"strings"
	"testing"
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
	{"escaped quote", `SELECT 'a\'b FOR UPDATE' FROM t`, true},
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
	q := "/* c */ SELECT a, b FROM t WHERE id = ? AND name = 'x' FOR SYSTEM_TIME ALL"
	if n := testing.AllocsPerRun(100, func() { readOnly(q) }); n != 0 {
		t.Errorf("readOnly allocates %v times", n)
	}
}

// FuzzReadOnly checks that the classifier never panics and that what it
// calls read-only stays so under the edits that cannot make a statement
// write, and that appending a write clause always makes it a write.
func FuzzReadOnly(f *testing.F) {
	for _, tc := range classifyCases {
		f.Add(tc.query)
	}
	f.Fuzz(func(t *testing.T, q string) {
		ro := readOnly(q)
		if !ro {
			return
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
