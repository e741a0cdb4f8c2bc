package security

import (
	"bufio"
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"

	"github.com/regiondb/regiondb/internal/testserver"
)

// Result is the harness's JSON line. Keys are stable.
type Result struct {
	InjectionAttempts int `json:"injection_attempts"`
	InjectionsReached int `json:"injections_reached_sql"`
	Crashes           int `json:"crashes"`
	ClassifierCases   int `json:"classifier_cases"`
	UnsafeToReader    int `json:"unsafe_to_reader"`
	FuzzTargets       int `json:"fuzz_targets"`
	ReachedWithoutVal int `json:"injections_reached_sql_without_validation"`
	UnsafeNaivePrefix int `json:"unsafe_to_reader_naive_prefix"`
	PositionsRejected int `json:"positions_rejected"`
	ReaderStatements  int `json:"reader_statements_checked"`
	ClassifierEffects int `json:"classifier_effects_observed"`
	ControlStatements int `json:"control_statements_sent"`
	// Stacked statements (issue 11): texts that stack a second statement,
	// sent through the router (counted in InjectionAttempts too; those
	// that reached a server in InjectionsReached), and how many of them
	// the unchecked path (multiStatements, no lexer) ran as several.
	StackedAttempts int `json:"stacked_attempts"`
	StackedReached  int `json:"stacked_reached_sql"`
	StackedControl  int `json:"stacked_control_ran"`
}

// EnvChild names the feed a child process runs (see Child).
const EnvChild = "REGIONDB_SECURITY_CHILD"

// Feeds are the entry points attacked, one child process each.
var Feeds = []string{"require", "token", "merge", "watermark", "cache"}

// IsChild reports whether this process is a harness child.
func IsChild() bool { return os.Getenv(EnvChild) != "" }

// Run runs the whole measurement against the stack, writing progress to
// log, and returns the result.
func Run(ctx context.Context, s *testserver.Stack, log io.Writer) (Result, error) {
	var res Result
	root, err := ModuleRootFiles()
	if err != nil {
		return res, err
	}
	if res.FuzzTargets, err = CountFuzzTargets(root); err != nil {
		return res, err
	}
	readers := map[string]*sql.DB{}
	for _, name := range []string{"r1", "r2"} {
		db, err := sql.Open("mysql", s.AdminDSN(name))
		if err != nil {
			return res, err
		}
		defer db.Close()
		readers[name] = db
	}
	restore, err := generalLogOn(ctx, readers)
	if err != nil {
		return res, err
	}
	defer restore()
	since, err := serverNow(ctx, readers)
	if err != nil {
		return res, err
	}

	// The attacks, one child process per feed: a panic that escapes the
	// library, or a process death, is a crash.
	exe, err := os.Executable()
	if err != nil {
		return res, err
	}
	for _, feed := range Feeds {
		cr, err := runChild(ctx, exe, feed)
		if err != nil {
			fmt.Fprintf(log, "security: feed %s: child failed: %v\n", feed, err)
			res.Crashes++
		}
		res.InjectionAttempts += cr.Attempts
		res.Crashes += cr.Panics
		res.PositionsRejected += cr.PositionsRejected
		fmt.Fprintf(log, "security: feed %s: %d attempts, %d panics, %d positions rejected\n", feed, cr.Attempts, cr.Panics, cr.PositionsRejected)
	}
	stmts, err := readerStatements(ctx, readers, since, "")
	if err != nil {
		return res, err
	}
	res.ReaderStatements = len(stmts)
	for _, q := range stmts {
		if !fixedShape(q) {
			res.InjectionsReached++
			if res.InjectionsReached <= 5 {
				fmt.Fprintf(log, "security: reached a reader: %q\n", q)
			}
		}
	}

	// Control: the same positions through the old, unvalidated wait query.
	if res.ReachedWithoutVal, res.ControlStatements, err = control(ctx, s, readers["r1"], log); err != nil {
		return res, err
	}

	// Stacked statements on the pools where the router turned
	// multiStatements on.
	if err := stacked(ctx, s, &res, log); err != nil {
		return res, err
	}

	// Classifier: the statements with a server-side effect.
	if err := classifier(ctx, s, &res, log); err != nil {
		return res, err
	}
	return res, nil
}

// childResult is a child's last output line.
type childResult struct {
	Attempts          int `json:"attempts"`
	Panics            int `json:"panics"`
	PositionsRejected int `json:"positions_rejected"`
}

func runChild(ctx context.Context, exe, feed string) (childResult, error) {
	var cr childResult
	cmd := exec.CommandContext(ctx, exe)
	cmd.Env = append(os.Environ(), EnvChild+"="+feed)
	var out bytes.Buffer
	cmd.Stdout = &out
	cmd.Stderr = os.Stderr
	runErr := cmd.Run()
	// The last line, if any, reports what the child got through.
	sc := bufio.NewScanner(&out)
	var last string
	for sc.Scan() {
		last = sc.Text()
	}
	if last != "" {
		if err := json.Unmarshal([]byte(last), &cr); err != nil && runErr == nil {
			runErr = err
		}
	}
	if runErr == nil && last == "" {
		runErr = errors.New("no result line")
	}
	if runErr != nil && cr.Attempts == 0 {
		cr.Attempts = plannedAttempts(feed)
	}
	return cr, runErr
}

// generalLogOn turns on the general log (to the mysql.general_log table) on
// each reader and returns a function that restores the previous settings.
func generalLogOn(ctx context.Context, dbs map[string]*sql.DB) (func(), error) {
	type prev struct {
		on     int
		output string
	}
	saved := map[string]prev{}
	for name, db := range dbs {
		var p prev
		if err := db.QueryRowContext(ctx, "SELECT @@global.general_log, @@global.log_output").Scan(&p.on, &p.output); err != nil {
			return nil, fmt.Errorf("security: %s: %w", name, err)
		}
		saved[name] = p
		if _, err := db.ExecContext(ctx, "SET GLOBAL log_output = 'TABLE', GLOBAL general_log = 1"); err != nil {
			return nil, fmt.Errorf("security: %s: general log on: %w", name, err)
		}
	}
	return func() {
		for name, p := range saved {
			dbs[name].Exec("SET GLOBAL general_log = ?, GLOBAL log_output = ?", p.on, p.output)
		}
	}, nil
}

// serverNow returns the earliest NOW(6) of the readers, as their general
// log writes it.
func serverNow(ctx context.Context, dbs map[string]*sql.DB) (string, error) {
	least := ""
	for _, db := range dbs {
		var now string
		if err := db.QueryRowContext(ctx, "SELECT CAST(NOW(6) AS CHAR)").Scan(&now); err != nil {
			return "", err
		}
		if least == "" || now < least {
			least = now
		}
	}
	return least, nil
}

// readerStatements returns the statements the application user sent to the
// readers since since (a NOW(6) text), or only those of one connection
// (thread, "" for all) on one reader.
func readerStatements(ctx context.Context, dbs map[string]*sql.DB, since, thread string) ([]string, error) {
	var out []string
	for name, db := range dbs {
		q := "SELECT CONVERT(argument USING utf8mb4) FROM mysql.general_log WHERE event_time >= ? " +
			"AND command_type IN ('Query', 'Execute', 'Prepare') AND user_host LIKE 'regiondb[%'"
		args := []any{since}
		if thread != "" {
			q += " AND thread_id = ?"
			args = append(args, thread)
		}
		rows, err := db.QueryContext(ctx, q, args...)
		if err != nil {
			return nil, fmt.Errorf("security: general log of %s: %w", name, err)
		}
		for rows.Next() {
			var s sql.NullString
			if err := rows.Scan(&s); err != nil {
				rows.Close()
				return nil, err
			}
			out = append(out, strings.TrimSpace(s.String))
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// control sends the naive (pre-validation) wait query of every attempt's
// position to r1 on one connection of the application user, and counts
// those of its statements in r1's general log that are not a fixed shape.
func control(ctx context.Context, s *testserver.Stack, rootR1 *sql.DB, log io.Writer) (reached, sent int, err error) {
	db, err := sql.Open("mysql", s.DSN("r1", ""))
	if err != nil {
		return 0, 0, err
	}
	defer db.Close()
	conn, err := db.Conn(ctx)
	if err != nil {
		return 0, 0, err
	}
	defer conn.Close()
	var thread string
	if err := conn.QueryRowContext(ctx, "SELECT CONNECTION_ID()").Scan(&thread); err != nil {
		return 0, 0, err
	}
	since, err := serverNow(ctx, map[string]*sql.DB{"r1": rootR1})
	if err != nil {
		return 0, 0, err
	}
	positions := append(Positions(), tokenUUIDPositions()...)
	for _, p := range positions {
		q, ok := naiveWaitQuery(p)
		if !ok {
			continue
		}
		sent++
		if rows, err := conn.QueryContext(ctx, q); err == nil { // errors are expected: it is the attack
			rows.Close()
		}
	}
	stmts, err := readerStatements(ctx, map[string]*sql.DB{"r1": rootR1}, since, thread)
	if err != nil {
		return 0, 0, err
	}
	for _, q := range stmts {
		if !fixedShape(q) && !strings.HasPrefix(q, "SELECT CONNECTION_ID()") {
			reached++
			if reached <= 2 {
				fmt.Fprintf(log, "security: control reached a reader: %q\n", q)
			}
		}
	}
	return reached, sent, nil
}
