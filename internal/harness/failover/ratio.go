package failover

import (
	"slices"
	"time"
)

// PairedRatio measures the cost of b relative to a, side by side in one
// process: pairs times it runs n calls of a and n calls of b in alternating
// order (a first in even pairs, b first in odd ones, so that drift and
// warm-up hit both alike) and returns the median of the per-pair ratios
// time(b)/time(a), and the median per-call times of a and b.
func PairedRatio(a, b func(), n, pairs int) (ratio float64, aPerOp, bPerOp time.Duration) {
	batch := func(f func()) time.Duration {
		start := time.Now()
		for range n {
			f()
		}
		return time.Since(start)
	}
	ratios := make([]float64, 0, pairs)
	as := make([]time.Duration, 0, pairs)
	bs := make([]time.Duration, 0, pairs)
	for i := range pairs {
		var ta, tb time.Duration
		if i%2 == 0 {
			ta = batch(a)
			tb = batch(b)
		} else {
			tb = batch(b)
			ta = batch(a)
		}
		ratios = append(ratios, float64(tb)/float64(ta))
		as = append(as, ta/time.Duration(n))
		bs = append(bs, tb/time.Duration(n))
	}
	slices.Sort(ratios)
	slices.Sort(as)
	slices.Sort(bs)
	return median(ratios), as[len(as)/2], bs[len(bs)/2]
}

// median returns the median of the sorted x.
func median(x []float64) float64 {
	if len(x) == 0 {
		return 0
	}
	if len(x)%2 == 1 {
		return x[len(x)/2]
	}
	return (x[len(x)/2-1] + x[len(x)/2]) / 2
}
