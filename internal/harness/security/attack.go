// Package security measures what hostile replication positions,
// tokens, shared watermarks and planted cache items can make dbrouter send
// to the readers of the local stack, and whether the classifier routes
// statements with a server-side effect to a reader. `make bench-security`
// runs it (internal/cmd/bench security).
//
// What reached SQL is read from the readers' general log, not inferred: the
// harness turns it on (log_output=TABLE), runs the attempts in child
// processes (a crash counts), and counts the application user's statements
// that are neither the workload's nor one of the router's fixed query
// shapes. Its control feeds the same positions to a naive wait query built
// as the router built it before validation, which must reach SQL.
package security

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// payloads are 16-byte SQL fragments: as the bytes of a MySQL source UUID
// they spell SQL inside the old MariaDB wait query's quotes. The first is
// the (with sleep(0), to keep the control fast).
var payloads = []string{
	"' + sleep(0) + '",
	"'),SLEEP(0),('x",
	"' OR 1=1 -- xxxx",
	"';DO SLEEP(0);#a",
	"'+(SELECT 1)+'  ",
	"'+GET_LOCK('a',0",
	"\\' + 1 + '      ",
	"'||@@version||' ",
}

// raw16 pads or cuts p to 16 bytes.
func raw16(p string) string { return (p + strings.Repeat(" ", 16))[:16] }

// uuidText spells p's 16 bytes (raw16) as a UUID (the text form of a MySQL
// position).
func uuidText(p string) string {
	h := hex.EncodeToString([]byte(raw16(p)))
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:32]
}

// Positions returns the hostile and foreign positions fed to every entry
// point: planted UUIDs that spell SQL, positions of each dialect (valid for
// one, foreign to the others), malformed and oversized ones.
func Positions() []string {
	var out []string
	for _, p := range payloads {
		out = append(out,
			uuidText(p)+":1",        // the injection
			"0:1,"+uuidText(p)+":5", // mixed with a valid domain
			p+":1", "0:"+p, "hb:"+p, // raw text in each field
		)
	}
	return append(out,
		"0:5", "0:8,1:5", "0:99999999999", // MariaDB (valid there)
		"3e11fa47-71ca-11e1-9e33-c80aa9429562:5",                 // MySQL
		"hb:5",                                                   // heartbeat
		"0:1,hb:1", "0:1,3e11fa47-71ca-11e1-9e33-c80aa9429562:1", // mixed dialects
		"", "x", "0:", ":1", "0:-1", "00:1", "4294967296:1", "0:18446744073709551616", "0-1-8",
		"0:1\x00", "0:1;DROP TABLE kv", strings.Repeat("1:1,", 100)+"2:1", strings.Repeat("9", 5000)+":1",
		"27202b20-736c-6565-7028-3529202b20:1", // short UUID (formatUUID's panic)
	)
}

// TokenKey is the HMAC key of the harness's routers: the attacker model
// for tokens is a fleet (of another dialect, say) that shares the key.
var TokenKey = []byte("securityharness-token-key-0123456789")

const tokenKeyID = 1

// tokenPart is one stream of a forged token: kind 0 domain, 1 UUID, 2
// heartbeat (dbrouter's token format).
type tokenPart struct {
	kind   byte
	domain uint64
	uuid   string
	seq    uint64
}

// forgeToken signs parts in dbrouter's token format (version 1, key id,
// issued, count, parts, 12-byte HMAC-SHA256).
func forgeToken(parts []tokenPart, now time.Time) string {
	b := []byte{1, tokenKeyID}
	b = binary.AppendUvarint(b, uint64(now.Unix()))
	b = binary.AppendUvarint(b, uint64(len(parts)))
	for _, p := range parts {
		b = append(b, p.kind)
		switch p.kind {
		case 0:
			b = binary.AppendUvarint(b, p.domain)
		case 1:
			b = append(b, raw16(p.uuid)...)
		}
		b = binary.AppendUvarint(b, p.seq)
	}
	m := hmac.New(sha256.New, TokenKey)
	m.Write(b)
	return base64.RawURLEncoding.EncodeToString(append(b, m.Sum(nil)[:12]...))
}

// Tokens returns signed tokens carrying the payload UUIDs, positions of
// each dialect, and malformed payloads.
func Tokens(now time.Time) []string {
	var out []string
	for _, p := range payloads {
		out = append(out,
			forgeToken([]tokenPart{{kind: 1, uuid: p, seq: 1}}, now),
			forgeToken([]tokenPart{{kind: 0, domain: 0, seq: 1}, {kind: 1, uuid: p, seq: 1}}, now))
	}
	return append(out,
		forgeToken([]tokenPart{{kind: 0, domain: 0, seq: 5}}, now),
		forgeToken([]tokenPart{{kind: 2, seq: 5}}, now),
		forgeToken([]tokenPart{{kind: 0, domain: 1 << 40, seq: 5}}, now),
		forgeToken([]tokenPart{{kind: 7, seq: 5}}, now),
		forgeToken(nil, now),
		"garbage", "",
	)
}

// tokenUUIDPositions are the text positions the token payloads spell, for
// the control.
func tokenUUIDPositions() []string {
	var out []string
	for _, p := range payloads {
		out = append(out, uuidText(p)+":1", "0:1,"+uuidText(p)+":1")
	}
	return out
}

// Cache item format (cache/item.go): memcached flags 0x5244xxxx with the
// kind in the low bits; a marker's value is the position; a lease's value
// is deadline(8) token(8) poslen(4) pos hasstale(1).
const (
	flagLease  uint32 = 0x52440003
	flagMarker uint32 = 0x52440004
)

func leaseValue(pos string, deadline time.Time) []byte {
	b := make([]byte, 20+len(pos)+1)
	binary.BigEndian.PutUint64(b, uint64(deadline.UnixMilli()))
	binary.BigEndian.PutUint64(b[8:], 42)
	binary.BigEndian.PutUint32(b[16:], uint32(len(pos)))
	copy(b[20:], pos)
	return b
}

// naiveWaitQuery is the MariaDB wait query as dbrouter built it before
// positions were validated: the text parsed as before (a 36-character UUID
// became its 16 raw bytes) and each key pasted into the query raw. ok is
// false where the old parser refused the text (the old router then sent the
// read to the writer: nothing reached a reader).
func naiveWaitQuery(s string) (q string, ok bool) {
	if s == "" {
		return "", false
	}
	b := []byte("SELECT MASTER_GTID_WAIT('")
	for i, f := range strings.Split(s, ",") {
		k, v, found := strings.Cut(f, ":")
		if !found {
			return "", false
		}
		seq, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			return "", false
		}
		switch {
		case k == "hb":
		case len(k) == 36:
			h := k[0:8] + k[9:13] + k[14:18] + k[19:23] + k[24:36]
			raw, err := hex.DecodeString(h)
			if err != nil || k[8] != '-' || k[13] != '-' || k[18] != '-' || k[23] != '-' {
				return "", false
			}
			k = string(raw)
		default:
			if _, err := strconv.ParseUint(k, 10, 32); err != nil || (len(k) > 1 && k[0] == '0') {
				return "", false
			}
		}
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, k...)
		b = append(b, "-0-"...)
		b = strconv.AppendUint(b, seq, 10)
	}
	return string(append(b, "', 0.050)"...)), true
}

// fixedShapes are the only statements the application user may send to a
// reader in the harness: the workload's and the router's own (monitor and
// wait queries of every dialect, writer-search probes).
var fixedShapes = []*regexp.Regexp{
	regexp.MustCompile(`^SELECT 1 AS workload$`),
	regexp.MustCompile(`^SELECT @@global\.gtid_(current|binlog)_pos$`),
	regexp.MustCompile(`^SELECT @@global\.gtid_executed$`),
	regexp.MustCompile(`^SELECT @@last_gtid$`),
	regexp.MustCompile(`^SELECT CONCAT\(IFNULL\(\(SELECT seq FROM regiondb_heartbeat WHERE id = 2\), 0\), ':', seq\) FROM regiondb_heartbeat WHERE id = 1$`),
	regexp.MustCompile(`^SELECT CONCAT\(IF\(EXISTS\(SELECT 1 FROM regiondb_heartbeat WHERE id = 2\), @@server_id, 0\), ':', seq \+ 1\) FROM regiondb_heartbeat WHERE id = 1$`),
	regexp.MustCompile(`^SELECT @@global\.read_only, @@global\.innodb_read_only$`),
	// The waits; with a shared store (issue 17), followed by a read of
	// the applied position in the same statement.
	regexp.MustCompile(`^SELECT MASTER_GTID_WAIT\('[0-9]{1,10}-0-[0-9]{1,20}(,[0-9]{1,10}-0-[0-9]{1,20})*', [0-9]+\.[0-9]{3}\)(, @@global\.gtid_current_pos)?$`),
	// The router's wait since issue 13: guarded by read_only.
	regexp.MustCompile(`^SELECT IF\(@@global\.read_only = 0, NULL, MASTER_GTID_WAIT\('[0-9]{1,10}-0-[0-9]{1,20}(,[0-9]{1,10}-0-[0-9]{1,20})*', [0-9]+\.[0-9]{3}\)\)(, @@global\.gtid_current_pos)?$`),
	// The one-round-trip read (issue 11): the workload's statement, after
	// the guard and/or before the served-position sample; or the guard
	// alone, when the driver cannot interpolate the statement's arguments.
	regexp.MustCompile(`^(` + guardShape + `;\n)?SELECT 1 AS workload(\n;\nSELECT @@global\.gtid_current_pos)?$`),
	regexp.MustCompile(`^` + guardShape + `$`),
	regexp.MustCompile(`^SELECT WAIT_FOR_EXECUTED_GTID_SET\('` +
		`[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}:1-[0-9]{1,20}` +
		`(,[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}:1-[0-9]{1,20})*', [0-9]+\.[0-9]{3}\)(, @@global\.gtid_executed)?$`),
}

// guardShape is the router's guard of a combined read (MariaDB).
const guardShape = `SELECT IF\(IF\(@@global\.read_only = 1, MASTER_GTID_WAIT\('[0-9]{1,10}-0-[0-9]{1,20}(,[0-9]{1,10}-0-[0-9]{1,20})*', [0-9]+\.[0-9]{3}\), 1\) = 0, 1, \(SELECT 1 UNION ALL SELECT 2\)\) AS g`

// fixedShape reports whether q is one of fixedShapes.
func fixedShape(q string) bool {
	for _, re := range fixedShapes {
		if re.MatchString(q) {
			return true
		}
	}
	return false
}
