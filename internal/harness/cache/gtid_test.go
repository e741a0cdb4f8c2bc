package cache

import "testing"

func TestMergePositions(t *testing.T) {
	g := &GTIDConsistency{}
	for _, tc := range []struct{ a, b, want string }{
		{"", "", ""},
		{"0-1-5", "", "0-1-5"},
		{"", "0-1-5", "0-1-5"},
		{"0-1-5", "0-1-7", "0-1-7"},
		{"0-1-9", "0-1-7", "0-1-9"},
		{"0-1-9,1-2-3", "1-2-4", "0-1-9,1-2-4"},
		{"0-2-10", "0-1-9", "0-2-10"},
	} {
		if got := g.MergePositions(tc.a, tc.b); got != tc.want {
			t.Errorf("MergePositions(%q, %q) = %q, want %q", tc.a, tc.b, got, tc.want)
		}
	}
}
