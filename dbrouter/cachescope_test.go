package dbrouter

import (
	"context"
	"testing"
)

func TestRequiredPosition(t *testing.T) {
	rt := routerFor(t, DialectMariaDB)
	ctx := context.Background()
	if got := rt.RequiredPosition(ctx); got != "" {
		t.Fatalf("no scope: %q", got)
	}
	sctx := NewContext(ctx)
	if got := rt.RequiredPosition(sctx); got != "" {
		t.Fatalf("empty scope: %q", got)
	}
	if n := testing.AllocsPerRun(100, func() { rt.RequiredPosition(sctx) }); n != 0 {
		t.Fatalf("RequiredPosition of an empty scope allocates %v times", n)
	}
	trackerFrom(sctx).advance(newPosition([]posPart{{key: domainKey(0), seq: 42}}), true)
	if got := rt.RequiredPosition(sctx); got != "0:42" {
		t.Fatalf("after a write: %q, want 0:42", got)
	}
	// A read's served position is not a requirement of the cache.
	trackerFrom(sctx).advance(newPosition([]posPart{{key: domainKey(0), seq: 50}}), false)
	if got := rt.RequiredPosition(sctx); got != "0:42" {
		t.Fatalf("after a read: %q, want 0:42", got)
	}
}

func TestCoversPosition(t *testing.T) {
	rt := routerFor(t, DialectMariaDB)
	for _, tc := range []struct {
		a, b string
		want bool
	}{
		{"0:5", "", true},
		{"", "", true},
		{"", "0:1", false},
		{"0:5", "0:5", true},
		{"0:5", "0:6", false},
		{"0:5,1:2", "1:2", true},
		{"0:5", "1:1", false},
		{"hb:9", "hb:1", false}, // another dialect's
		{"3e11fa47-71ca-11e1-9e33-c80aa9429562:9", "0:1", false}, // a MySQL UUID under MariaDB
		{"0:9", "garbage", false},
	} {
		if got := rt.CoversPosition(tc.a, tc.b); got != tc.want {
			t.Errorf("CoversPosition(%q, %q) = %v, want %v", tc.a, tc.b, got, tc.want)
		}
	}
}
