package session

import (
	"bytes"
	"strings"
	"testing"
)

// testTokens feeds both the unit test and the fuzz seeds.
var testTokens = []struct {
	name string
	tok  token
}{
	{"zero", token{}},
	{"home region", token{id: [idLen]byte{1, 2, 3}, version: 7, region: "ap-northeast-1"}},
	{"big version", token{id: [idLen]byte{0xff}, version: 1<<64 - 1, region: "us-east-1"}},
	{"longest region", token{id: [idLen]byte{9}, version: 300, region: strings.Repeat("r", maxRegionLen)}},
}

var badCookies = []struct{ name, value string }{
	{"empty", ""},
	{"not base64", "!!!!"},
	{"too short", "AQ"},
	{"too long", strings.Repeat("A", maxCookieLen+1)},
	{"bad format byte", "AgAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"},
}

func TestTokenRoundTrip(t *testing.T) {
	for _, tc := range testTokens {
		t.Run(tc.name, func(t *testing.T) {
			s := tc.tok.format()
			got, err := parseToken(s)
			if err != nil {
				t.Fatalf("parseToken(%q): %v", s, err)
			}
			if got != tc.tok {
				t.Fatalf("round trip: got %+v, want %+v", got, tc.tok)
			}
		})
	}
}

func TestTokenRejectsTampering(t *testing.T) {
	for _, tc := range testTokens {
		t.Run(tc.name, func(t *testing.T) {
			raw, err := cookieEncoding.DecodeString(tc.tok.format())
			if err != nil {
				t.Fatal(err)
			}
			for i := range raw {
				b := bytes.Clone(raw)
				b[i] ^= 0x01
				if _, err := parseToken(cookieEncoding.EncodeToString(b)); err == nil {
					t.Fatalf("flipping a bit of byte %d was accepted", i)
				}
			}
		})
	}
	for _, tc := range badCookies {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := parseToken(tc.value); err == nil {
				t.Fatalf("parseToken(%q) accepted", tc.value)
			}
		})
	}
}

func TestNewIDIsRandom(t *testing.T) {
	a, err := newID()
	if err != nil {
		t.Fatal(err)
	}
	b, _ := newID()
	if a == b || len(a)*8 < 128 {
		t.Fatalf("ids %x and %x", a, b)
	}
	if k := hashKey(a[:]); strings.Contains(k, cookieEncoding.EncodeToString(a[:])) {
		t.Fatal("the table key contains the id")
	}
}

// FuzzParseToken: no panic; what parses formats back to the same string;
// anything else is rejected (a new session, never an error page).
func FuzzParseToken(f *testing.F) {
	for _, tc := range testTokens {
		f.Add(tc.tok.format())
	}
	for _, tc := range badCookies {
		f.Add(tc.value)
	}
	f.Fuzz(func(t *testing.T, s string) {
		tok, err := parseToken(s)
		if err != nil {
			return
		}
		if got := tok.format(); got != s {
			t.Fatalf("format(parse(%q)) = %q", s, got)
		}
	})
}

var testValues = []map[string]string{
	{},
	{"user": "42", "n": "0"},
	{"": "", "bin": "\x00\xff\xfe", "long": strings.Repeat("x", 1000)},
}

func TestValuesRoundTrip(t *testing.T) {
	for _, v := range testValues {
		got, err := decodeValues(encodeValues(v))
		if err != nil || len(got) != len(v) {
			t.Fatalf("decode(encode(%v)) = %v, %v", v, got, err)
		}
		for k := range v {
			if got[k] != v[k] {
				t.Fatalf("key %q: got %q, want %q", k, got[k], v[k])
			}
		}
	}
}

// FuzzDecodeValues: corrupt session data never panics, and what decodes
// encodes back identically.
func FuzzDecodeValues(f *testing.F) {
	for _, v := range testValues {
		f.Add(encodeValues(v))
	}
	f.Add([]byte{1, 0xff, 0xff, 0xff, 0xff, 0x0f})
	f.Fuzz(func(t *testing.T, b []byte) {
		v, err := decodeValues(b)
		if err != nil || len(b) == 0 {
			return
		}
		if got := encodeValues(v); !bytes.Equal(got, b) {
			// Non-canonical order or varints decode too; they must
			// still decode to the same values.
			again, err := decodeValues(got)
			if err != nil || len(again) != len(v) {
				t.Fatalf("re-encoding %x lost data", b)
			}
		}
	})
}
