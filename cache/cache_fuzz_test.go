package cache

import (
	"bytes"
	"strings"
	"testing"
)

// FuzzStorageKey: any key either is rejected with a *KeyError or maps,
// deterministically, to a key memcached can store; legal keys map to
// themselves; with hashing on only the empty key is rejected.
func FuzzStorageKey(f *testing.F) {
	for _, tt := range keyTests {
		f.Add(tt.key, tt.hash)
	}
	f.Fuzz(func(t *testing.T, key string, hash bool) {
		got, err := storageKey(key, hash)
		if err != nil {
			if _, ok := err.(*KeyError); !ok {
				t.Fatalf("error %T, want *KeyError", err)
			}
			if legalKey(key) || (hash && key != "") {
				t.Fatalf("storageKey(%q, %v) rejected: %v", key, hash, err)
			}
			return
		}
		if !legalKey(got) {
			t.Fatalf("storageKey(%q) = %q, which memcached cannot store", key, got)
		}
		if legalKey(key) && got != key {
			t.Fatalf("legal key %q changed to %q", key, got)
		}
		if !legalKey(key) && !strings.HasPrefix(got, hashedKeyPrefix) {
			t.Fatalf("illegal key %q passed as %q", key, got)
		}
		if again, _ := storageKey(key, hash); again != got {
			t.Fatalf("not deterministic: %q then %q", got, again)
		}
	})
}

// FuzzDecodeItem: decoding whatever memcached holds never panics, and what
// the encoders write decodes back to itself.
func FuzzDecodeItem(f *testing.F) {
	for _, seed := range itemTests {
		fl, b := seed.encode()
		f.Add(fl, b)
	}
	f.Add(uint32(0), []byte("raw gomemcache value"))
	f.Fuzz(func(t *testing.T, flags uint32, b []byte) {
		e, err := decodeItem(flags, b)
		if err != nil {
			return
		}
		var fl uint32
		var re []byte
		switch e.kind {
		case kindValue, kindNegative:
			fl, re = encodeValue(e.deadline, e.payload, e.kind == kindNegative)
		case kindLease:
			fl, re = encodeLease(e.deadline, e.token, e.pos, e.payload, e.hasStale)
		case kindMarker:
			fl, re = encodeMarker(e.pos)
		default:
			t.Fatalf("decoded unknown kind %d", e.kind)
		}
		if fl != flags || !bytes.Equal(re, b) {
			t.Fatalf("round trip: (%#x, %q) -> %+v -> (%#x, %q)", flags, b, e, fl, re)
		}
	})
}
