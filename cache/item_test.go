package cache

import (
	"bytes"
	"strings"
	"testing"
)

var testMAC = bytes.Repeat([]byte{7}, macLen)

var itemTests = []struct {
	name   string
	encode func() (uint32, []byte)
	want   entry
}{
	{"value", func() (uint32, []byte) { return encodeValue(1234, "", []byte("hello"), false) },
		entry{kind: kindValue, deadline: 1234, payload: []byte("hello")}},
	{"value with position", func() (uint32, []byte) { return encodeValue(1234, "0:12", []byte("hello"), false) },
		entry{kind: kindValue, deadline: 1234, pos: []byte("0:12"), payload: []byte("hello")}},
	{"empty value", func() (uint32, []byte) { return encodeValue(7, "", nil, false) },
		entry{kind: kindValue, deadline: 7, payload: []byte{}}},
	{"negative", func() (uint32, []byte) { return encodeValue(99, "0-1-4", nil, true) },
		entry{kind: kindNegative, deadline: 99, pos: []byte("0-1-4")}},
	{"lease", func() (uint32, []byte) { return encodeLease(5, 42, "0-1-9", nil, nil, false) },
		entry{kind: kindLease, deadline: 5, token: 42, pos: []byte("0-1-9")}},
	{"signed lease with stale", func() (uint32, []byte) { return encodeLease(5, 42, "", testMAC, []byte("old"), true) },
		entry{kind: kindLease, deadline: 5, token: 42, mac: testMAC, payload: []byte("old"), hasStale: true}},
	{"released lease", func() (uint32, []byte) { return encodeLease(0, 0, "0-1-9,1-2-3", nil, nil, false) },
		entry{kind: kindLease, pos: []byte("0-1-9,1-2-3")}},
	{"marker", func() (uint32, []byte) { return encodeMarker("0-1-10", nil) },
		entry{kind: kindMarker, pos: []byte("0-1-10")}},
	{"signed marker", func() (uint32, []byte) { return encodeMarker("3e11fa47-71ca-11e1-9e33-c80aa9429562:7", testMAC) },
		entry{kind: kindMarker, pos: []byte("3e11fa47-71ca-11e1-9e33-c80aa9429562:7"), mac: testMAC}},
	{"marker without position", func() (uint32, []byte) { return encodeMarker("", nil) },
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
			if got.kind != w.kind || got.deadline != w.deadline || got.token != w.token || !bytes.Equal(got.pos, w.pos) ||
				!bytes.Equal(got.mac, w.mac) || got.hasStale != w.hasStale || !bytes.Equal(got.payload, w.payload) {
				t.Fatalf("decode = %+v, want %+v", got, w)
			}
		})
	}
}

// positionTests feeds TestValidPosition and the fuzz seeds. The hostile
// ones are what issue reviews planted in memcached.
var positionTests = []struct {
	pos   string
	valid bool
}{
	{"", true},
	{"0-1-9", true},
	{"0-1-9,1-2-3", true},
	{"0:12", true},
	{"hb:5", true},
	{"3e11fa47-71ca-11e1-9e33-c80aa9429562:1-5:7", true},
	{"27202b20-736c-6565-7028-3529202b2027:1", true}, // shape-valid: only the MAC stops it
	{"' + sleep(5) + '-0-1", false},
	{"0-1-1'); DROP TABLE t; --", false},
	{"0-1-1 ", false},
	{",0-1-1", false},
	{"0-1-1,", false},
	{"0-1-1,,1-2-3", false},
	{"-0-1-1", false},
	{":1", false},
	{"0-1-1\x00", false},
	{"0-1-1\n", false},
	{"ｏ-1-1", false},
	{strings.Repeat("1", maxPositionLen), true},
	{strings.Repeat("1", maxPositionLen+1), false},
}

func TestValidPosition(t *testing.T) {
	for _, tt := range positionTests {
		if got := validPosition([]byte(tt.pos)); got != tt.valid {
			t.Errorf("validPosition(%q) = %v, want %v", tt.pos, got, tt.valid)
		}
	}
}

func TestDecodeForeign(t *testing.T) {
	for _, tc := range []struct {
		flags uint32
		b     []byte
	}{
		{0, []byte("a plain gomemcache value")},
		{flagMagic | flagFormat | 9, nil},
		{flagMagic | 1, append(make([]byte, 8), "format 1 value"...)}, // older format
		{flagMagic | flagFormat | kindValue, []byte("short")},
		{flagMagic | flagFormat | kindValue, []byte{0, 0, 0, 0, 0, 0, 0, 0, 0, 9, 'a'}}, // position past the end
		{flagMagic | flagFormat | kindNegative, []byte("1234567890x")},
		{flagMagic | flagFormat | kindLease, make([]byte, 19)},
		{flagMagic | flagFormat | kindMarker, []byte{0, 1, '0', 5, 1, 2, 3, 4, 5}}, // MAC of the wrong length
	} {
		if _, err := decodeItem(tc.flags, tc.b); err == nil {
			t.Errorf("decodeItem(%#x, %q) accepted a foreign item", tc.flags, tc.b)
		}
	}
	f, b := encodeMarker("' + sleep(5) + '-0-1", nil)
	if _, err := decodeItem(f, b); err != errBadPosition {
		t.Errorf("marker with an SQL fragment as position: err = %v, want errBadPosition", err)
	}
}

func TestDecodeValueAllocs(t *testing.T) {
	f, b := encodeValue(1, "0-1-99", []byte("0123456789abcdef0"), false)
	if n := testing.AllocsPerRun(100, func() { decodeItem(f, b) }); n != 0 {
		t.Fatalf("decoding a value allocates %v times", n)
	}
}
