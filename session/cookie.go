package session

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"errors"
)

// A session cookie carries the session id, the version of the session the
// client last saw and the region that wrote that version (its home region):
//
//	base64url( 0x01 | id (24 bytes) | uvarint version | len(region) (1 byte) | region | mac (16 bytes) )
//
// mac is HMAC-SHA256 keyed with the id over everything before it, truncated
// to 16 bytes. Only the holder of the id can produce a valid cookie, so a
// cookie that was corrupted or edited by anyone else is rejected (a new
// session starts). The holder can edit its own version and region; the
// server therefore trusts them only to decide which of the configured
// regions' tables to read, at most one remote read per request.

const (
	cookieFormat    = 1
	idLen           = 24 // 192 bits from crypto/rand
	macLen          = 16
	maxRegionLen    = 64
	maxCookieLen    = 200 // base64 of the largest valid payload is 166 bytes
	minCookieRawLen = 1 + idLen + 1 + 1 + macLen
)

// cookieEncoding rejects non-canonical trailing bits, so that a cookie
// value has exactly one accepted spelling.
var cookieEncoding = base64.RawURLEncoding.Strict()

var errBadCookie = errors.New("session: malformed session cookie")

// token is the parsed session cookie.
type token struct {
	id      [idLen]byte
	version uint64
	region  string
}

// newID returns a fresh random session id.
func newID() ([idLen]byte, error) {
	var id [idLen]byte
	_, err := rand.Read(id[:])
	return id, err
}

func (t token) mac(payload []byte) []byte {
	m := hmac.New(sha256.New, t.id[:])
	m.Write(payload)
	return m.Sum(nil)[:macLen]
}

// format encodes t as a cookie value.
func (t token) format() string {
	b := make([]byte, 0, minCookieRawLen+binary.MaxVarintLen64+len(t.region))
	b = append(b, cookieFormat)
	b = append(b, t.id[:]...)
	b = binary.AppendUvarint(b, t.version)
	b = append(b, byte(len(t.region)))
	b = append(b, t.region...)
	b = append(b, t.mac(b)...)
	return cookieEncoding.EncodeToString(b)
}

// parseToken decodes a cookie value. Any malformed, truncated or edited
// value gives errBadCookie.
func parseToken(s string) (token, error) {
	var t token
	if len(s) > maxCookieLen {
		return t, errBadCookie
	}
	for i := 0; i < len(s); i++ { // the decoder would skip '\r' and '\n'
		if c := s[i]; !('A' <= c && c <= 'Z' || 'a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-' || c == '_') {
			return t, errBadCookie
		}
	}
	b, err := cookieEncoding.DecodeString(s)
	if err != nil || len(b) < minCookieRawLen || b[0] != cookieFormat {
		return t, errBadCookie
	}
	copy(t.id[:], b[1:1+idLen])
	rest := b[1+idLen:]
	v, n := binary.Uvarint(rest)
	if n <= 0 {
		return t, errBadCookie
	}
	t.version = v
	rest = rest[n:]
	if len(rest) < 1 {
		return t, errBadCookie
	}
	rl := int(rest[0])
	rest = rest[1:]
	if rl > maxRegionLen || len(rest) != rl+macLen {
		return t, errBadCookie
	}
	t.region = string(rest[:rl])
	payload := b[:len(b)-macLen]
	if !hmac.Equal(t.mac(payload), rest[rl:]) {
		return t, errBadCookie
	}
	// Reject non-canonical varints so that format(parse(s)) == s.
	if binary.PutUvarint(make([]byte, binary.MaxVarintLen64), v) != n {
		return t, errBadCookie
	}
	return t, nil
}

// hashKey is the table's partition key for a session id: base64url of its
// SHA-256, so that the table never holds a live id.
func hashKey(id []byte) string {
	h := sha256.Sum256(id)
	return base64.RawURLEncoding.EncodeToString(h[:])
}
