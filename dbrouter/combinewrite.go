package dbrouter

import (
	"context"
	"database/sql/driver"
	"io"
	"strings"
	"sync"
	"time"
)

// combinable reports whether the autocommit write q (one statement, no
// final ';') can be combined with its position read (see
// mariaDialect.combine): the Result rebuilt from ROW_COUNT() and
// LAST_INSERT_ID() must be the driver's own, and the statement must not
// read the LAST_INSERT_ID() that the text's head resets to 0.
//
// UPDATE and DELETE qualify (their OK packet's insert id is 0 or the
// argument of a LAST_INSERT_ID(expr) they called, which LAST_INSERT_ID()
// then returns). An INSERT or REPLACE reports in its OK packet the first
// AUTO_INCREMENT value it generated, else the argument of a
// LAST_INSERT_ID(expr) it called, else, on a table with an AUTO_INCREMENT
// column, that column's value in the last row it wrote (given explicitly,
// by ON DUPLICATE KEY UPDATE, by a SELECT or by a trigger), which no
// function returns. So an INSERT or REPLACE qualifies only when that last
// case is ruled out: its table (see tableFacts) is a base table without
// triggers and either has no AUTO_INCREMENT column, or the statement
// names its columns, leaves that column out, and takes its rows from
// VALUES or SET, without ON DUPLICATE KEY UPDATE or SELECT (every row then
// generates a value). Anything the parser does not recognise takes the
// separate position read, which is always right.
func (c *writeConn) combinable(ctx context.Context, q string) bool {
	i := skipSpaceAndComments(q, 0)
	if i < 0 || i >= len(q) {
		return false
	}
	w, _ := word(q, i)
	switch {
	case keywordIs(w, "UPDATE"), keywordIs(w, "DELETE"):
		return !readsLastInsertID(q)
	case keywordIs(w, "INSERT"), keywordIs(w, "REPLACE"):
		return c.rt.cfg.naiveInsertCombine || c.combinableInsert(ctx, q)
	}
	return false
}

// combinableInsert is combinable for an INSERT or REPLACE q.
func (c *writeConn) combinableInsert(ctx context.Context, q string) bool {
	if c.session || readsLastInsertID(q) {
		return false
	}
	st, ok := parseInsert(q)
	if !ok {
		return false
	}
	if st.schema == "" {
		if c.schema == "" {
			return false
		}
		st.schema = c.schema
	}
	f, ok := c.rt.tables.get(st.schema, st.table, time.Now())
	if !ok {
		gen := c.rt.tables.generation()
		var err error
		if f, err = c.learnTable(ctx, st.schema, st.table); err != nil {
			return false
		}
		c.rt.tables.put(st.schema, st.table, f, gen)
	}
	if !f.combinable {
		return false
	}
	if f.autoInc == "" {
		return true
	}
	if !st.simple {
		return false
	}
	for _, col := range st.cols {
		if strings.EqualFold(col, f.autoInc) {
			return false
		}
	}
	return true
}

// tableFactsQuery reads what combinableInsert needs of one table: one row
// per table of that name the session sees (a temporary table of the
// session as well as the base table), with its type, the number of
// triggers on it and its AUTO_INCREMENT column. (MariaDB lists a table's
// triggers to any user with a privilege on the table, without their body
// unless it holds TRIGGER; checked on 10.11.) The arguments are the
// schema and the table, three times.
const tableFactsQuery = "SELECT t.TABLE_NAME, t.TABLE_TYPE, " +
	"(SELECT COUNT(*) FROM information_schema.TRIGGERS g WHERE g.EVENT_OBJECT_SCHEMA = ? AND g.EVENT_OBJECT_TABLE = ?), " +
	"(SELECT GROUP_CONCAT(c.COLUMN_NAME) FROM information_schema.COLUMNS c WHERE c.TABLE_SCHEMA = ? AND c.TABLE_NAME = ? " +
	"AND c.EXTRA LIKE '%auto_increment%') " +
	"FROM information_schema.TABLES t WHERE t.TABLE_SCHEMA = ? AND t.TABLE_NAME = ?"

// learnTable reads the facts of schema.table on the connection (one round
// trip, paid by the first combinable-looking INSERT of a table and again
// when its facts are older than tableFactsMaxAge).
func (c *writeConn) learnTable(ctx context.Context, schema, table string) (tableFacts, error) {
	q, ok := c.Conn.(driver.QueryerContext)
	if !ok {
		return tableFacts{}, driver.ErrSkip
	}
	args := make([]driver.NamedValue, 6)
	for i := range args {
		args[i] = driver.NamedValue{Ordinal: i + 1, Value: schema}
		if i%2 == 1 {
			args[i].Value = table
		}
	}
	rows, err := q.QueryContext(ctx, tableFactsQuery, args)
	if err != nil {
		return tableFacts{}, err
	}
	defer rows.Close()
	f := tableFacts{learned: time.Now()}
	vals := make([]driver.Value, 4)
	n := 0
	for {
		if err := rows.Next(vals); err == io.EOF {
			break
		} else if err != nil {
			return tableFacts{}, err
		}
		n++
		name, _ := valueText(vals[0])
		typ, _ := valueText(vals[1])
		trig, terr := valueInt(vals[2])
		ai, _ := valueText(vals[3])
		// Table names compare as the file system does; the statement's
		// name must be the stored one exactly.
		f.combinable = n == 1 && name == table && typ == "BASE TABLE" && terr == nil && trig == 0 && !strings.Contains(ai, ",")
		f.autoInc = ai
	}
	if n != 1 {
		f.combinable = false
	}
	return f, nil
}

// tableFacts is what the router knows of one table for combining INSERTs.
type tableFacts struct {
	// combinable: a base table (not a view, a sequence, a system-versioned
	// or temporary table) without triggers.
	combinable bool
	autoInc    string    // the AUTO_INCREMENT column, "" if none
	learned    time.Time // when it was read
}

// tableFactsMaxAge bounds how long the router trusts what it learned of a
// table: a change made by another client (an ALTER TABLE that adds an
// AUTO_INCREMENT column, a new trigger) is seen after at most this long.
// A DDL statement sent through the router forgets every table at once.
const tableFactsMaxAge = 30 * time.Second

// tableCacheSize bounds the number of tables the router remembers.
const tableCacheSize = 1024

// tableCache holds tableFacts per schema and table. The zero value is
// ready to use.
type tableCache struct {
	mu  sync.Mutex // protects m and gen
	m   map[[2]string]tableFacts
	gen uint64 // incremented by forget
}

// get returns the facts of schema.table if they are at most
// tableFactsMaxAge old at now.
func (c *tableCache) get(schema, table string, now time.Time) (tableFacts, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	f, ok := c.m[[2]string{schema, table}]
	if !ok || now.Sub(f.learned) > tableFactsMaxAge || now.Before(f.learned) {
		return tableFacts{}, false
	}
	return f, true
}

// generation returns the number of forgets so far: facts learned after it
// are kept only if no forget happened meanwhile.
func (c *tableCache) generation() uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.gen
}

// put remembers f unless the cache was forgotten since generation gen. A
// full cache drops one table to make room.
func (c *tableCache) put(schema, table string, f tableFacts, gen uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if gen != c.gen {
		return
	}
	if c.m == nil {
		c.m = make(map[[2]string]tableFacts)
	}
	k := [2]string{schema, table}
	if _, ok := c.m[k]; !ok && len(c.m) >= tableCacheSize {
		for old := range c.m {
			delete(c.m, old)
			break
		}
	}
	c.m[k] = f
}

// forget drops every table's facts (after DDL sent through the router).
func (c *tableCache) forget() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.gen++
	clear(c.m)
}

// noteStatement looks at the first word of every statement a combining
// write connection runs: DDL makes the router forget what it knows of
// tables, and any statement that may change what an unqualified or even a
// qualified table name means on this session (USE, CREATE TEMPORARY TABLE,
// a CALL, EXECUTE or compound statement that might run them) marks the
// session so that its INSERTs are no longer combined.
func (c *writeConn) noteStatement(q string) {
	i := skipSpaceAndComments(q, 0)
	if i < 0 || i >= len(q) {
		return
	}
	w, j := word(q, i)
	switch {
	case keywordIs(w, "ALTER"), keywordIs(w, "DROP"), keywordIs(w, "RENAME"):
		c.rt.tables.forget()
	case keywordIs(w, "CREATE"):
		c.rt.tables.forget()
		c.session = true
	case keywordIs(w, "BEGIN"):
		if k := skipSpaceAndComments(q, j); k < 0 || (k < len(q) && isWordByte(q[k])) {
			c.session = true // BEGIN NOT ATOMIC ... END, or BEGIN WORK
		}
	case !inSorted(plainFirstWords[:], w):
		c.session = true
	}
}

// plainFirstWords are the first words of statements that cannot change
// what a table name means on their session (sorted).
var plainFirstWords = [...]string{
	"ANALYZE", "CHECK", "CHECKSUM", "COMMIT", "DELETE", "DESC", "DESCRIBE", "DO", "EXPLAIN", "FLUSH",
	"GRANT", "INSERT", "KILL", "LOCK", "OPTIMIZE", "RELEASE", "REPLACE", "REVOKE", "ROLLBACK", "SAVEPOINT",
	"SELECT", "SET", "SHOW", "START", "TABLE", "TRUNCATE", "UNLOCK", "UPDATE", "VALUES", "WITH", "XA",
}

// readsLastInsertID reports whether q may read the session's
// LAST_INSERT_ID() (which a combined write resets before the statement):
// a LAST_INSERT_ID without an argument, @@identity or @@last_insert_id.
// Any word LAST_INSERT_ID not followed by "(" and an argument, or IDENTITY,
// counts, and so does a text the lexer cannot read.
func readsLastInsertID(q string) bool {
	if !containsFold(q, "LAST_INSERT_ID") && !containsFold(q, "IDENTITY") {
		return false // whatever the lexer would make of the text
	}
	for i := 0; ; {
		var ok bool
		if i, ok = skipToken(q, i); !ok {
			return true
		}
		if i >= len(q) {
			return false
		}
		if !isWordByte(q[i]) {
			i++
			continue
		}
		w, j := word(q, i)
		i = j
		if keywordIs(w, "IDENTITY") {
			return true
		}
		if !keywordIs(w, "LAST_INSERT_ID") {
			continue
		}
		k, ok := skipToken(q, j)
		if !ok || k >= len(q) || q[k] != '(' {
			return true
		}
		if k, ok = skipToken(q, k+1); !ok || k >= len(q) || q[k] == ')' {
			return true
		}
	}
}

// containsFold reports whether q contains the upper-case ASCII word w in
// any case.
func containsFold(q, w string) bool {
	for i := 0; i+len(w) <= len(q); i++ {
		if asciiEqualFold(w, q[i:i+len(w)]) {
			return true
		}
	}
	return false
}

// insertStmt is what parseInsert finds in an INSERT or REPLACE.
type insertStmt struct {
	schema, table string   // schema "" when the name is unqualified
	cols          []string // the named columns (column list or SET), nil if none
	// simple: columns named, rows from VALUES/VALUE or a SET list, and no
	// ON DUPLICATE KEY UPDATE, SELECT or RETURNING anywhere in the text.
	simple bool
}

// parseInsert reads INSERT [LOW_PRIORITY | HIGH_PRIORITY] [IGNORE] [INTO]
// tbl ... and REPLACE [LOW_PRIORITY] [INTO] tbl .... ok is false for any
// other statement, for DELAYED, PARTITION and RETURNING, and for anything
// the lexer cannot read.
func parseInsert(q string) (st insertStmt, ok bool) {
	p := insertParser{q: q}
	w := p.word()
	if !keywordIs(w, "INSERT") && !keywordIs(w, "REPLACE") {
		return st, false
	}
	w = p.word()
	for keywordIs(w, "LOW_PRIORITY") || keywordIs(w, "HIGH_PRIORITY") || keywordIs(w, "IGNORE") {
		w = p.word()
	}
	if keywordIs(w, "DELAYED") {
		return st, false
	}
	if keywordIs(w, "INTO") {
		w = p.word()
	}
	if p.bad {
		return st, false
	}
	// w is the table name's first part, or "" if it is quoted.
	name, ok := p.ident(w)
	if !ok {
		return st, false
	}
	st.table = name
	if p.peek() == '.' {
		p.i++
		st.schema = st.table
		if st.table, ok = p.ident(p.word()); !ok {
			return st, false
		}
	}
	simple := false
	switch c := p.peek(); {
	case c == '(':
		// A column list, unless a parenthesised SELECT follows.
		save := p.i
		p.i++
		if w := p.word(); keywordIs(w, "SELECT") || keywordIs(w, "WITH") || keywordIs(w, "VALUES") ||
			keywordIs(w, "TABLE") || p.peek() == '(' {
			p.i = save
			break
		}
		p.i = save + 1
		for {
			col, ok := p.column()
			if !ok {
				return st, false
			}
			st.cols = append(st.cols, col)
			if c := p.peek(); c == ',' {
				p.i++
				continue
			} else if c == ')' {
				p.i++
				break
			}
			return st, false
		}
		w := p.word()
		simple = keywordIs(w, "VALUES") || keywordIs(w, "VALUE")
	case isWordByte(c):
		w := p.word()
		switch {
		case keywordIs(w, "SET"):
			start := p.i
			cols, ok := p.setColumns()
			if !ok {
				return st, false
			}
			st.cols, simple = cols, true
			p.i = start // the expressions are scanned below
		case keywordIs(w, "VALUES"), keywordIs(w, "VALUE"), keywordIs(w, "SELECT"), keywordIs(w, "WITH"), keywordIs(w, "TABLE"):
		default:
			return st, false
		}
	default:
		return st, false
	}
	// The rest of the text: RETURNING anywhere refuses the statement;
	// ON DUPLICATE KEY UPDATE or SELECT anywhere makes it not simple.
	for {
		i, ok := skipToken(q, p.i)
		if !ok {
			return st, false
		}
		if i >= len(q) {
			break
		}
		if !isWordByte(q[i]) {
			p.i = i + 1
			continue
		}
		w, j := word(q, i)
		p.i = j
		switch {
		case keywordIs(w, "RETURNING"), keywordIs(w, "PARTITION"):
			return st, false
		case keywordIs(w, "DUPLICATE"), keywordIs(w, "SELECT"):
			simple = false
		}
	}
	st.simple = simple && len(st.cols) > 0
	return st, true
}

// insertParser walks an INSERT's text token by token. bad is set once a
// token cannot be read.
type insertParser struct {
	q   string
	i   int
	bad bool
}

// peek returns the next byte of code after whitespace and comments (0 at
// the end or when the lexer cannot tell).
func (p *insertParser) peek() byte {
	i := skipSpaceAndComments(p.q, p.i)
	if i < 0 {
		p.bad = true
		return 0
	}
	p.i = i
	if i >= len(p.q) {
		return 0
	}
	return p.q[i]
}

// word returns the next unquoted word ("" if the next token is not one).
func (p *insertParser) word() string {
	c := p.peek()
	if p.bad || !isWordByte(c) {
		return ""
	}
	w, j := word(p.q, p.i)
	p.i = j
	return w
}

// ident returns an identifier whose unquoted form w was just read, or, if
// w is "", reads a `quoted` one. Unquoted names must be ASCII (the lexer
// of the server and this one agree on those) and not start with a digit.
func (p *insertParser) ident(w string) (string, bool) {
	if p.bad {
		return "", false
	}
	if w != "" {
		for i := 0; i < len(w); i++ {
			if w[i] >= 0x80 {
				return "", false
			}
		}
		return w, !isDigit(w[0])
	}
	if p.peek() != '`' {
		return "", false
	}
	j := quoted(p.q, p.i)
	if j < 0 {
		return "", false
	}
	name := strings.ReplaceAll(p.q[p.i+1:j-1], "``", "`")
	p.i = j
	return name, name != ""
}

// column reads a column name, possibly qualified (tbl.col, db.tbl.col),
// and returns its last part.
func (p *insertParser) column() (string, bool) {
	col, ok := p.ident(p.word())
	for ok && p.peek() == '.' {
		p.i++
		col, ok = p.ident(p.word())
	}
	return col, ok
}

// setColumns reads "col = expr, ..." after SET and returns the columns.
func (p *insertParser) setColumns() ([]string, bool) {
	var cols []string
	for {
		col, ok := p.column()
		if !ok || p.peek() != '=' {
			return nil, false
		}
		p.i++
		cols = append(cols, col)
		depth := 0
	expr:
		for {
			i, ok := skipToken(p.q, p.i)
			if !ok {
				return nil, false
			}
			p.i = i
			if i >= len(p.q) {
				return cols, true
			}
			switch c := p.q[i]; {
			case c == '(':
				depth++
			case c == ')':
				if depth == 0 {
					return nil, false
				}
				depth--
			case c == ',' && depth == 0:
				p.i++
				break expr
			case isWordByte(c):
				w, j := word(p.q, i)
				if depth == 0 && (keywordIs(w, "ON") || keywordIs(w, "RETURNING")) {
					return cols, true
				}
				p.i = j
				continue
			}
			p.i++
		}
	}
}

// specSchema returns the database of spec's DSN ("" for a Connector).
func specSchema(spec endpointSpec) string {
	if spec.mc == nil {
		return ""
	}
	return spec.mc.DBName
}
