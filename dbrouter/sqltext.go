package dbrouter

import (
	"strings"
	"sync"
	"sync/atomic"
)

// classCacheSize bounds the statements whose class a router remembers.
// Applications use a bounded set of statement texts; one that builds texts
// dynamically fills the cache once and then gets them classified each time.
const classCacheSize = 4096

// classCache remembers readOnly per statement text, so that the read path
// does a map lookup instead of a scan. The zero value is ready to use.
type classCache struct {
	m sync.Map     // string -> bool
	n atomic.Int32 // entries stored
}

func (c *classCache) readOnly(q string) bool {
	if v, ok := c.m.Load(q); ok {
		return v.(bool)
	}
	ro := readOnly(q)
	if c.n.Load() < classCacheSize {
		if _, loaded := c.m.LoadOrStore(q, ro); !loaded {
			c.n.Add(1)
		}
	}
	return ro
}

// readOnly reports whether the statement q is provably read-only and
// independent of the session that runs it, so that a reader may run it. It
// is an allow-list lexer: anything it does not fully understand, in any
// sql_mode, is a write and goes to the writer.
//
// Read-only means: after leading whitespace and comments, the statement is
// SELECT, WITH, or "(" ... SELECT, or one of the SHOW forms about schema
// objects (TABLES, COLUMNS, CREATE ..., INDEX, GLOBAL VARIABLES and a few
// more), and every token after that is one the lexer knows:
//   - words, except the locking, writing and session-bound ones: INTO, LOCK,
//     FOR (other than FOR SYSTEM_TIME), INSERT, UPDATE, DELETE, REPLACE,
//     CALL, PROCEDURE, SQL_CALC_FOUND_ROWS, NEXT/PREVIOUS VALUE FOR;
//   - function calls (a word followed by "(") of built-in functions known
//     to be pure ([pureFuncs]); a stored function, a qualified or quoted
//     name, or a session or lock function (GET_LOCK, LAST_INSERT_ID,
//     FOUND_ROWS, ROW_COUNT, ...) is not;
//   - numeric literals that end where the server's lexer ends them (not
//     glued to a word: "1.0LOCK", "1e0LOCK", ".5LOCK", "0x1INTO");
//   - string literals and quoted identifiers without a backslash (whose
//     extent would depend on NO_BACKSLASH_ESCAPES or, for "...", on
//     ANSI_QUOTES), and no backtick right after a non-ASCII byte (whose
//     meaning depends on the connection's character set);
//   - system variables other than the session's own (@@identity,
//     @@last_insert_id, @@insert_id, @@warning_count, @@error_count,
//     @@last_gtid, ..., and any @@session. or @@local. one); no user
//     variables (@x);
//   - ordinary operators and punctuation, "?" placeholders, comments other
//     than executable ones ("/*!", "/*M!"), and one final ";".
//
// readOnly does not allocate.
func readOnly(q string) bool {
	if multibyteQuote(q) {
		return false
	}
	i := skipSpaceAndComments(q, 0)
	parens := false
	for i >= 0 && i < len(q) && q[i] == '(' {
		i = skipSpaceAndComments(q, i+1)
		parens = true
	}
	if i < 0 || i >= len(q) || !isWordByte(q[i]) {
		return false
	}
	w, j := word(q, i)
	switch {
	case keywordIs(w, "SELECT"), keywordIs(w, "WITH"):
		return scanReadOnly(q, j)
	case keywordIs(w, "SHOW") && !parens:
		j, ok := showForm(q, j)
		return ok && scanReadOnly(q, j)
	}
	return false
}

// showForm checks the words after SHOW and returns the index after them.
// Only SHOW forms about schema objects are allowed; those about the
// session (WARNINGS, ERRORS, STATUS, VARIABLES, PROFILE), the server's
// replication and binary log (MASTER, SLAVE, REPLICA, BINLOG, BINARY LOGS)
// or its connections (PROCESSLIST) are not.
func showForm(q string, i int) (int, bool) {
	next := func() string {
		if i = skipSpaceAndComments(q, i); i < 0 || i >= len(q) {
			i = -1
			return ""
		}
		var w string
		w, i = word(q, i)
		return w
	}
	w := next()
	if keywordIs(w, "FULL") || keywordIs(w, "EXTENDED") {
		w = next()
	}
	switch {
	case keywordIs(w, "GLOBAL"):
		if !keywordIs(next(), "VARIABLES") {
			return 0, false
		}
	case keywordIs(w, "TABLE"), keywordIs(w, "PROCEDURE"), keywordIs(w, "FUNCTION"):
		if !keywordIs(next(), "STATUS") {
			return 0, false
		}
	case keywordIs(w, "CHARACTER"):
		if !keywordIs(next(), "SET") {
			return 0, false
		}
	case keywordIs(w, "TABLES"), keywordIs(w, "COLUMNS"), keywordIs(w, "FIELDS"),
		keywordIs(w, "DATABASES"), keywordIs(w, "SCHEMAS"), keywordIs(w, "CREATE"),
		keywordIs(w, "INDEX"), keywordIs(w, "INDEXES"), keywordIs(w, "KEYS"),
		keywordIs(w, "TRIGGERS"), keywordIs(w, "CHARSET"), keywordIs(w, "COLLATION"),
		keywordIs(w, "ENGINES"), keywordIs(w, "PLUGINS"), keywordIs(w, "GRANTS"), keywordIs(w, "PRIVILEGES"):
	default:
		return 0, false
	}
	return i, i >= 0
}

// skipSpaceAndComments returns the index of the first byte at or after i that
// is neither whitespace nor inside a comment, or -1 if a comment is
// unterminated or executable, or "--" is followed by a control character
// (whether that starts a comment differs between servers).
func skipSpaceAndComments(q string, i int) int {
	for i < len(q) {
		c := q[i]
		switch {
		case isSpace(c):
			i++
		case c == '#':
			i = lineEnd(q, i)
		case c == '-' && i+1 < len(q) && q[i+1] == '-':
			if i+2 == len(q) {
				return len(q)
			}
			if d := q[i+2]; isSpace(d) {
				i = lineEnd(q, i)
			} else if d < ' ' || d == 0x7f {
				return -1
			} else {
				return i
			}
		case c == '/' && i+1 < len(q) && q[i+1] == '*':
			if i+2 < len(q) && (q[i+2] == '!' || (q[i+2] == 'M' && i+3 < len(q) && q[i+3] == '!')) {
				return -1
			}
			end := indexFrom(q, "*/", i+2)
			if end < 0 {
				return -1
			}
			i = end + 2
		default:
			return i
		}
	}
	return i
}

func isSpace(c byte) bool {
	return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v'
}

func lineEnd(q string, i int) int {
	for i < len(q) && q[i] != '\n' {
		i++
	}
	return i
}

func indexFrom(q, sub string, i int) int {
	for j := i; j+len(sub) <= len(q); j++ {
		if q[j:j+len(sub)] == sub {
			return j
		}
	}
	return -1
}

func isWordByte(c byte) bool {
	return c == '_' || c == '$' || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c >= 0x80
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

// word returns the identifier-like word starting at i and the index after it.
func word(q string, i int) (string, int) {
	j := i
	for j < len(q) && isWordByte(q[j]) {
		j++
	}
	return q[i:j], j
}

// keywordIs reports whether w equals the upper-case ASCII keyword kw,
// ignoring case.
func keywordIs(w, kw string) bool {
	if len(w) != len(kw) {
		return false
	}
	for i := 0; i < len(w); i++ {
		c := w[i]
		if c >= 'a' && c <= 'z' {
			c -= 'a' - 'A'
		}
		if c != kw[i] {
			return false
		}
	}
	return true
}

// compareKeyword compares w, upper-cased, with the upper-case kw.
func compareKeyword(w, kw string) int {
	for i := 0; i < len(w) && i < len(kw); i++ {
		c := w[i]
		if c >= 'a' && c <= 'z' {
			c -= 'a' - 'A'
		}
		if c != kw[i] {
			if c < kw[i] {
				return -1
			}
			return 1
		}
	}
	return len(w) - len(kw)
}

// inSorted reports whether w (any case) is in the sorted upper-case list.
func inSorted(list []string, w string) bool {
	lo, hi := 0, len(list)
	for lo < hi {
		m := int(uint(lo+hi) >> 1)
		switch c := compareKeyword(w, list[m]); {
		case c == 0:
			return true
		case c > 0:
			lo = m + 1
		default:
			hi = m
		}
	}
	return false
}

// quoted returns the index after the quoted token (string or identifier)
// at i, or -1 if it is unterminated or contains a backslash: whether a
// backslash escapes depends on NO_BACKSLASH_ESCAPES (and for "..." on
// ANSI_QUOTES), so the token's extent, and with it the statement's meaning,
// depends on the session's sql_mode. A doubled quote is an escape in every
// mode.
func quoted(q string, i int) int {
	c := q[i]
	for j := i + 1; j < len(q); j++ {
		switch q[j] {
		case '\\':
			return -1
		case c:
			if j+1 < len(q) && q[j+1] == c {
				j++
				continue
			}
			return j + 1
		}
	}
	return -1
}

// number returns the index after the numeric literal at i (decimal with
// optional fraction and exponent, 0x hex, 0b binary), or -1 if it is glued
// to a word or another dot: the server's lexer ends a literal where these
// grammars end ("1.0LOCK" is 1.0 then LOCK), so anything glued to one is a
// word the server sees and this lexer might not.
func number(q string, i int) int {
	j := i
	digits := func(ok func(byte) bool) int {
		n := 0
		for j < len(q) && ok(q[j]) {
			j++
			n++
		}
		return n
	}
	if q[j] == '0' && j+1 < len(q) && (q[j+1] == 'x' || q[j+1] == 'X' || q[j+1] == 'b' || q[j+1] == 'B') {
		hex := q[j+1] == 'x' || q[j+1] == 'X'
		j += 2
		if digits(func(c byte) bool {
			if hex {
				return isDigit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F')
			}
			return c == '0' || c == '1'
		}) == 0 {
			return -1
		}
	} else {
		n := digits(isDigit)
		if j < len(q) && q[j] == '.' {
			j++
			n += digits(isDigit)
		}
		if n == 0 {
			return -1
		}
		if j < len(q) && (q[j] == 'e' || q[j] == 'E') {
			j++
			if j < len(q) && (q[j] == '+' || q[j] == '-') {
				j++
			}
			if digits(isDigit) == 0 {
				return -1
			}
		}
	}
	if j < len(q) && (isWordByte(q[j]) || q[j] == '.') {
		return -1
	}
	return j
}

// scanReadOnly checks the tokens of a SELECT, WITH or SHOW statement from i
// on; see readOnly.
func scanReadOnly(q string, i int) bool {
	afterFor := false // the previous word was FOR
	afterDot := false // the previous token was "."
	for {
		if i = skipSpaceAndComments(q, i); i < 0 {
			return false
		}
		if i >= len(q) {
			return !afterFor
		}
		c := q[i]
		if afterFor && !isWordByte(c) {
			return false
		}
		dot := false
		switch {
		case c == '\'' || c == '"' || c == '`':
			if i = quoted(q, i); i < 0 {
				return false
			}
			// A quoted name followed by "(" calls a function the
			// lexer cannot name.
			if c != '\'' && nextIs(q, i, '(') {
				return false
			}
		case isDigit(c) || (c == '.' && i+1 < len(q) && isDigit(q[i+1])):
			if i = number(q, i); i < 0 {
				return false
			}
		case isWordByte(c):
			var w string
			w, i = word(q, i)
			switch {
			case afterFor:
				if !keywordIs(w, "SYSTEM_TIME") {
					return false
				}
				afterFor = false
			case keywordIs(w, "FOR"):
				afterFor = true
			case deniedWord(w):
				return false
			case nextIs(q, i, '('):
				if afterDot || !inSorted(pureFuncs[:], w) {
					return false
				}
			}
		case c == '@':
			if i = sysVar(q, i); i < 0 {
				return false
			}
		case c == ';':
			return skipSpaceAndComments(q, i+1) == len(q)
		case c == '.':
			dot = true
			i++
		case c == ':' || c == '\\' || c == '{' || c == '}' || c == '[' || c == ']' || c < ' ' || c == 0x7f:
			return false
		default: // ( ) , + - * / % = < > ! ~ ^ & | ?
			i++
		}
		afterDot = dot
	}
}

// nextIs reports whether the first byte at or after i that is neither
// whitespace nor a comment is c.
func nextIs(q string, i int, c byte) bool {
	i = skipSpaceAndComments(q, i)
	return i >= 0 && i < len(q) && q[i] == c
}

// sysVar returns the index after the system variable at i ("@@name",
// "@@global.name"), or -1 for a user variable or a variable of the session
// (the server allows spaces and comments around the scope's dot).
func sysVar(q string, i int) int {
	if i+2 >= len(q) || q[i+1] != '@' || !isWordByte(q[i+2]) {
		return -1 // @x, @'x', @`x`: a user variable
	}
	name, j := word(q, i+2)
	if keywordIs(name, "SESSION") || keywordIs(name, "LOCAL") {
		return -1
	}
	if k := skipSpaceAndComments(q, j); k < 0 || (k < len(q) && q[k] == '.') {
		if k < 0 || !keywordIs(name, "GLOBAL") {
			return -1 // a structured variable's component, or worse
		}
		if k = skipSpaceAndComments(q, k+1); k < 0 || k >= len(q) || !isWordByte(q[k]) {
			return -1
		}
		name, j = word(q, k)
	}
	if inSorted(sessionVars[:], name) {
		return -1
	}
	return j
}

// multibyteQuote reports whether q has a backtick right after a non-ASCII
// byte: in the multi-byte character sets whose second bytes include 0x60
// (GBK, Big5, Shift-JIS) the two are one character, so where a quoted
// identifier starts or ends would depend on the connection's character set.
func multibyteQuote(q string) bool {
	for i := 1; i < len(q); i++ {
		if q[i] == '`' && q[i-1] >= 0x80 {
			return true
		}
	}
	return false
}

// deniedWords make a SELECT a write, a locking read or session-bound (see
// readOnly), sorted.
var deniedWords = [...]string{
	"CALL", "DELETE", "INSERT", "INTO", "LOCK", "NEXT", "PREVIOUS", "PROCEDURE", "REPLACE",
	"SQL_CALC_FOUND_ROWS", "UPDATE",
}

func deniedWord(w string) bool { return len(w) >= 4 && inSorted(deniedWords[:], w) }

// sessionVars are system variables whose value belongs to the session that
// reads them (its last insert, its warnings, its last GTID) or that the
// session sets for itself, sorted.
var sessionVars = [...]string{
	"ERROR_COUNT", "GTID_SEQ_NO", "IDENTITY", "INSERT_ID", "IN_TRANSACTION", "LAST_GTID",
	"LAST_INSERT_ID", "PSEUDO_THREAD_ID", "RAND_SEED1", "RAND_SEED2", "TIMESTAMP",
	"WARNING_COUNT",
}

// pureFuncs are the words a reader may see followed by "(": built-in
// functions whose result depends only on their arguments, the data and the
// server's clock, and keywords that precede a parenthesis (IN (...), AS
// (...), OVER (...)), sorted. Lock, sequence, session, replication, file
// functions are not here, nor are stored functions.
var pureFuncs = [...]string{
	"ABS", "ACOS", "ADDDATE", "ADDTIME", "AGAINST", "ALL", "AND", "ANY", "AS", "ASCII", "ASIN",
	"ATAN", "ATAN2", "AVG", "BETWEEN", "BIGINT", "BIN", "BINARY", "BIT_AND", "BIT_COUNT",
	"BIT_LENGTH", "BIT_OR", "BIT_XOR", "BY", "CASE", "CAST", "CEIL", "CEILING", "CHAR",
	"CHARACTER_LENGTH", "CHAR_LENGTH", "COALESCE", "COLLATE", "CONCAT", "CONCAT_WS", "CONVERT",
	"CONVERT_TZ", "COS", "COT", "COUNT", "CRC32", "CUME_DIST", "CURDATE", "CURRENT_DATE",
	"CURRENT_TIME", "CURRENT_TIMESTAMP", "CURTIME", "DATE", "DATEDIFF", "DATETIME", "DATE_ADD",
	"DATE_FORMAT", "DATE_SUB", "DAY", "DAYNAME", "DAYOFMONTH", "DAYOFWEEK", "DAYOFYEAR",
	"DECIMAL", "DEGREES", "DENSE_RANK", "DISTINCT", "DIV", "DOUBLE", "ELSE", "ELT", "EXCEPT",
	"EXISTS", "EXP", "EXTRACT", "FIELD", "FIND_IN_SET", "FIRST_VALUE", "FLOAT", "FLOOR", "FORCE",
	"FORMAT", "FROM", "FROM_BASE64", "FROM_DAYS", "FROM_UNIXTIME", "GREATEST", "GROUP_CONCAT",
	"HAVING", "HEX", "HOUR", "IF", "IFNULL", "IGNORE", "IN", "INDEX", "INET6_ATON", "INET6_NTOA",
	"INET_ATON", "INET_NTOA", "INSTR", "INT", "INTEGER", "INTERSECT", "INTERVAL", "IS", "ISNULL",
	"JOIN", "JSON_ARRAY", "JSON_ARRAYAGG", "JSON_CONTAINS", "JSON_CONTAINS_PATH", "JSON_EXTRACT",
	"JSON_KEYS", "JSON_LENGTH", "JSON_OBJECT", "JSON_OBJECTAGG", "JSON_QUOTE", "JSON_TABLE",
	"JSON_TYPE", "JSON_UNQUOTE", "JSON_VALID", "JSON_VALUE", "KEY", "LAG", "LAST_DAY",
	"LAST_VALUE", "LATERAL", "LCASE", "LEAD", "LEAST", "LEFT", "LENGTH", "LIKE", "LN", "LOCATE",
	"LOG", "LOG10", "LOG2", "LOWER", "LPAD", "LTRIM", "MAKEDATE", "MAKETIME", "MATCH", "MAX",
	"MD5", "MICROSECOND", "MID", "MIN", "MINUTE", "MOD", "MONTH", "MONTHNAME", "NCHAR", "NOT",
	"NOW", "NTH_VALUE", "NTILE", "NULLIF", "OCT", "ON", "OR", "ORD", "OVER", "PARTITION",
	"PERCENT_RANK", "PI", "POSITION", "POW", "POWER", "QUARTER", "RADIANS", "RAND", "RANK",
	"REGEXP", "REGEXP_INSTR", "REGEXP_REPLACE", "REGEXP_SUBSTR", "REPEAT", "REVERSE", "RIGHT",
	"RLIKE", "ROUND", "ROW", "ROW_NUMBER", "RPAD", "RTRIM", "SECOND", "SEC_TO_TIME", "SELECT",
	"SHA1", "SHA2", "SIGN", "SIGNED", "SIN", "SLEEP", "SOME", "SPACE", "SQRT", "STDDEV", "STDDEV_POP",
	"STDDEV_SAMP", "STRCMP", "STR_TO_DATE", "SUBDATE", "SUBSTR", "SUBSTRING", "SUBSTRING_INDEX",
	"SUBTIME", "SUM", "SYSDATE", "TAN", "THEN", "TIME", "TIMEDIFF", "TIMESTAMP", "TIMESTAMPADD",
	"TIMESTAMPDIFF", "TIME_FORMAT", "TIME_TO_SEC", "TO_BASE64", "TO_DAYS", "TO_SECONDS", "TRIM",
	"TRUNCATE", "UCASE", "UNHEX", "UNION", "UNIX_TIMESTAMP", "UNSIGNED", "UPPER", "USE", "USING",
	"UTC_DATE", "UTC_TIME", "UTC_TIMESTAMP", "UUID", "VARCHAR", "VARIANCE", "VAR_POP",
	"VAR_SAMP", "WEEK", "WEEKDAY", "WEEKOFYEAR", "WHEN", "WHERE", "XOR", "YEAR", "YEARWEEK",
}

// sessionStmt reports whether query leaves state on its session (see
// [Router.DB]) and so pins the connection to the writer.
func sessionStmt(q string) bool {
	i := skipSpaceAndComments(q, 0)
	if i < 0 || i >= len(q) {
		return false
	}
	w, j := word(q, i)
	for _, k := range [...]string{"SET", "USE", "LOCK", "UNLOCK", "PREPARE", "EXECUTE", "DEALLOCATE",
		"HANDLER", "INSERT", "REPLACE", "BEGIN", "START", "SAVEPOINT", "XA"} {
		if keywordIs(w, k) {
			return true
		}
	}
	if keywordIs(w, "CREATE") || keywordIs(w, "DROP") {
		if k := skipSpaceAndComments(q, j); k > 0 && k < len(q) {
			if w2, _ := word(q, k); keywordIs(w2, "TEMPORARY") {
				return true
			}
		}
	}
	for i = j; i < len(q); {
		var ok bool
		if i, ok = skipToken(q, i); !ok {
			return true // the lexer cannot tell: pinning is the safe side
		} else if i >= len(q) {
			return false
		}
		c := q[i]
		switch {
		case c == '@':
			if i+1 < len(q) && q[i+1] == '@' {
				_, i = word(q, i+2)
				continue
			}
			return true
		case isWordByte(c):
			w, i = word(q, i)
			if keywordIs(w, "GET_LOCK") || keywordIs(w, "RELEASE_LOCK") || keywordIs(w, "RELEASE_ALL_LOCKS") ||
				keywordIs(w, "SQL_CALC_FOUND_ROWS") {
				return true
			}
			continue
		}
		i++
	}
	return false
}

// skipToken returns the index of the first byte at or after i that is not
// whitespace, a comment or a quoted string or identifier; ok is false where
// the lexer cannot tell (an unterminated or sql_mode-dependent quote, an
// executable comment).
func skipToken(q string, i int) (int, bool) {
	for i < len(q) {
		switch c := q[i]; {
		case c == '\'' || c == '"' || c == '`':
			j := quoted(q, i)
			if j < 0 {
				return 0, false
			}
			i = j
		case c == '#' || c == '/' || c == '-' || isSpace(c):
			j := skipSpaceAndComments(q, i)
			if j < 0 {
				return 0, false
			}
			if j == i {
				return i, true
			}
			i = j
		default:
			return i, true
		}
	}
	return i, true
}

// sqlOperationName returns the statement's first keyword in upper case
// ("SELECT", "INSERT", ...) for db.operation.name, skipping leading
// whitespace and comments, or "" when it is not a known keyword. It returns
// constants and does not allocate.
func sqlOperationName(query string) string {
	if i := sqlOperationIndex(query); i > 0 {
		return sqlKeywords[i-1]
	}
	return ""
}

// sqlOperationIndex returns the index in sqlKeywords plus one of the
// statement's first keyword, or 0 when it is not a known keyword.
func sqlOperationIndex(query string) int {
	i := 0
	for i < len(query) {
		c := query[i]
		switch {
		case c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '(' || c == ';':
			i++
		case c == '#' || (c == '-' && i+1 < len(query) && query[i+1] == '-'):
			for i < len(query) && query[i] != '\n' {
				i++
			}
		case c == '/' && i+1 < len(query) && query[i+1] == '*':
			end := i + 2
			for end+1 < len(query) && !(query[end] == '*' && query[end+1] == '/') {
				end++
			}
			i = end + 2
		default:
			j := i
			for j < len(query) && (query[j]|0x20 >= 'a' && query[j]|0x20 <= 'z') {
				j++
			}
			return sqlKeyword(query[i:j])
		}
	}
	return 0
}

var sqlKeywords = [...]string{
	"SELECT", "INSERT", "UPDATE", "DELETE", "REPLACE", "SHOW", "CALL", "WITH", "BEGIN", "START",
	"COMMIT", "ROLLBACK", "SET", "CREATE", "ALTER", "DROP", "TRUNCATE", "EXPLAIN", "DESCRIBE",
	"LOCK", "UNLOCK", "DO", "LOAD", "GRANT", "REVOKE", "USE", "ANALYZE", "OPTIMIZE", "VALUES", "TABLE",
}

func sqlKeyword(w string) int {
	if len(w) < 2 || len(w) > 8 {
		return 0
	}
	for i, k := range sqlKeywords {
		if len(k) == len(w) && asciiEqualFold(k, w) {
			return i + 1
		}
	}
	return 0
}

// sanitizeQuery returns query without its literals, for db.query.text:
// string and numeric literals (and hexadecimal and bit ones) become "?",
// comments are dropped (they may hold values too); identifiers, quoted ones
// included, and placeholders stay. A statement written with placeholders
// comes back unchanged, without allocating.
func sanitizeQuery(q string) string {
	var b []byte // nil until something changes
	last := 0    // q[last:i] is not yet copied into b
	flush := func(i int, repl string) {
		if b == nil {
			b = make([]byte, 0, len(q))
		}
		b = append(b, q[last:i]...)
		b = append(b, repl...)
	}
	prevWord := false
	for i := 0; i < len(q); {
		c := q[i]
		switch {
		case c == '\'' || c == '"':
			j := i + 1
			for j < len(q) {
				if q[j] == '\\' {
					j += 2
					continue
				}
				if q[j] == c {
					if j+1 < len(q) && q[j+1] == c {
						j += 2
						continue
					}
					break
				}
				j++
			}
			j = min(j+1, len(q))
			start := i
			if prevWord && i > 0 && (q[i-1]|0x20 == 'x' || q[i-1]|0x20 == 'b') && (i < 2 || !isWordByte(q[i-2])) {
				start = i - 1 // X'..' and B'..' literals
			}
			flush(start, "?")
			i, last, prevWord = j, j, false
		case c == '`':
			j := i + 1
			for j < len(q) && q[j] != '`' {
				j++
			}
			i, prevWord = min(j+1, len(q)), false
		case c == '#' || (c == '-' && i+1 < len(q) && q[i+1] == '-') || (c == '/' && i+1 < len(q) && q[i+1] == '*'):
			j := i + 2
			if c == '/' {
				for j+1 < len(q) && !(q[j] == '*' && q[j+1] == '/') {
					j++
				}
				j = min(j+2, len(q))
			} else {
				for j < len(q) && q[j] != '\n' {
					j++
				}
			}
			flush(i, " ")
			i, last, prevWord = j, j, false
		case c >= '0' && c <= '9' && !prevWord:
			j := i + 1
			for j < len(q) && (isWordByte(q[j]) || q[j] == '.' ||
				((q[j] == '+' || q[j] == '-') && (q[j-1]|0x20 == 'e'))) {
				j++
			}
			flush(i, "?")
			i, last = j, j
		case c == '.' && i+1 < len(q) && q[i+1] >= '0' && q[i+1] <= '9' && !prevWord:
			j := i + 1
			for j < len(q) && isWordByte(q[j]) {
				j++
			}
			flush(i, "?")
			i, last = j, j
		default:
			prevWord = isWordByte(c)
			i++
		}
	}
	if b == nil {
		return q
	}
	return strings.TrimSpace(string(append(b, q[last:]...)))
}

func asciiEqualFold(upper, s string) bool {
	for i := range len(s) {
		c := s[i]
		if c >= 'a' && c <= 'z' {
			c -= 'a' - 'A'
		}
		if c != upper[i] {
			return false
		}
	}
	return true
}

// stmtMode is one interpretation of quotes by the server: whether a
// backslash escapes in strings (not NO_BACKSLASH_ESCAPES) and whether "..."
// is an identifier (ANSI_QUOTES). The lexer answers only what holds in
// every mode, since a session may change its sql_mode.
type stmtMode struct{ backslash, ansiQuotes bool }

var stmtModes = [...]stmtMode{{true, false}, {false, false}, {true, true}, {false, true}}

// oneStatement reports whether q is exactly one SQL statement for MariaDB's
// multi-statement splitter, in every sql_mode: a ';' outside strings, quoted
// identifiers and comments ends a statement, and after it only whitespace
// and comments may follow. (The server ignores a few other remainders, such
// as a second ';': those are refused too.) Executable comments ("/*!", "/*M!")
// are code: a ';' inside one splits, so it is refused. Anything the lexer
// cannot tell (an unterminated quote or comment, "--" followed by a control
// character, a NUL byte, a comment nested in an executable one) counts as
// more than one.
//
// With args (the driver interpolates "?" placeholders on the client with
// its own lexer) it also refuses texts where that lexer may disagree with
// the server's about what is code: executable comments, comments that
// start with "/*/", and "..." quotes holding a backslash (the driver does
// not know ANSI_QUOTES).
//
// oneStatement does not allocate.
func oneStatement(q string, args bool) bool {
	_, ok := statementEnd(q, args)
	return ok
}

// statementEnd is oneStatement that also returns where the statement ends:
// len(q) when q has no final ';', else the index after the statement's
// last byte of code (before the ';' and what follows it), the same in
// every mode. Text appended after q[:end] and a newline is a statement of
// its own.
func statementEnd(q string, args bool) (int, bool) {
	if strings.IndexByte(q, 0) >= 0 {
		// The server's lexer ends a "#" comment at a NUL byte.
		return 0, false
	}
	end := -1
	for _, m := range stmtModes {
		e, ok := statementEndIn(q, m, args)
		if !ok || (end >= 0 && e != end) {
			return 0, false
		}
		end = e
	}
	return end, true
}

func statementEndIn(q string, m stmtMode, args bool) (end int, ok bool) {
	ended := false // a statement-ending ';' was seen
	exec := false  // inside an executable comment
	for i := 0; i < len(q); {
		c := q[i]
		switch {
		case c == 0:
			return 0, false
		case isSpace(c) || c == ';':
			if c == ';' {
				// A ';' in an executable comment splits; after a
				// statement's ';' the server parses another ';' as
				// the start of a statement ("SELECT 1; ;; --" fails
				// after running SELECT 1).
				if exec || ended {
					return 0, false
				}
				ended = true
			}
			i++
			continue
		case c == '#':
			i = lineEnd(q, i)
			continue
		case c == '-' && i+1 < len(q) && q[i+1] == '-':
			if i+2 == len(q) {
				i = len(q)
				continue
			}
			if d := q[i+2]; isSpace(d) {
				i = lineEnd(q, i)
				continue
			} else if d < ' ' || d == 0x7f {
				return 0, false
			}
		case c == '/' && i+1 < len(q) && q[i+1] == '*':
			j := i + 2
			if j < len(q) && (q[j] == '!' || (q[j] == 'M' && j+1 < len(q) && q[j+1] == '!')) {
				if exec || args {
					return 0, false
				}
				exec = true
				if q[j] == 'M' {
					j++
				}
				i = j + 1
				continue
			}
			if exec || (args && j < len(q) && q[j] == '/') {
				return 0, false
			}
			end := indexFrom(q, "*/", j)
			if end < 0 {
				return 0, false
			}
			i = end + 2
			continue
		case c == '*' && exec && i+1 < len(q) && q[i+1] == '/':
			exec = false
			i += 2
			end = i
			continue
		}
		// Code: anything after a statement's end is a second statement.
		if ended {
			return 0, false
		}
		switch c {
		case '\'', '"', '`':
			j := skipQuoted(q, i, m, args)
			if j < 0 {
				return 0, false
			}
			i = j
		default:
			i++
		}
		end = i
	}
	if !ended {
		end = len(q)
	}
	return end, !exec
}

// skipQuoted returns the index after the string or quoted identifier at i
// in mode m, or -1 if it is unterminated (or, with args, a "..." token that
// holds a backslash).
func skipQuoted(q string, i int, m stmtMode, args bool) int {
	c := q[i]
	escapes := m.backslash && (c == '\'' || (c == '"' && !m.ansiQuotes))
	for j := i + 1; j < len(q); j++ {
		switch q[j] {
		case '\\':
			if c == '"' && args {
				return -1
			}
			if escapes {
				j++
			}
		case c:
			if j+1 < len(q) && q[j+1] == c {
				j++
				continue
			}
			return j + 1
		}
	}
	return -1
}

// stmtCache remembers, per statement text, where its one statement ends
// (see oneStatement), like classCache for readOnly. The zero value is
// ready to use.
type stmtCache struct {
	m [2]sync.Map // [args] string -> int (-1: not one statement)
	n classCache  // only its counter is used
}

// end returns the index after the last code byte of q's statement, and
// whether q is one statement (with args: also interpolation-safe).
func (c *stmtCache) end(q string, args bool) (int, bool) {
	a := 0
	if args {
		a = 1
	}
	if v, ok := c.m[a].Load(q); ok {
		e := v.(int)
		return e, e >= 0
	}
	e, ok := statementEnd(q, args)
	if !ok {
		e = -1
	}
	if c.n.n.Load() < classCacheSize {
		if _, loaded := c.m[a].LoadOrStore(q, e); !loaded {
			c.n.n.Add(1)
		}
	}
	return e, ok
}
