package dbrouter

import (
	"encoding/base64"
	"testing"
	"time"
)

var allDialects = []Dialect{DialectMariaDB, DialectMySQL, DialectHeartbeat}

// checkWaitShape fails t unless the dialect's wait query for p is "" or one
// of its fixed shapes.
func checkWaitShape(t *testing.T, d Dialect, p *position) {
	t.Helper()
	dl, _ := newDialect(d, "")
	q := dl.waitQuery(p, 500*time.Millisecond)
	if q == "" {
		return
	}
	if re := waitShapes[d]; re == nil || !re.MatchString(q) {
		t.Fatalf("%v: wait query for %q is not a fixed shape: %q", d, p, q)
	}
}

// FuzzTokenPayload fuzzes what follows the version and key id of a token
// that carries a valid MAC (signed in the target, as a holder of the key, or
// a fleet of another dialect, could): decoding never panics, and what it
// accepts re-encodes to the same position and gives each dialect that
// accepts it a wait query of a fixed shape.
func FuzzTokenPayload(f *testing.F) {
	now := time.Unix(1_800_000_000, 0)
	c := &tokenCodec{keys: []TokenKey{testKey1}, maxAge: time.Hour}
	for _, tc := range positionCases {
		if tc.text == "" {
			continue
		}
		tok, err := c.encode(mustPos(f, tc.text), now)
		if err != nil {
			f.Fatal(err)
		}
		b, _ := base64.RawURLEncoding.DecodeString(tok)
		f.Add(b[2 : len(b)-tokenMACLen])
	}
	f.Add([]byte{})
	f.Add([]byte{0x80, 0x80, 0x80})
	f.Fuzz(func(t *testing.T, payload []byte) {
		b := append([]byte{tokenVersion, testKey1.ID}, payload...)
		b = append(b, c.mac(testKey1.Secret, b)...)
		tok := base64.RawURLEncoding.EncodeToString(b)
		p, err := c.decode(tok, now)
		if err != nil {
			return
		}
		if len(p.parts) == 0 || len(p.parts) > maxTokenParts {
			t.Fatalf("accepted %d streams", len(p.parts))
		}
		again, err := c.encode(p, now)
		if err != nil {
			t.Fatalf("accepted %x but cannot re-encode: %v", payload, err)
		}
		if q, err := c.decode(again, now); err != nil || q.String() != p.String() {
			t.Fatalf("round trip of %x: %v %q", payload, err, q)
		}
		for _, d := range allDialects {
			if routerFor(t, d).checkDialect(p) == nil {
				checkWaitShape(t, d, p)
			}
		}
	})
}

// FuzzWaitQuery: any text that parses as a position, accepted by a dialect
// or not, gives each dialect a wait query that is "" or one of its fixed
// shapes.
func FuzzWaitQuery(f *testing.F) {
	for _, tc := range untrustedPositions {
		f.Add(tc.text)
	}
	for _, tc := range positionCases {
		f.Add(tc.text)
	}
	f.Fuzz(func(t *testing.T, s string) {
		p, err := parsePositionText(s)
		if err != nil {
			return
		}
		for _, d := range allDialects {
			checkWaitShape(t, d, p)
			if q, err := routerFor(t, d).parsePosition(s); err == nil {
				checkWaitShape(t, d, q)
			}
		}
	})
}

// FuzzRequirePosition feeds arbitrary strings to RequirePosition and
// MergePositions of every dialect: no panic, and a merge of what a dialect
// accepts is accepted again and covers both sides.
func FuzzRequirePosition(f *testing.F) {
	for _, a := range untrustedPositions {
		f.Add(a.text, "0:1")
		f.Add(a.text, uuidA+":1")
		f.Add("hb:2", a.text)
	}
	f.Fuzz(func(t *testing.T, a, b string) {
		for _, d := range allDialects {
			rt := routerFor(t, d)
			ctx, ok := rt.RequirePosition(t.Context(), a)
			if req, _ := ctx.Value(requireKey{}).(*requirement); req == nil || !ok() {
				t.Fatal("no requirement")
			} else if req.pos != nil && rt.checkDialect(req.pos) != nil {
				t.Fatalf("%v: requirement %q of another dialect", d, req.pos)
			}
			m := rt.MergePositions(a, b)
			pm, err := rt.parsePosition(m)
			if err != nil {
				t.Fatalf("%v: MergePositions(%q, %q) = %q, which does not parse: %v", d, a, b, m, err)
			}
			for _, s := range []string{a, b} {
				if p, err := rt.parsePosition(s); err == nil && !pm.covers(p) {
					t.Fatalf("%v: merge %q does not cover %q", d, m, s)
				}
			}
			checkWaitShape(t, d, pm)
		}
	})
}

// FuzzSharedWatermark: a value read from the shared store never panics the
// parser, and an accepted one has a position of the dialect only.
func FuzzSharedWatermark(f *testing.F) {
	f.Add("v1 0:5 100 0 1 0")
	f.Add("v1 " + uuidA + ":5 0 0 0 0")
	f.Add("v1 hb:5 0 0 1 0")
	f.Add("v1 - 0 0 1 0")
	f.Add("v1 " + injectionUUID + ":1 0 0 1 0")
	f.Fuzz(func(t *testing.T, s string) {
		for _, d := range allDialects {
			k := routerFor(t, d).dialect.kind()
			st, ok := parseShared(s, k)
			if ok && !st.wm.only(k) {
				t.Fatalf("%v: accepted %q with a foreign position", d, s)
			}
			if ok {
				checkWaitShape(t, d, st.wm)
			}
		}
	})
}
