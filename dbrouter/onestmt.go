package dbrouter

import (
	"errors"
	"strings"
)

// errMultiStatement is returned for a user text that holds more than one
// statement (or whose statement count the lexer cannot tell) when it would
// run on a connection that executes several statements of one text (see
// [Config.DisableCombinedStatements]).
var errMultiStatement = errors.New("dbrouter: query holds more than one statement " +
	"(or text whose extent depends on the session's sql_mode); send one statement per call, " +
	"or set multiStatements=true in the DSN to allow several")

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
