package dbrouter

import (
	"strings"
	"testing"
)

// oneStatementSeeds are texts the one-statement rule must get right; the
// fuzz target starts from them.
var oneStatementSeeds = []struct {
	text string
	one  bool
}{
	{"SELECT 1", true},
	{"SELECT 1;", true},
	{"SELECT 1; -- done", true},
	{"SELECT 1;\n# done", true},
	{"SELECT 1 /* ; */", true},
	{"SELECT ';'", true},
	{"SELECT `a;b` FROM t", true},
	{"SELECT 'a''b;'", true},
	{"SELECT 1 --", true},
	{"SELECT 1; SELECT 2", false},
	{"SELECT 1;;", false},
	{"SELECT 1 /*! ; SELECT 2 */", false},
	{"SELECT 1 /*M!; SELECT 2*/", false},
	{"SELECT '\\'; SELECT 2 -- '", false},    // splits under NO_BACKSLASH_ESCAPES
	{"SELECT \"\\\"; SELECT 2 -- \"", false}, // splits under ANSI_QUOTES
	{"SELECT 1 --\x01\n; SELECT 2", false},   // "--" and a control character: a comment on MariaDB
	{"SELECT 1 /* unterminated", false},
	{"SELECT 'unterminated", false},
	{"SELECT 1\x00; SELECT 2", false},
	{"SELECT 1;--x", false},
}

func TestOneStatementSeeds(t *testing.T) {
	for _, c := range oneStatementSeeds {
		if got := oneStatement(c.text, false); got != c.one {
			t.Errorf("oneStatement(%q) = %v, want %v", c.text, got, c.one)
		}
	}
	// With arguments, texts the driver's placeholder lexer may read
	// differently are refused.
	for _, q := range []string{"SELECT /*! ? */ 1", "SELECT /*/ ? */ 1", "SELECT \"a\\\"\" , ?"} {
		if oneStatement(q, true) {
			t.Errorf("oneStatement(%q, args) = true, want false", q)
		}
	}
}

// FuzzOneStatement checks the rule's invariants on any text: it never
// panics; what it accepts, cut at its end, is accepted again with the same
// end, and with a statement appended after a newline and ';' (as the
// router combines) counts as two.
func FuzzOneStatement(f *testing.F) {
	for _, c := range oneStatementSeeds {
		f.Add(c.text, false)
		f.Add(c.text, true)
	}
	f.Fuzz(func(t *testing.T, q string, args bool) {
		end, ok := statementEnd(q, args)
		if !ok {
			return
		}
		if end < 0 || end > len(q) {
			t.Fatalf("end %d out of range for %q", end, q)
		}
		head := q[:end]
		if e2, ok2 := statementEnd(head, args); !ok2 || e2 != len(head) {
			t.Fatalf("%q accepted with end %d, but its head %q gives %d, %v", q, end, head, e2, ok2)
		}
		if oneStatement(head+"\n;\nSELECT 2", args) {
			t.Fatalf("%q accepted, but with a statement appended still counts as one", head)
		}
		if strings.IndexByte(q, 0) >= 0 {
			t.Fatalf("%q holds a NUL byte and was accepted", q)
		}
	})
}
