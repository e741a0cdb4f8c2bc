package dbrouter

import (
	"encoding/hex"
	"errors"
	"slices"
	"strconv"
	"strings"
)

// position is a replication position: for each replication stream (a
// MariaDB GTID domain, a MySQL source UUID, or the heartbeat counter) the
// highest sequence number that is known to be applied (for a reader) or
// committed (for the writer). A position is immutable once built and is
// shared by pointer.
//
// a covers b when, for every stream of b, a's sequence number is at least
// b's: a server at a has applied everything b describes. Sequence numbers
// grow monotonically per stream (gtid_strict_mode on MariaDB, GTID
// auto-position on MySQL), which is what makes the comparison exact.
type position struct {
	parts []posPart // sorted by key, keys unique
}

// posPart is one stream of a position. key is a MariaDB domain id in decimal,
// a MySQL server UUID as 16 raw bytes, or "hb" for the heartbeat.
type posPart struct {
	key string
	seq uint64
}

var errBadPosition = errors.New("dbrouter: malformed replication position")

// empty reports whether p requires nothing.
func (p *position) empty() bool { return p == nil || len(p.parts) == 0 }

// covers reports whether p has applied everything q describes. An empty q is
// covered by anything.
func (p *position) covers(q *position) bool {
	if q.empty() {
		return true
	}
	if p.empty() {
		return false
	}
	i := 0
	for _, qp := range q.parts {
		for i < len(p.parts) && p.parts[i].key < qp.key {
			i++
		}
		if i == len(p.parts) || p.parts[i].key != qp.key || p.parts[i].seq < qp.seq {
			return false
		}
	}
	return true
}

// merge returns the least position covering both p and q. It returns p or q
// itself when one already covers the other (no allocation).
func merge(p, q *position) *position {
	switch {
	case q.empty():
		return p
	case p.empty():
		return q
	case p.covers(q):
		return p
	case q.covers(p):
		return q
	}
	out := &position{parts: make([]posPart, 0, len(p.parts)+len(q.parts))}
	i, j := 0, 0
	for i < len(p.parts) || j < len(q.parts) {
		switch {
		case j == len(q.parts) || (i < len(p.parts) && p.parts[i].key < q.parts[j].key):
			out.parts = append(out.parts, p.parts[i])
			i++
		case i == len(p.parts) || q.parts[j].key < p.parts[i].key:
			out.parts = append(out.parts, q.parts[j])
			j++
		default:
			pp := p.parts[i]
			pp.seq = max(pp.seq, q.parts[j].seq)
			out.parts = append(out.parts, pp)
			i++
			j++
		}
	}
	return out
}

// newPosition sorts parts, keeping the highest sequence number of each key.
func newPosition(parts []posPart) *position {
	slices.SortFunc(parts, func(a, b posPart) int { return strings.Compare(a.key, b.key) })
	out := parts[:0]
	for _, pp := range parts {
		if n := len(out); n > 0 && out[n-1].key == pp.key {
			out[n-1].seq = max(out[n-1].seq, pp.seq)
			continue
		}
		out = append(out, pp)
	}
	return &position{parts: out}
}

// String returns the canonical text form, "key:seq" joined by commas, where
// key is the MariaDB domain id, the MySQL source UUID (with dashes) or "hb".
// parsePositionText reads it back.
func (p *position) String() string {
	if p.empty() {
		return ""
	}
	var b strings.Builder
	for i, pp := range p.parts {
		if i > 0 {
			b.WriteByte(',')
		}
		if len(pp.key) == 16 {
			b.WriteString(formatUUID(pp.key))
		} else {
			b.WriteString(pp.key)
		}
		b.WriteByte(':')
		b.WriteString(strconv.FormatUint(pp.seq, 10))
	}
	return b.String()
}

// parsePositionText parses the canonical text form of [position.String].
func parsePositionText(s string) (*position, error) {
	if s == "" {
		return &position{}, nil
	}
	var parts []posPart
	for f := range strings.SplitSeq(s, ",") {
		k, v, ok := strings.Cut(f, ":")
		if !ok {
			return nil, errBadPosition
		}
		seq, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			return nil, errBadPosition
		}
		key, err := parseKey(k)
		if err != nil {
			return nil, err
		}
		parts = append(parts, posPart{key: key, seq: seq})
	}
	return newPosition(parts), nil
}

// parseKey validates a stream key of the text form.
func parseKey(k string) (string, error) {
	switch {
	case k == "hb":
		return k, nil
	case len(k) == 36:
		return parseUUID(k)
	case k != "" && len(k) <= 10:
		if _, err := strconv.ParseUint(k, 10, 32); err != nil {
			return "", errBadPosition
		}
		if len(k) > 1 && k[0] == '0' {
			return "", errBadPosition // one spelling per domain
		}
		return k, nil
	}
	return "", errBadPosition
}

// parseUUID turns "3e11fa47-71ca-11e1-9e33-c80aa9429562" into 16 raw bytes.
func parseUUID(s string) (string, error) {
	if len(s) != 36 || s[8] != '-' || s[13] != '-' || s[18] != '-' || s[23] != '-' {
		return "", errBadPosition
	}
	var raw [16]byte
	h := s[0:8] + s[9:13] + s[14:18] + s[19:23] + s[24:36]
	if _, err := hex.Decode(raw[:], []byte(h)); err != nil {
		return "", errBadPosition
	}
	return string(raw[:]), nil
}

func formatUUID(raw string) string {
	h := hex.EncodeToString([]byte(raw))
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:32]
}

// parseMariaDBGTIDList parses a MariaDB GTID list such as "0-1-8,1-2-5" (the
// value of @@last_gtid, @@gtid_binlog_pos, @@gtid_current_pos or
// @@gtid_slave_pos). The server id is dropped: with gtid_strict_mode the
// sequence number alone orders the transactions of a domain.
func parseMariaDBGTIDList(s string) (*position, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return &position{}, nil
	}
	var parts []posPart
	for f := range strings.SplitSeq(s, ",") {
		f = strings.TrimSpace(f)
		d, rest, ok := strings.Cut(f, "-")
		if !ok {
			return nil, errBadPosition
		}
		_, seqs, ok := strings.Cut(rest, "-")
		if !ok {
			return nil, errBadPosition
		}
		dom, err := strconv.ParseUint(d, 10, 32)
		if err != nil {
			return nil, errBadPosition
		}
		seq, err := strconv.ParseUint(seqs, 10, 64)
		if err != nil {
			return nil, errBadPosition
		}
		parts = append(parts, posPart{key: strconv.FormatUint(dom, 10), seq: seq})
	}
	return newPosition(parts), nil
}

// parseMySQLGTIDSet parses a MySQL GTID set such as
// "3e11fa47-71ca-11e1-9e33-c80aa9429562:1-5:7,4f...:1-3" (the value of
// @@global.gtid_executed). With prefix true (a reader's applied set) each
// UUID maps to the end of its interval starting at 1, so a gap in the set
// makes the reader look further behind than it is, never ahead. With prefix
// false (the writer's committed set) each UUID maps to its highest number,
// which is at or after every transaction in the set.
func parseMySQLGTIDSet(s string, prefix bool) (*position, error) {
	s = strings.Join(strings.Fields(s), "") // the server inserts newlines
	if s == "" {
		return &position{}, nil
	}
	var parts []posPart
	for f := range strings.SplitSeq(s, ",") {
		fields := strings.Split(f, ":")
		if len(fields) < 2 {
			return nil, errBadPosition
		}
		key, err := parseUUID(strings.ToLower(fields[0]))
		if err != nil {
			return nil, err
		}
		var seq uint64
		for i, iv := range fields[1:] {
			lo, hi, isRange := strings.Cut(iv, "-")
			a, err := strconv.ParseUint(lo, 10, 64)
			if err != nil {
				return nil, errBadPosition
			}
			b := a
			if isRange {
				if b, err = strconv.ParseUint(hi, 10, 64); err != nil || b < a {
					return nil, errBadPosition
				}
			}
			if prefix {
				if i == 0 && a == 1 {
					seq = b
				}
				continue
			}
			seq = max(seq, b)
		}
		parts = append(parts, posPart{key: key, seq: seq})
	}
	return newPosition(parts), nil
}
