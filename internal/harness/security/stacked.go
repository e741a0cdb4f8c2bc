package security

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"

	"github.com/regiondb/regiondb/dbrouter"
	"github.com/regiondb/regiondb/internal/sqlprobe"
	"github.com/regiondb/regiondb/internal/testserver"
)

// stackedMarker is in the second statement of every stacking attempt: a
// general log entry that holds it is a text that reached a server.
const stackedMarker = "regiondb_stacked_probe"

// StackedTexts are texts that try to stack a second statement after the
// workload's, through every lexical trick the server's splitter knows: a
// plain ';', executable comments, strings whose end depends on sql_mode,
// "--" followed by a control character, a NUL byte ending a "#" comment.
// Most come from sqlprobe's generator. The second statement of text i
// selects marker(i) (some texts hide it in a string or comment: the
// control tells which ones the server splits).
func StackedTexts() []string {
	out := []string{
		"SELECT 1 AS workload; SELECT 2",
		"SELECT 1 AS workload;\nSELECT 2",
		"SELECT 1 AS workload; -- x\nSELECT 2",
		"SELECT 1 AS workload /*! ; SELECT 2 */",
		"SELECT 1 AS workload /*M!; SELECT 2 */",
		"SELECT '\\'; SELECT 2 -- '",
		"SELECT \"\\\"; SELECT 2 -- \"",
		"SELECT 1 --\x01\n; SELECT 2",
		"SELECT 1 # \x00; SELECT 2",
		"SELECT 1; ;; SELECT 2",
		"SELECT `a;` FROM (SELECT 1 AS `a;`) t; SELECT 2",
	}
	for _, t := range sqlprobe.StatementTexts(7, 3000) {
		if strings.Contains(t, "SELECT 2") {
			out = append(out, t)
		}
	}
	for i, t := range out {
		out[i] = strings.ReplaceAll(t, "SELECT 2", "SELECT '"+marker(i)+"'")
	}
	return out
}

// marker is the value the second statement of StackedTexts()[i] selects.
func marker(i int) string { return stackedMarker + "_" + strconv.Itoa(i) + "_" }

// stacked sends StackedTexts through the router's entry points (reads of a
// scope on a reader, writes, the routing pool, the writer's pool) and
// counts the texts that reached any server's general log; the control sends
// them on a connection with multiStatements on and no check, and counts
// those the server ran as several statements.
func stacked(ctx context.Context, s *testserver.Stack, res *Result, log io.Writer) error {
	admins := map[string]*sql.DB{}
	for _, name := range []string{"m1", "r1", "r2"} {
		db, err := sql.Open("mysql", s.AdminDSN(name))
		if err != nil {
			return err
		}
		defer db.Close()
		admins[name] = db
	}
	restore, err := generalLogOn(ctx, admins)
	if err != nil {
		return err
	}
	defer restore()
	rt, err := dbrouter.Open(dbrouter.Config{
		Region: testserver.PrimaryRegion,
		Writer: dbrouter.Endpoint{Name: "m1", DSN: s.DSN("m1", "")},
		Readers: []dbrouter.Endpoint{
			{Name: "r1", DSN: s.DSN("r1", ""), Region: testserver.PrimaryRegion},
			{Name: "r2", DSN: s.DSN("r2", ""), Region: testserver.SecondaryRegion},
		},
		TokenKeys: []dbrouter.TokenKey{{ID: tokenKeyID, Secret: TokenKey}},
	})
	if err != nil {
		return err
	}
	defer rt.Close()
	texts := StackedTexts()
	// The control first: the unchecked path (multiStatements on, no
	// lexer) runs a second statement of these texts.
	db, err := sql.Open("mysql", s.DSN("r1", "")+"&multiStatements=true")
	if err != nil {
		return err
	}
	defer db.Close()
	conn, err := db.Conn(ctx)
	if err != nil {
		return err
	}
	defer conn.Close()
	split := make([]bool, len(texts))
	for i, text := range texts {
		if sets, err := sqlprobe.ServerStatements(ctx, conn, text); sets >= 2 || (sets >= 1 && err != nil) {
			split[i] = true
			res.StackedControl++
		}
	}
	fmt.Fprintf(log, "security: stacked statements, control (no check): %d of %d texts ran a second statement\n",
		res.StackedControl, len(texts))
	since, err := serverNow(ctx, admins)
	if err != nil {
		return err
	}

	refused := 0
	for i, text := range texts {
		if !split[i] {
			continue
		}
		sctx := dbrouter.NewContext(ctx)
		for _, send := range []func() error{
			func() error { return rowsErr(rt.QueryContext(sctx, text)) },
			func() error { _, err := rt.ExecContext(sctx, text); return err },
			func() error { return rowsErr(rt.DB().QueryContext(sctx, text)) },
			func() error { _, err := rt.Writer().ExecContext(sctx, text); return err },
		} {
			res.StackedAttempts++
			res.InjectionAttempts++
			if errors.Is(send(), dbrouter.ErrMultiStatement) {
				refused++
			}
		}
	}
	for name, db := range admins {
		rows, err := db.QueryContext(ctx, "SELECT CONVERT(argument USING utf8mb4) FROM mysql.general_log WHERE event_time >= ? "+
			"AND command_type IN ('Query', 'Execute', 'Prepare') AND user_host LIKE 'regiondb[%' "+
			"AND INSTR(CONVERT(argument USING utf8mb4), ?) > 0", since, stackedMarker)
		if err != nil {
			return fmt.Errorf("security: general log of %s: %w", name, err)
		}
		for rows.Next() {
			var q string
			if err := rows.Scan(&q); err != nil {
				rows.Close()
				return err
			}
			for i := range texts {
				if split[i] && strings.Contains(q, marker(i)) {
					res.StackedReached++
					res.InjectionsReached++
					fmt.Fprintf(log, "security: a stacking text reached %s: %q\n", name, q)
					break
				}
			}
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return err
		}
	}
	fmt.Fprintf(log, "security: stacked statements: %d attempts (%d texts the server splits, 4 entry points), %d refused, %d reached a server\n",
		res.StackedAttempts, res.StackedControl, refused, res.StackedReached)
	return nil
}

func rowsErr(rows *sql.Rows, err error) error {
	if err == nil {
		rows.Close()
	}
	return err
}
