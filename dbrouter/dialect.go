package dbrouter

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Dialect says how the router learns replication positions. The zero value
// is [DialectMariaDB].
type Dialect int

const (
	// DialectMariaDB uses MariaDB GTIDs (domain-server-sequence). After a
	// write the router reads @@last_gtid on the same connection; the
	// monitor reads @@global.gtid_current_pos on each reader and
	// @@global.gtid_binlog_pos on the writer. Exact; needs gtid_strict_mode
	// (the default for any sane GTID setup) and no privilege.
	DialectMariaDB Dialect = iota
	// DialectMySQL uses MySQL 8 binlog GTID sets (uuid:interval). After a
	// write the router reads @@global.gtid_executed on the same connection
	// (a set that contains the write); the monitor reads
	// @@global.gtid_executed everywhere. Exact; needs gtid_mode=ON. Not for
	// Aurora MySQL, whose readers do not replicate through the binary log
	// ([Open] refuses it with [Config].Aurora): use [DialectHeartbeat].
	DialectMySQL
	// DialectHeartbeat uses a heartbeat row (pt-heartbeat style), for
	// Aurora readers, which share storage and have no binlog position. See
	// the package documentation for what it writes and reads.
	DialectHeartbeat
)

// String returns the dialect's name.
func (d Dialect) String() string {
	switch d {
	case DialectMariaDB:
		return "mariadb"
	case DialectMySQL:
		return "mysql"
	case DialectHeartbeat:
		return "heartbeat"
	}
	return "Dialect(" + strconv.Itoa(int(d)) + ")"
}

// DefaultHeartbeatTable is the heartbeat table of [DialectHeartbeat] when
// [Config.HeartbeatTable] is empty.
const DefaultHeartbeatTable = "regiondb_heartbeat"

// dialect is the per-engine part of position tracking.
type dialect interface {
	// lastWriteQuery runs on the connection that just committed a write and
	// returns a position at or after that write.
	lastWriteQuery() string
	// writerQuery returns the writer's whole committed position.
	writerQuery() string
	// readerQuery returns a reader's applied position.
	readerQuery() string
	parseWriter(s string) (*position, error)
	parseReader(s string) (*position, error)
	// waitQuery, if not "", is a query that blocks on a reader until it
	// has applied p or timeout passes, and returns 0 when p is applied.
	// The position is inlined so that the query needs no prepared
	// statement, but only as numbers formatted by strconv and UUIDs
	// formatted from their 16 bytes: the query is always one fixed shape.
	// A p with a stream of another dialect gets "" (the monitor polls).
	waitQuery(p *position, timeout time.Duration) string
	// kind is the one kind of stream key the dialect's positions have.
	kind() streamKind
	// combine, if not nil, is the dialect's one-round-trip path (see
	// [Config.DisableCombinedStatements]).
	combine() *combineSQL
}

// combineSQL are the statements the one-round-trip path sends in the same
// text as a user's statement.
type combineSQL struct {
	// guard(p, timeout) is a SELECT of one row that fails with
	// guardErrno unless the server has applied p within timeout (or ""
	// when p has a stream of another dialect). The position is inlined
	// like waitQuery's: numbers only.
	guard      func(p *position, timeout time.Duration) string
	guardErrno uint16
	// sample is a reader's applied position (one row, one column).
	sample string
	// writeTail follows an autocommit write: one row of the session's last
	// write position, ROW_COUNT() and LAST_INSERT_ID() (see writeConn).
	// writeHead precedes the write, and commitTail follows a COMMIT.
	writeHead, writeTail, commitTail string
}

func newDialect(d Dialect, table string) (dialect, error) {
	switch d {
	case DialectMariaDB:
		return mariaDialect{}, nil
	case DialectMySQL:
		return mysqlDialect{}, nil
	case DialectHeartbeat:
		if table == "" {
			table = DefaultHeartbeatTable
		}
		return heartbeatDialect{table: table}, nil
	}
	return nil, fmt.Errorf("unknown dialect %d", int(d))
}

type mariaDialect struct {
	unguarded bool // tests only: the wait without its read_only guard (see Config)
}

func (mariaDialect) lastWriteQuery() string { return "SELECT @@last_gtid" }
func (mariaDialect) writerQuery() string    { return "SELECT @@global.gtid_binlog_pos" }

// A replica's gtid_current_pos equals gtid_slave_pos while it only applies
// replication (read_only without READ_ONLY ADMIN), and stays right on a
// reader that was once a primary.
func (mariaDialect) readerQuery() string                     { return "SELECT @@global.gtid_current_pos" }
func (mariaDialect) parseWriter(s string) (*position, error) { return parseMariaDBGTIDList(s) }
func (mariaDialect) parseReader(s string) (*position, error) { return parseMariaDBGTIDList(s) }

// MASTER_GTID_WAIT compares sequence numbers per domain and ignores the
// server id (checked on MariaDB 10.11: '0-99-5' and '0-0-5' both return 0
// on a replica at 0-1-1422), so positions without server ids work.
//
// On a primary it waits on gtid_slave_pos, which the primary's own commits
// never enter, so a reader that was promoted would time out for every write
// made on it since. The wait is therefore guarded: a writable server answers
// NULL at once (no wait), and the monitor reads its gtid_current_pos, which
// has its own commits.
func (d mariaDialect) waitQuery(p *position, timeout time.Duration) string {
	if p.empty() || !p.only(streamDomain) {
		return ""
	}
	b := make([]byte, 0, 80+24*len(p.parts))
	if d.unguarded {
		b = append(b, "SELECT (MASTER_GTID_WAIT('"...)
	} else {
		b = append(b, "SELECT IF(@@global.read_only = 0, NULL, MASTER_GTID_WAIT('"...)
	}
	b = appendGTIDs(b, p)
	return string(append(appendTimeout(b, timeout), ')'))
}

func (mariaDialect) kind() streamKind { return streamDomain }

// appendGTIDs appends p (of domain streams) as MariaDB's GTID list text,
// "domain-0-seq,...", formatted from its numbers only.
func appendGTIDs(b []byte, p *position) []byte {
	for i, pp := range p.parts {
		if i > 0 {
			b = append(b, ',')
		}
		b = strconv.AppendUint(b, uint64(pp.key.domain), 10)
		b = append(b, "-0-"...)
		b = strconv.AppendUint(b, pp.seq, 10)
	}
	return b
}

// guardErrSubquery is MariaDB's ER_SUBQUERY_NO_1_ROW ("Subquery returns
// more than 1 row"), the error the guard raises: a multi-statement text
// stops at its first error, so the user's statement after the guard does
// not run.
const guardErrSubquery = 1242

// lastInsertIDVar is the user variable through which a combined write keeps
// the session's LAST_INSERT_ID() as it would be without the combining.
const lastInsertIDVar = "@regiondb_last_insert_id"

func (d mariaDialect) combine() *combineSQL {
	return &combineSQL{
		guard:      d.guardQuery,
		guardErrno: guardErrSubquery,
		sample:     "SELECT @@global.gtid_current_pos",
		// LAST_INSERT_ID() keeps an older value after a statement that
		// generated none, where the OK packet reports 0: it is set to 0
		// before the write, read after it, and put back to the older
		// value if the write left it at 0.
		writeHead: "SET " + lastInsertIDVar + " = LAST_INSERT_ID(); DO LAST_INSERT_ID(0)",
		writeTail: "SELECT @@last_gtid, ROW_COUNT(), LAST_INSERT_ID(), " +
			"LAST_INSERT_ID(IF(LAST_INSERT_ID() = 0, " + lastInsertIDVar + ", LAST_INSERT_ID()))",
		commitTail: "SELECT @@last_gtid",
	}
}

// guardQuery is the guard of a combined read: MASTER_GTID_WAIT on a
// read-only server (a writable one fails at once: its wait would time out,
// see waitQuery), and a subquery of two rows, evaluated only when the wait
// did not return 0, that fails the text with error 1242. Its column is
// named "g": unnamed, the server would send the whole expression as the
// column's name, and the driver would copy it, on every guarded read.
//
// The read_only test is an inner IF, not an AND: MariaDB 10.11 evaluates
// "@@global.read_only = 1 AND MASTER_GTID_WAIT(...) = 0" inside IF twice
// (a failing guard took twice its timeout) and without short-circuit (a
// writable server waited the whole timeout); measured on the stack (issue
// 11).
func (d mariaDialect) guardQuery(p *position, timeout time.Duration) string {
	if p.empty() || !p.only(streamDomain) {
		return ""
	}
	b := make([]byte, 0, 120+24*len(p.parts))
	if d.unguarded {
		b = append(b, "SELECT IF(MASTER_GTID_WAIT('"...)
	} else {
		b = append(b, "SELECT IF(IF(@@global.read_only = 1, MASTER_GTID_WAIT('"...)
	}
	b = appendGTIDs(b, p)
	b = appendTimeout(b, timeout)
	if !d.unguarded {
		b = append(b, ", 1)"...)
	}
	return string(append(b, " = 0, 1, (SELECT 1 UNION ALL SELECT 2)) AS g"...))
}

// appendTimeout ends a wait query: "', <seconds with 3 decimals>)".
func appendTimeout(b []byte, timeout time.Duration) []byte {
	b = append(b, "', "...)
	b = strconv.AppendFloat(b, max(timeout, 0).Seconds(), 'f', 3, 64)
	return append(b, ')')
}

type mysqlDialect struct{}

func (mysqlDialect) lastWriteQuery() string { return "SELECT @@global.gtid_executed" }
func (mysqlDialect) writerQuery() string    { return "SELECT @@global.gtid_executed" }
func (mysqlDialect) readerQuery() string    { return "SELECT @@global.gtid_executed" }
func (mysqlDialect) parseWriter(s string) (*position, error) {
	return parseMySQLGTIDSet(s, false)
}
func (mysqlDialect) parseReader(s string) (*position, error) {
	return parseMySQLGTIDSet(s, true)
}

// WAIT_FOR_EXECUTED_GTID_SET returns 0 once the set is executed, 1 on
// timeout.
// A stream at 0 needs nothing and is left out (":1-0" is no interval).
func (mysqlDialect) waitQuery(p *position, timeout time.Duration) string {
	if p.empty() || !p.only(streamUUID) {
		return ""
	}
	b := make([]byte, 0, 48+60*len(p.parts))
	b = append(b, "SELECT WAIT_FOR_EXECUTED_GTID_SET('"...)
	n := 0
	for _, pp := range p.parts {
		if pp.seq == 0 {
			continue
		}
		if n > 0 {
			b = append(b, ',')
		}
		n++
		b = appendUUID(b, pp.key.uuid)
		b = append(b, ":1-"...)
		b = strconv.AppendUint(b, pp.seq, 10)
	}
	if n == 0 {
		return ""
	}
	return string(appendTimeout(b, timeout))
}

func (mysqlDialect) kind() streamKind { return streamUUID }

// The MySQL dialect keeps the separate round trips (no MySQL server on the
// test stack to prove a combined path against).
func (mysqlDialect) combine() *combineSQL { return nil }

// heartbeatDialect reads a counter row (id 1) that the heartbeat writer
// increments on the writer every heartbeat period, in the same statement
// that records the writer's @@server_id in row 2. A write committed while
// the counter was n is visible on a reader once the reader shows n+1 from
// the same writer (the next beat was committed after it on the same
// storage or binlog stream). Counters of different writers are different
// streams (see beatKey), so a failover that loses beats, or restarts the
// counter lower, never makes a reader look further ahead than it is. A
// table without row 2 (a beater of its own, such as pt-heartbeat) is read
// as one stream of an unknown writer.
type heartbeatDialect struct{ table string }

// lastWriteQuery names the live writer (@@server_id) when the table records
// writers, so a write on a just-promoted writer is never taken as covered by
// the old writer's counter, even before its first beat.
func (h heartbeatDialect) lastWriteQuery() string {
	return "SELECT CONCAT(IF(EXISTS(SELECT 1 FROM " + h.table + " WHERE id = 2), @@server_id, 0), ':', seq + 1) FROM " +
		h.table + " WHERE id = 1"
}
func (h heartbeatDialect) writerQuery() string { return h.readerQuery() }
func (h heartbeatDialect) readerQuery() string {
	return "SELECT CONCAT(IFNULL((SELECT seq FROM " + h.table + " WHERE id = 2), 0), ':', seq) FROM " +
		h.table + " WHERE id = 1"
}
func (heartbeatDialect) parseWriter(s string) (*position, error) { return parseHeartbeat(s) }
func (heartbeatDialect) parseReader(s string) (*position, error) { return parseHeartbeat(s) }

// The heartbeat has no server-side wait: the monitor polls.
func (heartbeatDialect) waitQuery(*position, time.Duration) string { return "" }

func (heartbeatDialect) kind() streamKind { return streamBeat }

func (heartbeatDialect) combine() *combineSQL { return nil }

// parseHeartbeat parses "writer:seq" (or a bare "seq", from older tables).
func parseHeartbeat(s string) (*position, error) {
	if s == "" {
		return &position{}, nil
	}
	w, seqText, ok := strings.Cut(s, ":")
	if !ok {
		w, seqText = "0", s
	}
	var writer uint64
	if w != "0" {
		var err error
		if writer, err = parseDecimal(w, 32); err != nil {
			return nil, err
		}
	}
	n, err := strconv.ParseUint(seqText, 10, 64)
	if err != nil {
		return nil, errBadPosition
	}
	return &position{parts: []posPart{{key: beatKey(uint32(writer)), seq: n}}}, nil
}

// forwardedWriteQuery reads, on a forwarding session right after a write,
// the heartbeat position that covers it: the writer id and counter the
// reader shows (under SESSION consistency, at or after the write), plus
// one beat.
func (h heartbeatDialect) forwardedWriteQuery() string {
	return "SELECT CONCAT(IFNULL((SELECT seq FROM " + h.table + " WHERE id = 2), 0), ':', seq + 1) FROM " +
		h.table + " WHERE id = 1"
}
