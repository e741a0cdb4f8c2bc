package cache

import (
	"encoding/binary"
)

// Items this package writes carry their kind in memcached's client flags
// (flagMagic | kind) and a small header in the value:
//
//	value:    deadline(8) payload      deadline = soft expiry, unix ms
//	negative: deadline(8)
//	lease:    deadline(8) token(8) poslen(4) pos hasstale(1) stale
//	          deadline = lease expiry; stale = previous payload, if any
//	marker:   pos
//
// All integers are big-endian. A marker or lease with a non-empty pos records
// the writer position that an invalidation requires of the next fill.
const (
	flagMagic uint32 = 0x52440000 // "RD"
	flagMask  uint32 = 0xffff0000

	kindValue    uint32 = 1
	kindNegative uint32 = 2
	kindLease    uint32 = 3
	kindMarker   uint32 = 4
)

// entry is a decoded item. Slices alias the item's value.
type entry struct {
	kind     uint32
	deadline int64 // unix ms: soft expiry (value, negative) or lease expiry
	token    uint64
	pos      string
	payload  []byte // value payload, or a lease's stale payload (nil if none)
	hasStale bool
}

const (
	valueHeader = 8
	leaseHeader = 20
)

// decodeItem decodes an item's flags and value. It never panics and
// allocates only for a lease's or marker's position.
func decodeItem(flags uint32, b []byte) (entry, error) {
	if flags&flagMask != flagMagic {
		return entry{}, errCorrupt
	}
	e := entry{kind: flags &^ flagMask}
	switch e.kind {
	case kindValue, kindNegative:
		if len(b) < valueHeader || (e.kind == kindNegative && len(b) != valueHeader) {
			return entry{}, errCorrupt
		}
		e.deadline = int64(binary.BigEndian.Uint64(b))
		if e.kind == kindValue {
			e.payload = b[valueHeader:]
		}
	case kindLease:
		if len(b) < leaseHeader {
			return entry{}, errCorrupt
		}
		e.deadline = int64(binary.BigEndian.Uint64(b))
		e.token = binary.BigEndian.Uint64(b[8:])
		n := uint64(binary.BigEndian.Uint32(b[16:]))
		if uint64(len(b)) < leaseHeader+n+1 {
			return entry{}, errCorrupt
		}
		p := b[leaseHeader:]
		e.pos = string(p[:n])
		switch p[n] {
		case 0:
			if uint64(len(p)) != n+1 {
				return entry{}, errCorrupt
			}
		case 1:
			e.hasStale = true
			e.payload = p[n+1:]
		default:
			return entry{}, errCorrupt
		}
	case kindMarker:
		e.pos = string(b)
	default:
		return entry{}, errCorrupt
	}
	return e, nil
}

// encodeValue returns the stored form of a value (or, with negative, of an
// absence) whose soft expiry is deadline.
func encodeValue(deadline int64, payload []byte, negative bool) (uint32, []byte) {
	b := make([]byte, valueHeader+len(payload))
	binary.BigEndian.PutUint64(b, uint64(deadline))
	copy(b[valueHeader:], payload)
	if negative {
		return flagMagic | kindNegative, b[:valueHeader]
	}
	return flagMagic | kindValue, b
}

// encodeLease returns the stored form of a lease.
func encodeLease(deadline int64, token uint64, pos string, stale []byte, hasStale bool) (uint32, []byte) {
	if !hasStale {
		stale = nil
	}
	b := make([]byte, leaseHeader+len(pos)+1+len(stale))
	binary.BigEndian.PutUint64(b, uint64(deadline))
	binary.BigEndian.PutUint64(b[8:], token)
	binary.BigEndian.PutUint32(b[16:], uint32(len(pos)))
	copy(b[leaseHeader:], pos)
	if hasStale {
		b[leaseHeader+len(pos)] = 1
		copy(b[leaseHeader+len(pos)+1:], stale)
	}
	return flagMagic | kindLease, b
}

// encodeMarker returns the stored form of an invalidation marker.
func encodeMarker(pos string) (uint32, []byte) {
	return flagMagic | kindMarker, []byte(pos)
}
