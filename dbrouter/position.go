package dbrouter

import (
	"bytes"
	"cmp"
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
	parts []posPart // sorted by key (streamKey.compare), keys unique
}

// posPart is one stream of a position.
type posPart struct {
	key streamKey
	seq uint64
}

// streamKind says which dialect a stream key belongs to.
type streamKind uint8

const (
	streamDomain streamKind = iota // MariaDB GTID domain id
	streamUUID                     // MySQL source UUID
	streamBeat                     // the heartbeat counter of one writer
)

// streamKey names a replication stream. It is typed, not text: the wait
// queries format a domain with strconv and a UUID from its 16 bytes, so no
// byte of a key's outside spelling can reach SQL, and a key of one dialect
// cannot be mistaken for another's.
type streamKey struct {
	kind   streamKind
	domain uint32   // streamDomain: the domain id; streamBeat: the writer's server id (0: unknown)
	uuid   [16]byte // streamUUID
}

func domainKey(d uint32) streamKey { return streamKey{kind: streamDomain, domain: d} }
func uuidKey(u [16]byte) streamKey { return streamKey{kind: streamUUID, uuid: u} }

// beatKey is the heartbeat counter as written by the writer with the given
// @@server_id (0 when the heartbeat table does not say). Counters of
// different writers are different streams: after a failover the new
// writer's counter, which may restart below the old one's (an unplanned
// global failover loses the last beats), is never compared with the old.
func beatKey(writer uint32) streamKey { return streamKey{kind: streamBeat, domain: writer} }

// compare orders keys: by kind, then domain id, then UUID bytes.
func (k streamKey) compare(o streamKey) int {
	switch {
	case k.kind != o.kind:
		return cmp.Compare(k.kind, o.kind)
	case k.kind == streamDomain, k.kind == streamBeat:
		return cmp.Compare(k.domain, o.domain)
	case k.kind == streamUUID:
		return bytes.Compare(k.uuid[:], o.uuid[:])
	}
	return 0
}

// appendText appends the key's text form: the domain id in decimal, the
// UUID with dashes, or "hb" followed by the writer's server id (if known).
func (k streamKey) appendText(b []byte) []byte {
	switch k.kind {
	case streamDomain:
		return strconv.AppendUint(b, uint64(k.domain), 10)
	case streamUUID:
		return appendUUID(b, k.uuid)
	}
	b = append(b, "hb"...)
	if k.domain != 0 {
		b = strconv.AppendUint(b, uint64(k.domain), 10)
	}
	return b
}

// maxPositionParts bounds the streams of a position read from outside (a
// token, a cache item, the shared watermark store): more GTID domains or
// source UUIDs than this are not a real fleet's.
const maxPositionParts = 64

var errBadPosition = errors.New("dbrouter: malformed replication position")

// errForeignPosition is returned for a position that parses but names a
// stream of another dialect (a MySQL UUID under MariaDB, say).
var errForeignPosition = errors.New("dbrouter: replication position of another dialect")

// empty reports whether p requires nothing.
func (p *position) empty() bool { return p == nil || len(p.parts) == 0 }

// only reports whether every stream of p is of kind k.
func (p *position) only(k streamKind) bool {
	if p == nil {
		return true
	}
	for _, pp := range p.parts {
		if pp.key.kind != k {
			return false
		}
	}
	return true
}

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
		for i < len(p.parts) && p.parts[i].key.compare(qp.key) < 0 {
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
		case j == len(q.parts) || (i < len(p.parts) && p.parts[i].key.compare(q.parts[j].key) < 0):
			out.parts = append(out.parts, p.parts[i])
			i++
		case i == len(p.parts) || q.parts[j].key.compare(p.parts[i].key) < 0:
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
	slices.SortFunc(parts, func(a, b posPart) int { return a.key.compare(b.key) })
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
// key is the MariaDB domain id, the MySQL source UUID (with dashes) or "hb"
// with the heartbeat writer's server id ("hb2"; "hb" alone when unknown).
// parsePositionText reads it back.
func (p *position) String() string {
	if p.empty() {
		return ""
	}
	b := make([]byte, 0, 48*len(p.parts))
	for i, pp := range p.parts {
		if i > 0 {
			b = append(b, ',')
		}
		b = pp.key.appendText(b)
		b = append(b, ':')
		b = strconv.AppendUint(b, pp.seq, 10)
	}
	return string(b)
}

// parsePositionText parses the canonical text form of [position.String],
// with at most maxPositionParts streams of any kind. Callers that take a
// position from outside use [Router.parsePosition], which also checks the
// dialect.
func parsePositionText(s string) (*position, error) {
	if s == "" {
		return &position{}, nil
	}
	if strings.Count(s, ",") >= maxPositionParts {
		return nil, errBadPosition
	}
	var parts []posPart
	for f := range strings.SplitSeq(s, ",") {
		k, v, ok := strings.Cut(f, ":")
		if !ok {
			return nil, errBadPosition
		}
		seq, err := parseDecimal(v, 64)
		if err != nil {
			return nil, err
		}
		key, err := parseKey(k)
		if err != nil {
			return nil, err
		}
		parts = append(parts, posPart{key: key, seq: seq})
	}
	return newPosition(parts), nil
}

// parseDecimal parses an unsigned decimal of at most bits bits in its one
// spelling: digits only, no sign, no leading zero.
func parseDecimal(s string, bits int) (uint64, error) {
	if s == "" || (len(s) > 1 && s[0] == '0') {
		return 0, errBadPosition
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, errBadPosition
		}
	}
	n, err := strconv.ParseUint(s, 10, bits)
	if err != nil {
		return 0, errBadPosition
	}
	return n, nil
}

// parseKey validates a stream key of the text form.
func parseKey(k string) (streamKey, error) {
	switch {
	case k == "hb":
		return beatKey(0), nil
	case strings.HasPrefix(k, "hb"):
		w, err := parseDecimal(k[2:], 32)
		if err != nil || w == 0 {
			return streamKey{}, errBadPosition
		}
		return beatKey(uint32(w)), nil
	case len(k) == 36:
		u, err := parseUUID(k)
		if err != nil {
			return streamKey{}, err
		}
		return uuidKey(u), nil
	}
	d, err := parseDecimal(k, 32)
	if err != nil {
		return streamKey{}, err
	}
	return domainKey(uint32(d)), nil
}

// parseUUID turns "3e11fa47-71ca-11e1-9e33-c80aa9429562" (either case) into
// its 16 bytes.
func parseUUID(s string) ([16]byte, error) {
	var raw [16]byte
	if len(s) != 36 || s[8] != '-' || s[13] != '-' || s[18] != '-' || s[23] != '-' {
		return raw, errBadPosition
	}
	h := s[0:8] + s[9:13] + s[14:18] + s[19:23] + s[24:36]
	if _, err := hex.Decode(raw[:], []byte(h)); err != nil {
		return raw, errBadPosition
	}
	return raw, nil
}

// appendUUID appends u in the canonical lower-case form with dashes.
func appendUUID(b []byte, u [16]byte) []byte {
	const digits = "0123456789abcdef"
	for i, c := range u {
		if i == 4 || i == 6 || i == 8 || i == 10 {
			b = append(b, '-')
		}
		b = append(b, digits[c>>4], digits[c&15])
	}
	return b
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
		parts = append(parts, posPart{key: domainKey(uint32(dom)), seq: seq})
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
		u, err := parseUUID(fields[0])
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
		parts = append(parts, posPart{key: uuidKey(u), seq: seq})
	}
	return newPosition(parts), nil
}

// parsePosition parses a position that comes from outside the router (a
// caller, a cache item, the shared watermark store) for the router's
// dialect. A position that does not parse, or that names a stream of
// another dialect, is counted in [Stats.PositionsRejected] and rejected.
func (rt *Router) parsePosition(s string) (*position, error) {
	p, err := parsePositionText(s)
	if err == nil {
		err = rt.checkDialect(p)
	}
	if err != nil {
		rt.stats.positionsRejected.Add(1)
		return nil, err
	}
	return p, nil
}

// checkDialect reports errForeignPosition if p has a stream that is not of
// the router's dialect.
func (rt *Router) checkDialect(p *position) error {
	if !p.only(rt.dialect.kind()) {
		return errForeignPosition
	}
	return nil
}

func itoa(n int) string {
	if n == 0 {
		return "0"
	}
	var b [20]byte
	i := len(b)
	neg := n < 0
	if neg {
		n = -n
	}
	for n > 0 {
		i--
		b[i] = byte('0' + n%10)
		n /= 10
	}
	if neg {
		i--
		b[i] = '-'
	}
	return string(b[i:])
}
