package sqlprobe

import (
	"database/sql"
	"errors"
	"strings"
	"testing"

	"github.com/regiondb/regiondb/dbrouter"
	"github.com/regiondb/regiondb/internal/testserver"
)

// TestCasesHaveEffects runs every case against the stack and checks that
// MariaDB shows its effect: the list claims nothing the server does not do.
func TestCasesHaveEffects(t *testing.T) {
	s := testserver.Require(t)
	env, closeEnv, err := OpenEnv(t.Context(), s.Addr("m1"), s.Addr("r1"))
	if err != nil {
		t.Fatal(err)
	}
	defer closeEnv()
	for _, c := range Cases {
		t.Run(c.Name, func(t *testing.T) {
			ok, err := c.Observe(t.Context(), env)
			if err != nil {
				t.Fatal(err)
			}
			if !ok {
				t.Errorf("%s (%v): no effect observed", c.Query, c.Effect)
			}
		})
	}
}

// TestOneStatementAgreesWithServer is the differential test of the router's
// one-statement rule (dbrouter.ErrMultiStatement): generated texts run on a
// multiStatements connection in each sql_mode, and the server's count of
// statements must agree with the router's verdict. A text the server runs
// as several statements in any mode must be refused (safety); a text the
// server runs as exactly one, without error, in every mode must be accepted
// (the rule refuses no ordinary statement).
func TestOneStatementAgreesWithServer(t *testing.T) {
	s := testserver.Require(t)
	ctx := t.Context()
	conns := modeConns(t, s)
	rt, err := dbrouter.Open(dbrouter.Config{Writer: dbrouter.Endpoint{Name: "r1", DSN: s.DSN("r1", "")}})
	if err != nil {
		t.Fatal(err)
	}
	defer rt.Close()
	var multi, single, refusedSingle int
	for _, text := range StatementTexts(1, 3000) {
		serverMulti, serverSingle := serverVerdict(t, conns, text)
		rows, err := rt.Writer().QueryContext(ctx, text)
		if err == nil {
			rows.Close()
		}
		refused := errors.Is(err, dbrouter.ErrMultiStatement)
		switch {
		case serverMulti:
			multi++
			if !refused {
				t.Errorf("the server parsed several statements of %q; the router sent it", text)
			}
		case serverSingle:
			single++
			if refused {
				refusedSingle++
				// The rule is stricter than the server only where a
				// second ';' follows the statement's (the server
				// ignores "; ;" and ";--;" but not "; ;;").
				if strings.Count(text, ";") < 2 {
					t.Errorf("the server runs %q as one statement in every sql_mode; the router refused it", text)
				}
			}
		}
	}
	t.Logf("%d texts the server split, %d it ran as one (%d of those refused)", multi, single, refusedSingle)
	if multi == 0 || single == 0 {
		t.Fatalf("the generator made %d split and %d single texts: it must make both", multi, single)
	}
}

// serverVerdict runs text on a multiStatements connection per sql_mode:
// multi when the server parsed a second statement in any mode (it sent two
// result sets, or an error after the first), single when it ran exactly
// one without error in every mode.
func serverVerdict(t *testing.T, conns []*sql.Conn, text string) (multi, single bool) {
	t.Helper()
	single = true
	for _, conn := range conns {
		sets, err := ServerStatements(t.Context(), conn, text)
		if sets >= 2 || (sets >= 1 && err != nil) {
			multi = true
		}
		if sets != 1 || err != nil {
			single = false
		}
	}
	return multi, single
}

// modeConns opens one multiStatements connection to r1 per sql_mode.
func modeConns(t *testing.T, s *testserver.Stack) []*sql.Conn {
	t.Helper()
	var conns []*sql.Conn
	for _, mode := range SQLModes {
		db, err := sql.Open("mysql", "root@tcp("+s.Addr("r1")+")/?multiStatements=true")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { db.Close() })
		conn, err := db.Conn(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { conn.Close() })
		if _, err := conn.ExecContext(t.Context(), "SET SESSION sql_mode = '"+mode+"'"); err != nil {
			t.Fatal(err)
		}
		conns = append(conns, conn)
	}
	return conns
}

// TestOneStatementControl shows that the differential test can fail: a
// lexer that knows comments and quotes but assumes backslash escapes (the
// default sql_mode) lets texts through that the server splits under
// NO_BACKSLASH_ESCAPES.
func TestOneStatementControl(t *testing.T) {
	s := testserver.Require(t)
	conns := modeConns(t, s)
	wrong := 0
	for _, text := range StatementTexts(1, 3000) {
		if !naiveOneStatement(text) {
			continue
		}
		if multi, _ := serverVerdict(t, conns, text); multi {
			wrong++
		}
	}
	if wrong == 0 {
		t.Fatal("the naive lexer never let a split text through: the test cannot tell the rules apart")
	}
	t.Logf("naive lexer: %d split texts accepted", wrong)
}

// naiveOneStatement is the control's lexer: quotes with backslash escapes
// always, comments ("#", "-- ", "/* */", executable ones too), and nothing
// but whitespace after the first ';'.
func naiveOneStatement(q string) bool {
	ended := false
	for i := 0; i < len(q); i++ {
		c := q[i]
		switch {
		case c == ';':
			ended = true
		case c == ' ' || c == '\n' || c == '\t':
		case c == '#' || (c == '-' && strings.HasPrefix(q[i:], "-- ")):
			for i < len(q) && q[i] != '\n' {
				i++
			}
		case strings.HasPrefix(q[i:], "/*"):
			j := strings.Index(q[i+2:], "*/")
			if j < 0 {
				return false
			}
			i += j + 3
		default:
			if ended {
				return false
			}
			if c == '\'' || c == '"' || c == '`' {
				j := i + 1
				for ; j < len(q) && q[j] != c; j++ {
					if q[j] == '\\' && c != '`' {
						j++
					}
				}
				if j >= len(q) {
					return false
				}
				i = j
			}
		}
	}
	return true
}
