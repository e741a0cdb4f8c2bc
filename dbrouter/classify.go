package dbrouter

import (
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

// readOnly reports whether the statement q is provably read-only, so that a
// reader may run it. It is conservative: anything it does not fully
// understand is a write and goes to the writer.
//
// Read-only means: after leading whitespace and comments, the statement
// starts with SELECT, SHOW, WITH or "(" followed by SELECT, and nowhere
// outside string literals, quoted identifiers and comments contains
//   - locking or writing clauses: FOR (except FOR SYSTEM_TIME), LOCK (LOCK
//     IN SHARE MODE), INTO (SELECT ... INTO var / OUTFILE / DUMPFILE),
//     INSERT, UPDATE, DELETE, REPLACE, CALL (data-modifying CTEs);
//   - functions whose effect or answer belongs to the writer's session or
//     server: GET_LOCK, RELEASE_LOCK, RELEASE_ALL_LOCKS, IS_FREE_LOCK,
//     IS_USED_LOCK, NEXTVAL, SETVAL, LASTVAL, NEXT VALUE FOR, PREVIOUS VALUE
//     FOR, LAST_INSERT_ID, FOUND_ROWS, ROW_COUNT, MASTER_GTID_WAIT,
//     MASTER_POS_WAIT, SOURCE_POS_WAIT, WAIT_FOR_EXECUTED_GTID_SET,
//     WAIT_UNTIL_SQL_THREAD_AFTER_GTIDS;
//   - a user-variable assignment (":="), a second statement (";" followed
//     by anything but whitespace or comments), or an executable comment
//     ("/*!" or "/*M!", whose contents the server runs).
//
// An unterminated string, identifier or comment makes the statement a write.
// readOnly does not allocate.
func readOnly(q string) bool {
	i := skipSpaceAndComments(q, 0)
	if i < 0 {
		return false
	}
	if i < len(q) && q[i] == '(' {
		i = skipSpaceAndComments(q, i+1)
		if i < 0 {
			return false
		}
		w, _ := word(q, i)
		if !keywordIs(w, "SELECT") {
			return false
		}
	} else {
		w, _ := word(q, i)
		switch {
		case keywordIs(w, "SELECT"), keywordIs(w, "WITH"):
		case keywordIs(w, "SHOW"):
			return singleStatement(q, i+len(w))
		default:
			return false
		}
	}
	return scanReadOnly(q, i)
}

// skipSpaceAndComments returns the index of the first byte at or after i that
// is neither whitespace nor inside a comment, or -1 if a comment is
// unterminated or executable.
func skipSpaceAndComments(q string, i int) int {
	for i < len(q) {
		c := q[i]
		switch {
		case c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v':
			i++
		case c == '#':
			i = lineEnd(q, i)
		case c == '-' && i+2 < len(q) && q[i+1] == '-' && isSpace(q[i+2]):
			i = lineEnd(q, i)
		case c == '-' && i+2 == len(q) && q[i+1] == '-':
			return len(q)
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

// singleStatement reports whether q from i on holds no second statement and
// no unterminated or executable part.
func singleStatement(q string, i int) bool {
	for i < len(q) {
		var ok bool
		if i, ok = skipToken(q, i); !ok {
			return false
		}
		if i < len(q) && q[i] == ';' {
			j := skipSpaceAndComments(q, i+1)
			return j == len(q)
		}
		if i < len(q) {
			i++
		}
	}
	return true
}

// skipToken skips comments, string literals and quoted identifiers at i
// (any number of them) and returns the index of the next other byte; ok is
// false if one is unterminated or an executable comment.
func skipToken(q string, i int) (int, bool) {
	for i < len(q) {
		switch c := q[i]; {
		case c == '\'' || c == '"' || c == '`':
			j := i + 1
			for {
				if j >= len(q) {
					return 0, false
				}
				if q[j] == '\\' && c != '`' {
					j += 2
					continue
				}
				if q[j] == c {
					if j+1 < len(q) && q[j+1] == c { // doubled quote
						j += 2
						continue
					}
					break
				}
				j++
			}
			i = j + 1
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

// scanReadOnly checks the words of a SELECT or WITH statement from i on.
func scanReadOnly(q string, i int) bool {
	afterFor := false
	for i < len(q) {
		var ok bool
		if i, ok = skipToken(q, i); !ok {
			return false
		}
		if i >= len(q) {
			break
		}
		c := q[i]
		switch {
		case c == ';':
			return skipSpaceAndComments(q, i+1) == len(q)
		case c == ':' && i+1 < len(q) && q[i+1] == '=':
			return false
		case c == '@' && i+1 < len(q) && q[i+1] == '@':
			// A system variable reads the reader's own value: fine.
			i += 2
			_, i = word(q, i)
			continue
		case isWordByte(c):
			var w string
			w, i = word(q, i)
			if afterFor {
				if !keywordIs(w, "SYSTEM_TIME") {
					return false
				}
				afterFor = false
				continue
			}
			if keywordIs(w, "FOR") {
				afterFor = true
				continue
			}
			if deniedWord(w) {
				return false
			}
			continue
		}
		afterFor = false
		i++
	}
	return !afterFor
}

// deniedWords are the words that make a SELECT a write or session-bound.
// See readOnly.
var deniedWords = [...]string{
	"LOCK", "INTO", "INSERT", "UPDATE", "DELETE", "REPLACE", "CALL",
	"GET_LOCK", "RELEASE_LOCK", "RELEASE_ALL_LOCKS", "IS_FREE_LOCK", "IS_USED_LOCK",
	"NEXTVAL", "SETVAL", "LASTVAL", "NEXT", "PREVIOUS",
	"LAST_INSERT_ID", "FOUND_ROWS", "ROW_COUNT",
	"MASTER_GTID_WAIT", "MASTER_POS_WAIT", "SOURCE_POS_WAIT",
	"WAIT_FOR_EXECUTED_GTID_SET", "WAIT_UNTIL_SQL_THREAD_AFTER_GTIDS",
}

const maxDeniedLen = 33

// deniedFirst[len(w)] has bit c-'A' set when a denied word of that length
// starts with the letter c: a one-load filter that most words of a query
// (FROM, WHERE, column names) fail, so the full comparison rarely runs.
var deniedFirst = func() (t [maxDeniedLen + 1]uint32) {
	for _, w := range deniedWords {
		t[len(w)] |= 1 << (w[0] - 'A')
	}
	return t
}()

// deniedWord reports whether w (any case) is one of deniedWords.
func deniedWord(w string) bool {
	if len(w) < 4 || len(w) > maxDeniedLen {
		return false
	}
	c := w[0]
	if c >= 'a' && c <= 'z' {
		c -= 'a' - 'A'
	}
	if c < 'A' || c > 'Z' || deniedFirst[len(w)]&(1<<(c-'A')) == 0 {
		return false
	}
	for _, d := range deniedWords {
		if keywordIs(w, d) {
			return true
		}
	}
	return false
}
