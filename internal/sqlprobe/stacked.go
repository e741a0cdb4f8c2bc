package sqlprobe

import (
	"context"
	"database/sql"
	"math/rand/v2"
	"strings"
)

// textFragments are the pieces StatementTexts joins: harmless SELECT parts
// (literals, aliases, a second SELECT) and every character sequence whose
// meaning decides where MariaDB's multi-statement splitter cuts a text:
// ';', quotes with backslash and doubled-quote escapes, backticks, "#" and
// "-- " comments ("--" without the space is code), block comments and
// executable comments ("/*!", "/*M!", whose content is code).
var textFragments = []string{
	"1", " 2", " ", "\n", "\t", ",", "+", "-", "*", "/", "!", "M", "a",
	";", "; ", ";\n", "SELECT 2", " AS x", " AS `y;`",
	"'", "\"", "`", "\\", "''", "\"\"", "``", "'a;b'", "\"c;d\"", "'a''b;'", "\"a\"\"b;\"",
	"'\\''", "\"\\\"\"", "'\\\\'", "'\\';'", "\"\\\";\"",
	"#", "# ;\n", "-- ", "-- ;\n", "--", "--;", "--\t;\n",
	"/*", "*/", "/* ; */", "/*!", "/*! 1 */", "/*!;*/", "/*M!", "/*M! 2 */", "/*M!;*/", "/*!50000 3 */",
}

// StatementTexts returns n texts made of textFragments after "SELECT 1",
// drawn with seed. They hold no statement with an effect: only SELECTs of
// literals, so a server that splits one into several only returns more
// result sets.
func StatementTexts(seed uint64, n int) []string {
	rng := rand.New(rand.NewPCG(seed, 17))
	out := make([]string, 0, n)
	for range n {
		var b strings.Builder
		b.WriteString("SELECT 1")
		for k := 1 + rng.IntN(8); k > 0; k-- {
			b.WriteString(textFragments[rng.IntN(len(textFragments))])
		}
		out = append(out, b.String())
	}
	return out
}

// ServerStatements runs text on conn, a connection with multiStatements on,
// and returns how many result sets the server sent and the first error.
// With texts of StatementTexts every statement that runs sends a result
// set, and the server stops at the first error, so sets >= 2, or sets >= 1
// with an error, means the server ran more than one statement; sets == 1
// without an error means exactly one.
func ServerStatements(ctx context.Context, conn *sql.Conn, text string) (sets int, err error) {
	rows, err := conn.QueryContext(ctx, text)
	if err != nil {
		return 0, err
	}
	defer rows.Close()
	for {
		sets++
		for rows.Next() {
		}
		if err := rows.Err(); err != nil {
			return sets, err
		}
		if !rows.NextResultSet() {
			return sets, rows.Err()
		}
	}
}

// SQLModes are the sql_mode settings that change where a text's strings
// end: a session may use any of them.
var SQLModes = []string{"", "NO_BACKSLASH_ESCAPES", "ANSI_QUOTES", "NO_BACKSLASH_ESCAPES,ANSI_QUOTES"}
