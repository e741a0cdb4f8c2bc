// Package paired times two operations side by side, the way the project's
// overhead figures are measured on a noisy two-core machine: in alternating
// order within one batch, so that drift and other processes' load fall on
// both, and compared by medians rather than means.
package paired

import (
	"slices"
	"time"
)

// Batch runs a and b n times each, alternating which goes first (starting
// with phase's parity), and returns the median nanoseconds of each.
func Batch(n, phase int, a, b func() error) (medA, medB float64, err error) {
	da, db := make([]float64, 0, n), make([]float64, 0, n)
	for j := range n {
		swap := (phase+j)%2 == 1
		first, second := a, b
		if swap {
			first, second = b, a
		}
		t0 := time.Now()
		if err := first(); err != nil {
			return 0, 0, err
		}
		t1 := time.Now()
		if err := second(); err != nil {
			return 0, 0, err
		}
		t2 := time.Now()
		d1, d2 := float64(t1.Sub(t0).Nanoseconds()), float64(t2.Sub(t1).Nanoseconds())
		if swap {
			d1, d2 = d2, d1
		}
		da, db = append(da, d1), append(db, d2)
	}
	return Median(da), Median(db), nil
}

// Median returns the median of xs (0 for none).
func Median(xs []float64) float64 {
	s := slices.Clone(xs)
	slices.Sort(s)
	if len(s) == 0 {
		return 0
	}
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}
