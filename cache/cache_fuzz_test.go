package cache

import (
	"bytes"
	"context"
	"strings"
	"testing"

	"github.com/bradfitz/gomemcache/memcache"
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
		collides := hash && strings.HasPrefix(key, hashedKeyPrefix)
		if legalKey(key) && !collides && got != key {
			t.Fatalf("legal key %q changed to %q", key, got)
		}
		if collides && (got == key || !strings.HasPrefix(got, hashedKeyPrefix) || len(got) != 44) {
			t.Fatalf("key %q in the hashed namespace was not hashed: %q", key, got)
		}
		if (!legalKey(key) || hash) && strings.HasPrefix(got, hashedKeyPrefix) && len(got) != 44 {
			t.Fatalf("key %q stored as %q: the hashed namespace holds only hashes", key, got)
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
			fl, re = encodeValue(e.deadline, string(e.pos), e.payload, e.kind == kindNegative)
		case kindLease:
			fl, re = encodeLease(e.deadline, e.token, string(e.pos), e.mac, e.payload, e.hasStale)
		case kindMarker:
			fl, re = encodeMarker(string(e.pos), e.mac)
		default:
			t.Fatalf("decoded unknown kind %d", e.kind)
		}
		if !validPosition(e.pos) {
			t.Fatalf("decoded a malformed position %q", e.pos)
		}
		if fl != flags || !bytes.Equal(re, b) {
			t.Fatalf("round trip: (%#x, %q) -> %+v -> (%#x, %q)", flags, b, e, fl, re)
		}
	})
}

// FuzzItemPosition: from whatever memcached holds under a key, the only
// positions that reach Consistency.RequirePosition (through decode and
// itemPosition, as the lease protocol takes them) have a position's shape
// and, with ItemKeys, a valid MAC for that key. The target also signs the
// fuzzed position itself, so that authenticated items with hostile
// positions are tried too.
func FuzzItemPosition(f *testing.F) {
	for _, seed := range itemTests {
		fl, b := seed.encode()
		f.Add(fl, b, "0-1-9", true)
	}
	for _, p := range positionTests {
		f.Add(flagMagic|flagFormat|kindMarker, []byte(p.pos), p.pos, p.valid)
	}
	mc := memcache.New("127.0.0.1:1") // never dialled
	c, err := New(Config{Client: mc, ItemKeys: []Secret{Secret("fuzz-key-0123456789")}})
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { c.Close() })
	const mk = "fuzz:key"
	ctx := context.Background()
	check := func(t *testing.T, flags uint32, b []byte, signedPos string) {
		e := c.decode(ctx, mk, &memcache.Item{Key: mk, Flags: flags, Value: b})
		if e.kind != kindLease && e.kind != kindMarker {
			return
		}
		pos, ok := c.itemPosition(mk, e)
		if !ok {
			t.Fatalf("decode accepted a %d item that itemPosition rejects: %+v", e.kind, e)
		}
		if !validPosition([]byte(pos)) {
			t.Fatalf("position %q handed to RequirePosition has no position's shape", pos)
		}
		if signedPos != "\x00unsigned" && pos != signedPos {
			t.Fatalf("signed position %q came back as %q", signedPos, pos)
		}
		if !bytes.Equal(e.pos, []byte(pos)) || len(e.mac) != macLen {
			t.Fatalf("accepted an unsigned item: %+v", e)
		}
	}
	f.Fuzz(func(t *testing.T, flags uint32, b []byte, pos string, asLease bool) {
		check(t, flags, b, "\x00unsigned") // random bytes: MACs fail unless forged
		var fl uint32
		var item []byte
		if asLease {
			fl, item = c.encodeLease(mk, lease{token: 1, deadline: 2, pos: pos})
		} else {
			fl, item = encodeMarker(pos, c.sign(mk, kindMarker, 0, 0, pos))
		}
		if len(pos) > 0xffff {
			return // longer than the format can say; never written
		}
		e := c.decode(ctx, mk, &memcache.Item{Key: mk, Flags: fl, Value: item})
		if validPosition([]byte(pos)) != (e.kind != 0) {
			t.Fatalf("signed position %q: accepted = %v, valid shape = %v", pos, e.kind != 0, validPosition([]byte(pos)))
		}
		check(t, fl, item, pos)
	})
}
