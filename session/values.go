package session

import (
	"encoding/binary"
	"errors"
	"slices"
)

// The data attribute of a session written by a Manager holds its values:
//
//	0x01 | uvarint count | count × (uvarint len(key) | key | uvarint len(value) | value)
//
// with keys in ascending order, so equal sessions encode identically.

const valuesFormat = 1

var errBadValues = errors.New("session: malformed session data")

func encodeValues(v map[string]string) []byte {
	keys := make([]string, 0, len(v))
	n := 1 + binary.MaxVarintLen64
	for k, val := range v {
		keys = append(keys, k)
		n += 2*binary.MaxVarintLen64 + len(k) + len(val)
	}
	slices.Sort(keys)
	b := make([]byte, 0, n)
	b = append(b, valuesFormat)
	b = binary.AppendUvarint(b, uint64(len(keys)))
	for _, k := range keys {
		b = binary.AppendUvarint(b, uint64(len(k)))
		b = append(b, k...)
		b = binary.AppendUvarint(b, uint64(len(v[k])))
		b = append(b, v[k]...)
	}
	return b
}

func decodeValues(b []byte) (map[string]string, error) {
	if len(b) == 0 {
		return map[string]string{}, nil
	}
	if b[0] != valuesFormat {
		return nil, errBadValues
	}
	b = b[1:]
	count, n := binary.Uvarint(b)
	if n <= 0 || count > uint64(len(b)) {
		return nil, errBadValues
	}
	b = b[n:]
	v := make(map[string]string, count)
	next := func() (string, bool) {
		l, n := binary.Uvarint(b)
		if n <= 0 || l > uint64(len(b)-n) {
			return "", false
		}
		s := string(b[n : n+int(l)])
		b = b[n+int(l):]
		return s, true
	}
	for range count {
		k, ok := next()
		if !ok {
			return nil, errBadValues
		}
		val, ok := next()
		if !ok {
			return nil, errBadValues
		}
		v[k] = val
	}
	if len(b) != 0 {
		return nil, errBadValues
	}
	return v, nil
}
