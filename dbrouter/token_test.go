package dbrouter

import (
	"errors"
	"strings"
	"testing"
	"time"
)

var (
	testKey1 = TokenKey{ID: 1, Secret: []byte("key-one-0123456789abcdef")}
	testKey2 = TokenKey{ID: 2, Secret: []byte("key-two-0123456789abcdef")}
	uuidA    = "3e11fa47-71ca-11e1-9e33-c80aa9429562"
	uuidB    = "4f22fb58-82db-22f2-af44-d91bba53a673"
)

// positionCases feed the position and token tests and the fuzz seeds.
var positionCases = []struct {
	name string
	text string // canonical text form
}{
	{"empty", ""},
	{"one domain", "0:8"},
	{"two domains", "0:8,1:5"},
	{"big seq", "4294967295:18446744073709551615"},
	{"mysql uuid", uuidA + ":1234"},
	{"two uuids", uuidA + ":18446744073709551615," + uuidB + ":18446744073709551615"},
	{"heartbeat", "hb:99"},
}

func mustPos(t testing.TB, s string) *position {
	t.Helper()
	p, err := parsePositionText(s)
	if err != nil {
		t.Fatalf("parse %q: %v", s, err)
	}
	return p
}

func TestPositionText(t *testing.T) {
	for _, tc := range positionCases {
		t.Run(tc.name, func(t *testing.T) {
			if got := mustPos(t, tc.text).String(); got != tc.text {
				t.Errorf("round trip %q -> %q", tc.text, got)
			}
		})
	}
	for _, bad := range []string{"x", "0:", ":1", "0:-1", "00:1", "0:1,", "zz-zz:1", "0:1:2"} {
		if _, err := parsePositionText(bad); err == nil {
			t.Errorf("parsePositionText(%q) succeeded", bad)
		}
	}
}

func TestPositionCovers(t *testing.T) {
	for _, tc := range []struct {
		a, b string
		want bool
	}{
		{"0:8", "0:8", true},
		{"0:9", "0:8", true},
		{"0:7", "0:8", false},
		{"0:8", "", true},
		{"", "0:1", false},
		{"0:8,1:5", "1:5", true},
		{"0:8", "0:8,1:1", false},
		{"0:8,1:4", "0:8,1:5", false},
	} {
		if got := mustPos(t, tc.a).covers(mustPos(t, tc.b)); got != tc.want {
			t.Errorf("%q covers %q = %v, want %v", tc.a, tc.b, got, tc.want)
		}
	}
	m := merge(mustPos(t, "0:8,2:1"), mustPos(t, "0:5,1:3"))
	if got := m.String(); got != "0:8,1:3,2:1" {
		t.Errorf("merge = %q", got)
	}
}

func TestParseServerPositions(t *testing.T) {
	for _, tc := range []struct {
		name, in, want string
		mysql, prefix  bool
	}{
		{"mariadb one", "0-1-8", "0:8", false, false},
		{"mariadb many", "0-1-8,1-2-5", "0:8,1:5", false, false},
		{"mariadb empty", "", "", false, false},
		{"mysql executed", uuidA + ":1-5:7-9", uuidA + ":9", true, false},
		{"mysql prefix", uuidA + ":1-5:7-9", uuidA + ":5", true, true},
		{"mysql prefix not from 1", uuidA + ":3-9", uuidA + ":0", true, true},
		{"mysql two with newline", uuidA + ":1-5,\n" + strings.ToUpper(uuidB) + ":1-2", uuidA + ":5," + uuidB + ":2", true, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var p *position
			var err error
			if tc.mysql {
				p, err = parseMySQLGTIDSet(tc.in, tc.prefix)
			} else {
				p, err = parseMariaDBGTIDList(tc.in)
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := p.String(); got != tc.want {
				t.Errorf("got %q, want %q", got, tc.want)
			}
		})
	}
	for _, bad := range []string{"0-1", "a-b-c", "0-1-x"} {
		if _, err := parseMariaDBGTIDList(bad); err == nil {
			t.Errorf("parseMariaDBGTIDList(%q) succeeded", bad)
		}
	}
	for _, bad := range []string{"nouuid:1", uuidA, uuidA + ":5-3", uuidA + ":x"} {
		if _, err := parseMySQLGTIDSet(bad, false); err == nil {
			t.Errorf("parseMySQLGTIDSet(%q) succeeded", bad)
		}
	}
}

func TestToken(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	c := &tokenCodec{keys: []TokenKey{testKey1}, maxAge: time.Hour}
	for _, tc := range positionCases {
		if tc.text == "" {
			continue
		}
		t.Run(tc.name, func(t *testing.T) {
			p := mustPos(t, tc.text)
			tok, err := c.encode(p, now)
			if err != nil {
				t.Fatal(err)
			}
			if len(tok) >= 100 {
				t.Errorf("token is %d bytes", len(tok))
			}
			got, err := c.decode(tok, now.Add(time.Minute))
			if err != nil {
				t.Fatal(err)
			}
			if got.String() != tc.text {
				t.Errorf("decoded %q, want %q", got, tc.text)
			}
		})
	}
	p := mustPos(t, "0:42")
	tok, _ := c.encode(p, now)

	t.Run("rotation", func(t *testing.T) {
		rotated := &tokenCodec{keys: []TokenKey{testKey2, testKey1}, maxAge: time.Hour}
		if _, err := rotated.decode(tok, now); err != nil {
			t.Errorf("old key no longer verifies: %v", err)
		}
		newTok, _ := rotated.encode(p, now)
		if _, err := c.decode(newTok, now); !errors.Is(err, errTokenForged) {
			t.Errorf("token of an unknown key: %v", err)
		}
	})
	t.Run("forged", func(t *testing.T) {
		other := &tokenCodec{keys: []TokenKey{{ID: 1, Secret: []byte("attacker-guess-0123456789")}}, maxAge: time.Hour}
		forged, _ := other.encode(mustPos(t, "0:999999"), now)
		if _, err := c.decode(forged, now); !errors.Is(err, errTokenForged) {
			t.Errorf("forged token: %v", err)
		}
	})
	t.Run("expired", func(t *testing.T) {
		if _, err := c.decode(tok, now.Add(2*time.Hour)); !errors.Is(err, errTokenExpired) {
			t.Errorf("expired token: %v", err)
		}
	})
	t.Run("corrupt", func(t *testing.T) {
		for _, bad := range []string{"", "!!!", "AAAA", tok[:len(tok)-3], tok + "A", strings.Repeat("A", 200)} {
			if _, err := c.decode(bad, now); err == nil {
				t.Errorf("decode(%q) succeeded", bad)
			}
		}
	})
	t.Run("too many streams", func(t *testing.T) {
		if _, err := c.encode(mustPos(t, "0:1,1:1,2:1"), now); !errors.Is(err, errTokenTooBig) {
			t.Errorf("3 streams: %v", err)
		}
	})
}

// FuzzToken checks that decoding never panics and never accepts an input
// that is not an encoding made with the key.
func FuzzToken(f *testing.F) {
	now := time.Unix(1_800_000_000, 0)
	c := &tokenCodec{keys: []TokenKey{testKey1}, maxAge: time.Hour}
	for _, tc := range positionCases {
		if tc.text != "" {
			tok, _ := c.encode(mustPos(f, tc.text), now)
			f.Add(tok)
		}
	}
	f.Add("garbage")
	f.Fuzz(func(t *testing.T, s string) {
		p, err := c.decode(s, now)
		if err != nil {
			return
		}
		// Accepted: it must re-encode to a token that decodes the same.
		again, err := c.encode(p, now)
		if err != nil {
			t.Fatalf("accepted %q but cannot re-encode: %v", s, err)
		}
		q, err := c.decode(again, now)
		if err != nil || q.String() != p.String() {
			t.Fatalf("round trip of accepted %q: %v %q", s, err, q)
		}
	})
}

// FuzzPositionText checks Parse(Format(x)) == x for the text form and the
// server formats' parsers for panics.
func FuzzPositionText(f *testing.F) {
	for _, tc := range positionCases {
		f.Add(tc.text)
	}
	f.Add("0-1-8,1-2-5")
	f.Add(uuidA + ":1-5:7")
	f.Fuzz(func(t *testing.T, s string) {
		parseMariaDBGTIDList(s)
		parseMySQLGTIDSet(s, true)
		parseMySQLGTIDSet(s, false)
		p, err := parsePositionText(s)
		if err != nil {
			return
		}
		q, err := parsePositionText(p.String())
		if err != nil || q.String() != p.String() {
			t.Fatalf("round trip %q -> %q -> %v %q", s, p, err, q)
		}
	})
}
