package cache

import (
	"bytes"
	"testing"
)

var itemTests = []struct {
	name   string
	encode func() (uint32, []byte)
	want   entry
}{
	{"value", func() (uint32, []byte) { return encodeValue(1234, []byte("hello"), false) },
		entry{kind: kindValue, deadline: 1234, payload: []byte("hello")}},
	{"empty value", func() (uint32, []byte) { return encodeValue(7, nil, false) },
		entry{kind: kindValue, deadline: 7, payload: []byte{}}},
	{"negative", func() (uint32, []byte) { return encodeValue(99, nil, true) },
		entry{kind: kindNegative, deadline: 99}},
	{"lease", func() (uint32, []byte) { return encodeLease(5, 42, "0-1-9", nil, false) },
		entry{kind: kindLease, deadline: 5, token: 42, pos: "0-1-9"}},
	{"lease with stale", func() (uint32, []byte) { return encodeLease(5, 42, "", []byte("old"), true) },
		entry{kind: kindLease, deadline: 5, token: 42, payload: []byte("old"), hasStale: true}},
	{"released lease", func() (uint32, []byte) { return encodeLease(0, 0, "0-1-9,1-2-3", nil, false) },
		entry{kind: kindLease, pos: "0-1-9,1-2-3"}},
	{"marker", func() (uint32, []byte) { return encodeMarker("0-1-10") },
		entry{kind: kindMarker, pos: "0-1-10"}},
	{"marker without position", func() (uint32, []byte) { return encodeMarker("") },
		entry{kind: kindMarker}},
}

func TestItemRoundTrip(t *testing.T) {
	for _, tt := range itemTests {
		t.Run(tt.name, func(t *testing.T) {
			f, b := tt.encode()
			got, err := decodeItem(f, b)
			if err != nil {
				t.Fatal(err)
			}
			w := tt.want
			if got.kind != w.kind || got.deadline != w.deadline || got.token != w.token || got.pos != w.pos ||
				got.hasStale != w.hasStale || !bytes.Equal(got.payload, w.payload) {
				t.Fatalf("decode = %+v, want %+v", got, w)
			}
		})
	}
}

func TestDecodeForeign(t *testing.T) {
	for _, tc := range []struct {
		flags uint32
		b     []byte
	}{
		{0, []byte("a plain gomemcache value")},
		{flagMagic | 9, nil},
		{flagMagic | kindValue, []byte("short")},
		{flagMagic | kindNegative, []byte("123456789")},
		{flagMagic | kindLease, make([]byte, 19)},
	} {
		if _, err := decodeItem(tc.flags, tc.b); err == nil {
			t.Errorf("decodeItem(%#x, %q) accepted a foreign item", tc.flags, tc.b)
		}
	}
}

func TestDecodeValueAllocs(t *testing.T) {
	f, b := encodeValue(1, []byte("0123456789abcdef0"), false)
	if n := testing.AllocsPerRun(100, func() { decodeItem(f, b) }); n != 0 {
		t.Fatalf("decoding a value allocates %v times", n)
	}
}
