package dbrouter

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"time"
)

// Token wire format (before base64url without padding):
//
//	version  1 byte  (tokenVersion)
//	key id   1 byte  (TokenKey.ID that signed it)
//	issued   uvarint (Unix seconds)
//	n        uvarint (number of streams, at most maxTokenParts)
//	n times: key kind 1 byte (0 domain, 1 uuid, 2 heartbeat),
//	         key (domain: uvarint; uuid: 16 bytes; heartbeat: nothing),
//	         seq uvarint
//	mac      12 bytes: HMAC-SHA256(key, everything before), truncated to 96 bits
//
// One MariaDB domain: about 27 bytes, 36 characters encoded. One MySQL
// source UUID: about 55 characters; two UUIDs with the largest possible
// sequence numbers: 99. More streams than two are not encoded (see
// [Router.Token]), so a token is always under 100 characters.
const (
	tokenVersion  = 1
	tokenMACLen   = 12
	maxTokenParts = 2
	maxTokenLen   = 100
)

var (
	errTokenCorrupt = errors.New("dbrouter: corrupt token")
	errTokenForged  = errors.New("dbrouter: token signature mismatch")
	errTokenExpired = errors.New("dbrouter: token expired")
	errTokenTooBig  = errors.New("dbrouter: position too large for a token")
)

// TokenKey is one HMAC key for read-your-writes tokens. Keys are rotated by
// adding a new key in front of [Config.TokenKeys] (it signs new tokens) and
// keeping the old ones after it (they still verify) for at least
// [Config.TokenMaxAge].
type TokenKey struct {
	// ID names the key inside tokens (0-255); IDs must be unique.
	ID uint8
	// Secret is the HMAC-SHA256 key; at least 16 bytes.
	Secret []byte
}

// String describes the key without its secret.
func (k TokenKey) String() string {
	return "dbrouter.TokenKey{ID:" + itoa(int(k.ID)) + ", Secret:REDACTED}"
}

// GoString is String in Go syntax, for %#v.
func (k TokenKey) GoString() string {
	return "dbrouter.TokenKey{ID:" + itoa(int(k.ID)) + ", Secret:REDACTED}"
}

// Format makes every fmt verb print [TokenKey.String] (%#v:
// [TokenKey.GoString]), so that no format shows the secret.
func (k TokenKey) Format(f fmt.State, verb rune) { formatRedacted(f, verb, k) }

// MarshalJSON encodes the key with its secret as "REDACTED".
func (k TokenKey) MarshalJSON() ([]byte, error) {
	return []byte(`{"ID":` + itoa(int(k.ID)) + `,"Secret":"REDACTED"}`), nil
}

// LogValue hides the secret from logs.
func (k TokenKey) LogValue() slog.Value {
	return slog.GroupValue(slog.Int("id", int(k.ID)), slog.String("secret", "REDACTED"))
}

// tokenCodec signs and verifies tokens.
type tokenCodec struct {
	keys   []TokenKey // keys[0] signs
	maxAge time.Duration
}

func (c *tokenCodec) mac(key []byte, payload []byte) []byte {
	m := hmac.New(sha256.New, key)
	m.Write(payload)
	return m.Sum(nil)[:tokenMACLen]
}

// encode returns the signed token for p issued at now.
func (c *tokenCodec) encode(p *position, now time.Time) (string, error) {
	if p.empty() {
		return "", nil
	}
	if len(p.parts) > maxTokenParts {
		return "", errTokenTooBig
	}
	k := c.keys[0]
	b := make([]byte, 0, 64)
	b = append(b, tokenVersion, k.ID)
	b = binary.AppendUvarint(b, uint64(max(now.Unix(), 0)))
	b = binary.AppendUvarint(b, uint64(len(p.parts)))
	for _, pp := range p.parts {
		switch pp.key.kind {
		case streamDomain:
			b = append(b, 0)
			b = binary.AppendUvarint(b, uint64(pp.key.domain))
		case streamUUID:
			b = append(b, 1)
			b = append(b, pp.key.uuid[:]...)
		case streamBeat:
			if pp.key.domain == 0 {
				b = append(b, 2)
			} else {
				b = append(b, 3)
				b = binary.AppendUvarint(b, uint64(pp.key.domain))
			}
		}
		b = binary.AppendUvarint(b, pp.seq)
	}
	b = append(b, c.mac(k.Secret, b)...)
	s := base64.RawURLEncoding.EncodeToString(b)
	if len(s) >= maxTokenLen {
		return "", errTokenTooBig
	}
	return s, nil
}

// decode verifies s and returns its position. The error is errTokenCorrupt,
// errTokenForged or errTokenExpired.
func (c *tokenCodec) decode(s string, now time.Time) (*position, error) {
	if s == "" || len(s) >= maxTokenLen {
		return nil, errTokenCorrupt
	}
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil || len(b) < 2+tokenMACLen {
		return nil, errTokenCorrupt
	}
	payload, sum := b[:len(b)-tokenMACLen], b[len(b)-tokenMACLen:]
	if payload[0] != tokenVersion {
		return nil, errTokenCorrupt
	}
	var key []byte
	for _, k := range c.keys {
		if k.ID == payload[1] {
			key = k.Secret
			break
		}
	}
	if key == nil || !hmac.Equal(sum, c.mac(key, payload)) {
		return nil, errTokenForged
	}
	rest := payload[2:]
	issued, n := binary.Uvarint(rest)
	if n <= 0 {
		return nil, errTokenCorrupt
	}
	rest = rest[n:]
	count, n := binary.Uvarint(rest)
	if n <= 0 || count == 0 || count > maxTokenParts {
		return nil, errTokenCorrupt
	}
	rest = rest[n:]
	parts := make([]posPart, 0, count)
	for range count {
		if len(rest) == 0 {
			return nil, errTokenCorrupt
		}
		kind := rest[0]
		rest = rest[1:]
		var key streamKey
		switch kind {
		case 0:
			d, n := binary.Uvarint(rest)
			if n <= 0 || d > 1<<32-1 {
				return nil, errTokenCorrupt
			}
			rest = rest[n:]
			key = domainKey(uint32(d))
		case 1:
			if len(rest) < 16 {
				return nil, errTokenCorrupt
			}
			key = uuidKey([16]byte(rest[:16]))
			rest = rest[16:]
		case 2:
			key = beatKey(0)
		case 3:
			w, n := binary.Uvarint(rest)
			if n <= 0 || w == 0 || w > 1<<32-1 {
				return nil, errTokenCorrupt
			}
			rest = rest[n:]
			key = beatKey(uint32(w))
		default:
			return nil, errTokenCorrupt
		}
		seq, n := binary.Uvarint(rest)
		if n <= 0 {
			return nil, errTokenCorrupt
		}
		rest = rest[n:]
		parts = append(parts, posPart{key: key, seq: seq})
	}
	if len(rest) != 0 {
		return nil, errTokenCorrupt
	}
	if issued > uint64(now.Unix())+60 { // allow clock skew between regions
		return nil, errTokenCorrupt
	}
	if now.Sub(time.Unix(int64(issued), 0)) > c.maxAge {
		return nil, errTokenExpired
	}
	return newPosition(parts), nil
}
