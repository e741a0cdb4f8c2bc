// Package sqlprobe holds SQL statements that look like reads but have an
// effect on the server, or an answer that belongs to one session or one
// server, each with a probe that shows the effect on a real MariaDB. The
// dbrouter classifier test and the security harness run them against the
// stack, so that what the classifier must send to the writer is proven by
// the server, not assumed by the lexer.
package sqlprobe

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/go-sql-driver/mysql"
)

// Database is the schema the cases use on the primary.
const Database = "regiondb_sec"

// Effect is how a case's effect is observed.
type Effect int

const (
	// Lock: after the statement, another connection sees the named user
	// lock (Case.Probe) in use.
	Lock Effect = iota
	// RowLock: the statement, run in a transaction, holds InnoDB row
	// locks: another connection's SELECT * FROM t FOR UPDATE NOWAIT fails.
	RowLock
	// UserVar: the statement sets the user variable Case.Probe.
	UserVar
	// File: the statement writes the file named by {file} in the query.
	File
	// Session: after Case.Setup on the same connection, the statement
	// answers differently than on a fresh connection: its answer belongs
	// to the session.
	Session
	// Server: with Case.Setup run on another primary connection (kept
	// open), the statement answers differently on the primary than on a
	// replica: its answer belongs to the server (the writer).
	Server
	// Rows: after Case.Setup, the statement changes the answer of
	// Case.Probe (a query on the same connection): it writes.
	Rows
)

func (e Effect) String() string {
	return [...]string{"lock", "row lock", "user variable", "file", "session", "server", "rows"}[e]
}

// Case is one statement with an observable effect.
type Case struct {
	Name  string
	Setup []string // statements run first (see Effect)
	Query string
	// Effect says how the effect is observed; Probe names its lock,
	// variable, or query.
	Effect Effect
	Probe  string
}

// Cases are the statements the classifier must not send to a reader, each
// with an effect MariaDB 10.11 shows.
var Cases = []Case{
	// Numeric literals glued to keywords: the server's lexer splits them.
	{Name: "1.0LOCK", Query: "SELECT * FROM t WHERE a = 1.0LOCK IN SHARE MODE", Effect: RowLock},
	{Name: "1e0LOCK", Query: "SELECT * FROM t WHERE a = 1e0LOCK IN SHARE MODE", Effect: RowLock},
	{Name: ".5LOCK", Query: "SELECT * FROM t WHERE a > .5LOCK IN SHARE MODE", Effect: RowLock},
	{Name: "1.5FOR UPDATE", Query: "SELECT * FROM t WHERE a < 1.5FOR UPDATE", Effect: RowLock},
	{Name: "1.5INTO var", Query: "SELECT 1.5INTO @glued", Effect: UserVar, Probe: "glued"},
	{Name: "1.5INTO OUTFILE", Query: "SELECT 1.5INTO OUTFILE '{file}'", Effect: File},
	// sql_mode changes where a string ends.
	{Name: "NO_BACKSLASH_ESCAPES", Setup: []string{"SET SESSION sql_mode = CONCAT(@@sql_mode, ',NO_BACKSLASH_ESCAPES')"},
		Query: `SELECT 'a\', GET_LOCK('regiondb_l1', 0) #'`, Effect: Lock, Probe: "regiondb_l1"},
	{Name: "ANSI_QUOTES", Setup: []string{"SET SESSION sql_mode = CONCAT(@@sql_mode, ',ANSI_QUOTES')"},
		Query: `SELECT 1 AS "a\", GET_LOCK('regiondb_l2', 0) #"`, Effect: Lock, Probe: "regiondb_l2"},
	// The connection's character set changes where a quoted name ends:
	// in GBK, 0x81 0x60 is one character, not a byte and a backtick.
	{Name: "GBK backtick", Setup: []string{"SET NAMES gbk"},
		Query: "SELECT 1 AS a\x81` , GET_LOCK('regiondb_l6', 0) #`", Effect: Lock, Probe: "regiondb_l6"},
	// Locking and writing clauses.
	{Name: "FOR UPDATE", Query: "SELECT * FROM t WHERE id = 1 FOR UPDATE", Effect: RowLock},
	{Name: "LOCK IN SHARE MODE", Query: "SELECT * FROM t LOCK IN SHARE MODE", Effect: RowLock},
	{Name: "INTO var", Query: "SELECT a INTO @into_var FROM t WHERE id = 1", Effect: UserVar, Probe: "into_var"},
	{Name: "INTO OUTFILE", Query: "SELECT * FROM t INTO OUTFILE '{file}'", Effect: File},
	{Name: "INTO DUMPFILE", Query: "SELECT 'x' INTO DUMPFILE '{file}'", Effect: File},
	{Name: "assignment", Query: "SELECT @assigned := 1", Effect: UserVar, Probe: "assigned"},
	// Lock functions, also under a quoted name.
	{Name: "GET_LOCK", Query: "SELECT GET_LOCK('regiondb_l3', 0)", Effect: Lock, Probe: "regiondb_l3"},
	{Name: "quoted GET_LOCK", Query: "SELECT `GET_LOCK`('regiondb_l4', 0)", Effect: Lock, Probe: "regiondb_l4"},
	{Name: "spaced get_lock", Query: "SELECT get_lock /* c */ ('regiondb_l5', 0)", Effect: Lock, Probe: "regiondb_l5"},
	{Name: "IS_USED_LOCK", Setup: []string{"SELECT GET_LOCK('regiondb_held', 0)"},
		Query: "SELECT IS_USED_LOCK('regiondb_held') IS NOT NULL", Effect: Server},
	{Name: "IS_FREE_LOCK", Setup: []string{"SELECT GET_LOCK('regiondb_held', 0)"},
		Query: "SELECT IS_FREE_LOCK('regiondb_held')", Effect: Server},
	// Sequences and stored functions write.
	{Name: "NEXTVAL", Query: "SELECT NEXTVAL(s)", Effect: Rows, Probe: "SELECT next_not_cached_value FROM s"},
	{Name: "NEXT VALUE FOR", Query: "SELECT NEXT VALUE FOR s", Effect: Rows, Probe: "SELECT next_not_cached_value FROM s"},
	{Name: "SETVAL", Setup: []string{"ALTER SEQUENCE s RESTART WITH 1"}, Query: "SELECT SETVAL(s, 100)", Effect: Rows, Probe: "SELECT next_not_cached_value FROM s"},
	{Name: "stored function", Query: "SELECT log_call()", Effect: Rows, Probe: "SELECT COUNT(*) FROM calls"},
	{Name: "qualified stored function", Query: "SELECT " + Database + ".log_call()", Effect: Rows, Probe: "SELECT COUNT(*) FROM calls"},
	// Answers that belong to the session.
	{Name: "@@identity", Setup: []string{"INSERT INTO ai (v) VALUES (1)"}, Query: "SELECT @@identity", Effect: Session},
	{Name: "@@last_insert_id", Setup: []string{"INSERT INTO ai (v) VALUES (1)"}, Query: "SELECT @@last_insert_id", Effect: Session},
	{Name: "@@insert_id", Setup: []string{"SET insert_id = 424242"}, Query: "SELECT @@insert_id", Effect: Session},
	{Name: "@@session.insert_id", Setup: []string{"SET insert_id = 424242"}, Query: "SELECT @@session.insert_id", Effect: Session},
	{Name: "spaced @@session . insert_id", Setup: []string{"SET insert_id = 424242"}, Query: "SELECT @@session /* c */ . insert_id", Effect: Session},
	{Name: "@@warning_count", Setup: []string{"SELECT 1/0"}, Query: "SELECT @@warning_count", Effect: Session},
	{Name: "@@error_count", Setup: []string{"SIGNAL SQLSTATE '45000'"}, Query: "SELECT @@error_count", Effect: Session},
	{Name: "@@last_gtid", Setup: []string{"INSERT INTO ai (v) VALUES (1)"}, Query: "SELECT @@last_gtid", Effect: Session},
	{Name: "user variable", Setup: []string{"SET @x = 42"}, Query: "SELECT @x", Effect: Session},
	{Name: "quoted user variable", Setup: []string{"SET @x = 42"}, Query: "SELECT @`x`", Effect: Session},
	{Name: "LAST_INSERT_ID()", Setup: []string{"INSERT INTO ai (v) VALUES (1)"}, Query: "SELECT LAST_INSERT_ID()", Effect: Session},
	{Name: "ROW_COUNT()", Setup: []string{"UPDATE t SET a = a WHERE id > 0 AND 1 = 0", "INSERT INTO ai (v) VALUES (1), (2)"},
		Query: "SELECT ROW_COUNT()", Effect: Session},
	{Name: "FOUND_ROWS()", Setup: []string{"SELECT SQL_CALC_FOUND_ROWS * FROM t LIMIT 1"}, Query: "SELECT FOUND_ROWS()", Effect: Session},
	{Name: "SQL_CALC_FOUND_ROWS", Query: "SELECT SQL_CALC_FOUND_ROWS * FROM t LIMIT 1", Effect: Rows, Probe: "SELECT FOUND_ROWS()"},
	{Name: "SHOW WARNINGS", Setup: []string{"SELECT 1/0"}, Query: "SHOW WARNINGS", Effect: Session},
	{Name: "SHOW COUNT(*) WARNINGS", Setup: []string{"SELECT 1/0"}, Query: "SHOW COUNT(*) WARNINGS", Effect: Session},
	{Name: "SHOW ERRORS", Setup: []string{"SIGNAL SQLSTATE '45000'"}, Query: "SHOW ERRORS", Effect: Session},
	{Name: "SHOW SESSION STATUS", Setup: []string{"SELECT 1", "SELECT 2"}, Query: "SHOW SESSION STATUS LIKE 'Com_select'", Effect: Session},
	{Name: "SHOW STATUS", Setup: []string{"SELECT 1", "SELECT 2"}, Query: "SHOW STATUS LIKE 'Com_select'", Effect: Session},
	// Answers that belong to the writer.
	{Name: "SHOW MASTER STATUS", Query: "SHOW MASTER STATUS", Effect: Server},
	{Name: "SHOW BINLOG EVENTS", Query: "SHOW BINLOG EVENTS LIMIT 2", Effect: Server},
	{Name: "SHOW SLAVE STATUS", Query: "SHOW SLAVE STATUS", Effect: Server},
}

// Env is where cases run: root connections to the primary and to one
// replica (the cases' statements need FILE and SUPER-free reads only; no
// case writes on the replica).
type Env struct {
	Primary *sql.DB // root on the primary, default database Database
	Replica *sql.DB // root on a replica, default database Database
	// FileDir is a directory both this process and the primary's server
	// can write (they share the host on the stack).
	FileDir string
}

// OpenEnv connects as root to the primary and a replica (host:port), creates
// the cases' schema and waits until the replica has it. FileDir is the
// temporary directory. close closes the connections.
func OpenEnv(ctx context.Context, primary, replica string) (env Env, close func(), err error) {
	open := func(addr, db string) *sql.DB {
		d, _ := sql.Open("mysql", "root@tcp("+addr+")/"+db)
		return d
	}
	root := open(primary, "")
	defer root.Close()
	if err := Prepare(ctx, root); err != nil {
		return Env{}, nil, err
	}
	var pos string
	if err := root.QueryRowContext(ctx, "SELECT @@global.gtid_binlog_pos").Scan(&pos); err != nil {
		return Env{}, nil, err
	}
	env = Env{Primary: open(primary, Database), Replica: open(replica, Database), FileDir: os.TempDir()}
	close = func() { env.Primary.Close(); env.Replica.Close() }
	var res sql.NullInt64
	if err := env.Replica.QueryRowContext(ctx, "SELECT MASTER_GTID_WAIT(?, 10)", pos).Scan(&res); err != nil || res.Int64 != 0 {
		close()
		return Env{}, nil, fmt.Errorf("sqlprobe: replica did not catch up with %s: %v %v", pos, res, err)
	}
	return env, close, nil
}

// Prepare creates the cases' schema on the primary (it replicates, except
// the stored function: replicas would need log_bin_trust_function_creators).
func Prepare(ctx context.Context, root *sql.DB) error {
	conn, err := root.Conn(ctx)
	if err != nil {
		return err
	}
	defer conn.Close()
	for _, q := range []string{
		"CREATE DATABASE IF NOT EXISTS " + Database,
		"CREATE TABLE IF NOT EXISTS " + Database + ".t (id INT PRIMARY KEY, a INT NOT NULL)",
		"INSERT IGNORE INTO " + Database + ".t VALUES (1, 1), (2, 2), (3, 3)",
		"CREATE TABLE IF NOT EXISTS " + Database + ".ai (id BIGINT AUTO_INCREMENT PRIMARY KEY, v INT NOT NULL)",
		"CREATE TABLE IF NOT EXISTS " + Database + ".calls (id BIGINT AUTO_INCREMENT PRIMARY KEY)",
		"CREATE SEQUENCE IF NOT EXISTS " + Database + ".s NOCACHE",
		"SET SESSION sql_log_bin = 0",
		"SET @regiondb_trust = @@global.log_bin_trust_function_creators",
		"SET GLOBAL log_bin_trust_function_creators = 1",
		"CREATE FUNCTION IF NOT EXISTS " + Database + ".log_call() RETURNS INT NOT DETERMINISTIC MODIFIES SQL DATA " +
			"BEGIN INSERT INTO " + Database + ".calls VALUES (NULL); RETURN 1; END",
		"SET GLOBAL log_bin_trust_function_creators = @regiondb_trust",
		"SET SESSION sql_log_bin = 1",
	} {
		if _, err := conn.ExecContext(ctx, q); err != nil {
			return fmt.Errorf("sqlprobe: %s: %w", q, err)
		}
	}
	return nil
}

var fileSeq atomic.Int64

// Observe runs c on env and reports whether its effect showed.
func (c Case) Observe(ctx context.Context, env Env) (bool, error) {
	ctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	conn, err := env.Primary.Conn(ctx)
	if err != nil {
		return false, err
	}
	defer discard(conn)
	switch c.Effect {
	case Lock:
		defer conn.ExecContext(context.Background(), "DO RELEASE_ALL_LOCKS()")
		if err := run(ctx, conn, c.Setup, c.Query); err != nil {
			return false, err
		}
		return answer(ctx, env.Primary, "SELECT IS_USED_LOCK(?) IS NOT NULL", c.Probe)
	case RowLock:
		if _, err := conn.ExecContext(ctx, "BEGIN"); err != nil {
			return false, err
		}
		defer conn.ExecContext(context.Background(), "ROLLBACK")
		if err := run(ctx, conn, c.Setup, c.Query); err != nil {
			return false, err
		}
		// Another connection cannot lock the table's rows without
		// waiting (information_schema.INNODB_TRX would do too, but InnoDB
		// refreshes it at most every 100 ms).
		_, err := result(ctx, env.Primary, "SELECT * FROM t FOR UPDATE NOWAIT")
		var me *mysql.MySQLError
		if errors.As(err, &me) && me.Number == 1205 {
			return true, nil
		}
		return false, err
	case UserVar:
		if err := run(ctx, conn, c.Setup, c.Query); err != nil {
			return false, err
		}
		return answer(ctx, conn, "SELECT @`"+strings.ReplaceAll(c.Probe, "`", "``")+"` IS NOT NULL")
	case File:
		path := filepath.Join(env.FileDir, "regiondb-sqlprobe-"+strconv.Itoa(os.Getpid())+"-"+strconv.FormatInt(fileSeq.Add(1), 10))
		defer os.Remove(path)
		if err := run(ctx, conn, c.Setup, strings.ReplaceAll(c.Query, "{file}", path)); err != nil {
			return false, err
		}
		_, err := os.Stat(path)
		return err == nil, nil
	case Session:
		if err := run(ctx, conn, c.Setup, ""); err != nil {
			return false, err
		}
		a, err := result(ctx, conn, c.Query)
		if err != nil {
			return false, err
		}
		fresh, err := env.Primary.Conn(ctx)
		if err != nil {
			return false, err
		}
		defer fresh.Close()
		b, err := result(ctx, fresh, c.Query)
		return a != b, err
	case Server:
		defer conn.ExecContext(context.Background(), "DO RELEASE_ALL_LOCKS()")
		if err := run(ctx, conn, c.Setup, ""); err != nil {
			return false, err
		}
		a, err := result(ctx, env.Primary, c.Query)
		if err != nil {
			return false, err
		}
		b, err := result(ctx, env.Replica, c.Query)
		return a != b, err
	case Rows:
		if err := run(ctx, conn, c.Setup, ""); err != nil {
			return false, err
		}
		before, err := result(ctx, conn, c.Probe)
		if err != nil {
			return false, err
		}
		if err := run(ctx, conn, nil, c.Query); err != nil {
			return false, err
		}
		after, err := result(ctx, conn, c.Probe)
		return before != after, err
	}
	return false, errors.New("sqlprobe: unknown effect")
}

// discard closes conn instead of returning it to the pool: a case may have
// changed its sql_mode or character set.
func discard(conn *sql.Conn) {
	conn.Raw(func(any) error { return driver.ErrBadConn })
	conn.Close()
}

type querier interface {
	QueryContext(ctx context.Context, q string, args ...any) (*sql.Rows, error)
}

// run runs setup then q (if not "") on conn, reading and discarding rows.
// A setup statement may fail on purpose (SIGNAL): its error is ignored.
func run(ctx context.Context, conn *sql.Conn, setup []string, q string) error {
	for _, s := range setup {
		if rows, err := conn.QueryContext(ctx, s); err == nil {
			rows.Close()
		}
	}
	if q == "" {
		return nil
	}
	_, err := result(ctx, conn, q)
	return err
}

// result returns all rows of q as text.
func result(ctx context.Context, db querier, q string, args ...any) (string, error) {
	rows, err := db.QueryContext(ctx, q, args...)
	if err != nil {
		return "", fmt.Errorf("sqlprobe: %s: %w", q, err)
	}
	defer rows.Close()
	cols, err := rows.Columns()
	if err != nil {
		return "", err
	}
	var b strings.Builder
	vals := make([]sql.RawBytes, len(cols))
	ptrs := make([]any, len(cols))
	for i := range vals {
		ptrs[i] = &vals[i]
	}
	for rows.Next() {
		if err := rows.Scan(ptrs...); err != nil {
			return "", err
		}
		for _, v := range vals {
			b.Write(v)
			b.WriteByte('\t')
		}
		b.WriteByte('\n')
	}
	return b.String(), rows.Err()
}

func answer(ctx context.Context, db querier, q string, args ...any) (bool, error) {
	s, err := result(ctx, db, q, args...)
	return strings.TrimSpace(s) == "1", err
}
