package failover

import "testing"

func TestPairedRatio(t *testing.T) {
	spin := func(k int) func() {
		return func() {
			x := 0
			for i := range k {
				x += i
			}
			_ = x
		}
	}
	r, a, b := PairedRatio(spin(1000), spin(1000), 100, 11)
	if r <= 0 || a <= 0 || b <= 0 {
		t.Fatalf("ratio %v, a %v, b %v", r, a, b)
	}
	if m := median([]float64{1, 2, 3, 4}); m != 2.5 {
		t.Fatalf("median = %v", m)
	}
}
