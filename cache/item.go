package cache

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"errors"
)

// Items this package writes carry their format and kind in memcached's
// client flags (flagMagic | flagFormat | kind) and a small header in the
// value:
//
//	value:    deadline(8) poslen(2) pos payload      deadline = soft expiry, unix ms
//	negative: deadline(8) poslen(2) pos
//	lease:    deadline(8) token(8) poslen(2) pos maclen(1) mac hasstale(1) stale
//	          deadline = lease expiry; stale = previous payload, if any
//	marker:   poslen(2) pos maclen(1) mac
//
// All integers are big-endian. A value's pos is the writer position the
// value is known to reflect ("" if unknown). A marker's or lease's pos is
// the writer position an invalidation requires of the next fill; its mac
// (empty without [Config.MACKeys]) authenticates the key, kind, deadline,
// token and pos (see [Cache.authentic]). Positions are validated by
// [validPosition] when decoded: an item with a malformed position is
// corrupt.
const (
	flagMagic  uint32 = 0x52440000 // "RD"
	flagMask   uint32 = 0xffffff00
	flagFormat uint32 = 0x0200 // format 2: positions in values, MACs

	kindValue    uint32 = 1
	kindNegative uint32 = 2
	kindLease    uint32 = 3
	kindMarker   uint32 = 4
)

// maxPositionLen bounds the text of a position stored in an item.
const maxPositionLen = 1024

// macLen is the length of an item's MAC (HMAC-SHA256, truncated).
const macLen = 16

// entry is a decoded item. Slices alias the item's value.
type entry struct {
	kind     uint32
	deadline int64 // unix ms: soft expiry (value, negative) or lease expiry
	token    uint64
	pos      []byte // validated shape; see the format above
	mac      []byte // lease and marker only; nil if none
	payload  []byte // value payload, or a lease's stale payload (nil if none)
	hasStale bool
}

const (
	valueHeader = 10 // deadline + poslen
	leaseHeader = 18 // deadline + token + poslen
)

var (
	errBadPosition = errors.New("cache: item with a malformed position")
)

// decodeItem decodes an item's flags and value. It never panics, does not
// allocate, and returns errCorrupt for an item this package did not write
// and errBadPosition for one whose position is not of a valid shape.
func decodeItem(flags uint32, b []byte) (entry, error) {
	if flags&flagMask != flagMagic|flagFormat {
		return entry{}, errCorrupt
	}
	e := entry{kind: flags &^ flagMask}
	switch e.kind {
	case kindValue, kindNegative:
		if len(b) < valueHeader {
			return entry{}, errCorrupt
		}
		e.deadline = int64(binary.BigEndian.Uint64(b))
		n := int(binary.BigEndian.Uint16(b[8:]))
		if len(b) < valueHeader+n || (e.kind == kindNegative && len(b) != valueHeader+n) {
			return entry{}, errCorrupt
		}
		e.pos = b[valueHeader : valueHeader+n]
		if e.kind == kindValue {
			e.payload = b[valueHeader+n:]
		}
	case kindLease:
		if len(b) < leaseHeader {
			return entry{}, errCorrupt
		}
		e.deadline = int64(binary.BigEndian.Uint64(b))
		e.token = binary.BigEndian.Uint64(b[8:])
		p, ok := e.decodePosMAC(b[16:])
		if !ok || len(p) == 0 {
			return entry{}, errCorrupt
		}
		switch p[0] {
		case 0:
			if len(p) != 1 {
				return entry{}, errCorrupt
			}
		case 1:
			e.hasStale = true
			e.payload = p[1:]
		default:
			return entry{}, errCorrupt
		}
	case kindMarker:
		p, ok := e.decodePosMAC(b)
		if !ok || len(p) != 0 {
			return entry{}, errCorrupt
		}
	default:
		return entry{}, errCorrupt
	}
	if !validPosition(e.pos) {
		return entry{}, errBadPosition
	}
	return e, nil
}

// decodePosMAC reads poslen(2) pos maclen(1) mac from b into e and returns
// the rest.
func (e *entry) decodePosMAC(b []byte) ([]byte, bool) {
	if len(b) < 2 {
		return nil, false
	}
	n := int(binary.BigEndian.Uint16(b))
	b = b[2:]
	if len(b) < n+1 {
		return nil, false
	}
	e.pos, b = b[:n], b[n:]
	m := int(b[0])
	b = b[1:]
	if m != 0 && m != macLen || len(b) < m {
		return nil, false
	}
	if m > 0 {
		e.mac = b[:m]
	}
	return b[m:], true
}

// validPosition reports whether p has the shape of a writer position as the
// Consistency implementations write them: at most maxPositionLen bytes, a
// comma-separated list of non-empty fields of ASCII letters, digits, ':' and
// '-', each starting with a letter or digit. The empty position (none) is
// valid. This is a shape check only: the Consistency parses it for its
// dialect and must reject what does not parse.
func validPosition(p []byte) bool {
	if len(p) > maxPositionLen {
		return false
	}
	start := true
	for _, c := range p {
		switch {
		case c >= '0' && c <= '9', c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z':
			start = false
		case c == ':' || c == '-':
			if start {
				return false
			}
		case c == ',':
			if start {
				return false
			}
			start = true
		default:
			return false
		}
	}
	return len(p) == 0 || !start
}

// encodeValue returns the stored form of a value (or, with negative, of an
// absence) whose soft expiry is deadline and that reflects pos.
func encodeValue(deadline int64, pos string, payload []byte, negative bool) (uint32, []byte) {
	if negative {
		payload = nil
	}
	b := make([]byte, valueHeader+len(pos)+len(payload))
	binary.BigEndian.PutUint64(b, uint64(deadline))
	binary.BigEndian.PutUint16(b[8:], uint16(len(pos)))
	copy(b[valueHeader:], pos)
	copy(b[valueHeader+len(pos):], payload)
	if negative {
		return flagMagic | flagFormat | kindNegative, b
	}
	return flagMagic | flagFormat | kindValue, b
}

// encodeLease returns the stored form of a lease; mac is nil or macLen bytes.
func encodeLease(deadline int64, token uint64, pos string, mac []byte, stale []byte, hasStale bool) (uint32, []byte) {
	if !hasStale {
		stale = nil
	}
	b := make([]byte, 0, leaseHeader+len(pos)+1+len(mac)+1+len(stale))
	b = binary.BigEndian.AppendUint64(b, uint64(deadline))
	b = binary.BigEndian.AppendUint64(b, token)
	b = appendPosMAC(b, pos, mac)
	if hasStale {
		b = append(b, 1)
		b = append(b, stale...)
	} else {
		b = append(b, 0)
	}
	return flagMagic | flagFormat | kindLease, b
}

// encodeMarker returns the stored form of an invalidation marker.
func encodeMarker(pos string, mac []byte) (uint32, []byte) {
	return flagMagic | flagFormat | kindMarker, appendPosMAC(make([]byte, 0, 3+len(pos)+len(mac)), pos, mac)
}

func appendPosMAC(b []byte, pos string, mac []byte) []byte {
	b = binary.BigEndian.AppendUint16(b, uint16(len(pos)))
	b = append(b, pos...)
	b = append(b, byte(len(mac)))
	return append(b, mac...)
}

// itemMAC computes the MAC of a lease or marker for memcached key mk under
// secret: HMAC-SHA256 over a domain label, the kind, the key, the deadline,
// the token and the position, truncated to macLen bytes. Binding the key
// stops an item from being copied to another key; binding the kind, a
// marker from being replayed as a lease.
func itemMAC(secret []byte, mk string, kind uint32, deadline int64, token uint64, pos string) []byte {
	h := hmac.New(sha256.New, secret)
	var hdr [4 + 8 + 8 + 2 + 2]byte
	binary.BigEndian.PutUint32(hdr[0:], kind)
	binary.BigEndian.PutUint64(hdr[4:], uint64(deadline))
	binary.BigEndian.PutUint64(hdr[12:], token)
	binary.BigEndian.PutUint16(hdr[20:], uint16(len(mk)))
	binary.BigEndian.PutUint16(hdr[22:], uint16(len(pos)))
	h.Write([]byte("regiondb/cache item v2\x00"))
	h.Write(hdr[:])
	h.Write([]byte(mk))
	h.Write([]byte(pos))
	return h.Sum(nil)[:macLen]
}
