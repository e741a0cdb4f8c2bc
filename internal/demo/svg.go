package demo

import (
	"fmt"
	"html"
	"maps"
	"math"
	"slices"
	"sort"
	"strings"
)

var regionColor = map[string]string{tokyo: "#1f77b4", virginia: "#e8731a"}

// SVG draws latency over time, one dot per request and the p99 per second
// per region, with the scripted events and faults marked, and the report's
// main figures underneath. Hand-written SVG: no dependency.
func (r *Report) SVG() string {
	const (
		width, height = 1200, 560
		x0, y0        = 70, 50
		pw, ph        = 1090, 380
	)
	dur := math.Max(r.DurationS, 1)
	maxMS := 1000.0
	for _, s := range r.samples {
		maxMS = math.Max(maxMS, float64(s.Dur.Microseconds())/1000)
	}
	lo, hi := -1.0, math.Ceil(math.Log10(maxMS))
	xOf := func(sec float64) float64 { return x0 + pw*sec/dur }
	yOf := func(ms float64) float64 {
		l := math.Log10(math.Max(ms, 0.1))
		return y0 + ph - ph*(l-lo)/(hi-lo)
	}
	var b strings.Builder
	f := func(format string, args ...any) { fmt.Fprintf(&b, format, args...) }
	f(`<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" font-family="sans-serif" font-size="12">`+"\n", width, height, width, height)
	f(`<rect width="100%%" height="100%%" fill="white"/>` + "\n")
	f(`<text x="%d" y="24" font-size="16" font-weight="bold">regiondb photo-album demo: request latency over time, faults marked</text>`+"\n", x0)
	// Axes and grid: decades on y, every 5 s on x.
	for e := lo; e <= hi; e++ {
		y := yOf(math.Pow(10, e))
		f(`<line x1="%d" y1="%.1f" x2="%d" y2="%.1f" stroke="#ddd"/>`+"\n", x0, y, x0+pw, y)
		f(`<text x="%d" y="%.1f" text-anchor="end">%s ms</text>`+"\n", x0-6, y+4, trimFloat(math.Pow(10, e)))
	}
	for s := 0.0; s <= dur; s += 5 {
		x := xOf(s)
		f(`<line x1="%.1f" y1="%d" x2="%.1f" y2="%d" stroke="#eee"/>`+"\n", x, y0, x, y0+ph)
		f(`<text x="%.1f" y="%d" text-anchor="middle">%.0f s</text>`+"\n", x, y0+ph+16, s)
	}
	f(`<rect x="%d" y="%d" width="%d" height="%d" fill="none" stroke="#888"/>`+"\n", x0, y0, pw, ph)
	// Events.
	for _, e := range r.Events {
		x := xOf(float64(e.At) / 1000)
		color, dash := "#999", "4,4"
		if e.Fault {
			color, dash = "#d62728", "6,3"
		}
		f(`<line x1="%.1f" y1="%d" x2="%.1f" y2="%d" stroke="%s" stroke-dasharray="%s" stroke-width="1.5"/>`+"\n", x, y0, x, y0+ph, color, dash)
		f(`<text transform="translate(%.1f,%d) rotate(-90)" fill="%s" font-size="10" stroke="white" stroke-width="3" paint-order="stroke">%s</text>`+"\n", x+11, y0+ph-4, color, html.EscapeString(e.Label))
	}
	// Dots: successes per region, failures as red crosses. Thin out beyond
	// 12 000 successes so the file stays small.
	ok := 0
	for _, s := range r.samples {
		if s.Status > 0 && s.Status < 500 {
			ok++
		}
	}
	every := max(1, ok/12000)
	i := 0
	for _, region := range []string{tokyo, virginia} {
		f(`<g fill="%s" fill-opacity="0.35">`+"\n", regionColor[region])
		for _, s := range r.samples {
			if s.Region != region || s.Status == 0 || s.Status >= 500 {
				continue
			}
			if i++; i%every != 0 {
				continue
			}
			f(`<circle cx="%.1f" cy="%.1f" r="1.6"/>`, xOf(s.At.Seconds()), yOf(float64(s.Dur.Microseconds())/1000))
		}
		f("\n</g>\n")
	}
	f(`<g stroke="#d62728" stroke-width="1.2">` + "\n")
	for _, s := range r.samples {
		if s.Status != 0 && s.Status < 500 {
			continue
		}
		x, y := xOf(s.At.Seconds()), yOf(float64(s.Dur.Microseconds())/1000)
		f(`<path d="M%.1f %.1fl5 5m0 -5l-5 5"/>`, x-2.5, y-2.5)
	}
	f("\n</g>\n")
	// p99 per second per region.
	for _, region := range []string{tokyo, virginia} {
		buckets := map[int][]float64{}
		for _, s := range r.samples {
			if s.Region == region {
				sec := int(s.At.Seconds())
				buckets[sec] = append(buckets[sec], float64(s.Dur.Microseconds())/1000)
			}
		}
		var pts []string
		for _, sec := range slices.Sorted(maps.Keys(buckets)) {
			v := buckets[sec]
			sort.Float64s(v)
			pts = append(pts, fmt.Sprintf("%.1f,%.1f", xOf(float64(sec)+0.5), yOf(quantile(v, 0.99))))
		}
		f(`<polyline points="%s" fill="none" stroke="%s" stroke-width="2"/>`+"\n", strings.Join(pts, " "), regionColor[region])
	}
	// Legend.
	ly := y0 + ph + 40
	lx := x0
	for _, region := range []string{tokyo, virginia} {
		f(`<circle cx="%d" cy="%d" r="4" fill="%s"/><text x="%d" y="%d">%s: requests (dots), p99 per second (line)</text>`+"\n",
			lx, ly-4, regionColor[region], lx+10, ly, html.EscapeString(regionLabel(region)))
		lx += 430
	}
	f(`<path d="M%d %dl8 8m0 -8l-8 8" stroke="#d62728" stroke-width="1.5"/><text x="%d" y="%d">failed (5xx / no answer)</text>`+"\n", lx, ly-8, lx+14, ly)
	// Figures.
	total := 0
	for _, n := range r.Requests {
		total += n
	}
	lines := []string{
		fmt.Sprintf("Requests: %d (Tokyo %d, N. Virginia %d). Read-your-writes violations: %d of %d verified reads.",
			total, r.Requests[tokyo], r.Requests[virginia], r.RYWViolations, r.RYWChecks),
		fmt.Sprintf("Reads by the local reader: Tokyo %.0f, N. Virginia %.0f; by the writer: Tokyo %.0f, N. Virginia %.0f %s.",
			r.ReadsLocal[tokyo], r.ReadsLocal[virginia], r.ReadsWriter[tokyo], r.ReadsWriter[virginia], fmtMap(r.ReadsWriterByReason)),
		fmt.Sprintf("Cache hit ratio %.1f %%, stale fills refused %.0f. Sessions: %d cross-region checks, %d anomalies, %.0f fallback reads.",
			100*r.CacheHitRatio, r.StaleFillsRefused, r.SessionCrossRegionChecks, r.SessionAnomalies, r.SessionFallbacks),
		fmt.Sprintf("Failover (kill -9 of the writer, replica promoted): writes resumed after %s.", fmtRecovery(r.FailoverRecoveryMS)),
	}
	for i, l := range lines {
		f(`<text x="%d" y="%d">%s</text>`+"\n", x0, ly+28+18*i, html.EscapeString(l))
	}
	f("</svg>\n")
	return b.String()
}

func fmtRecovery(m map[string]float64) string {
	var parts []string
	for _, region := range []string{tokyo, virginia} {
		if v, ok := m[region]; ok {
			parts = append(parts, fmt.Sprintf("%.0f ms in %s", v, regionNames[region]))
		}
	}
	if len(parts) == 0 {
		return "(not measured)"
	}
	return strings.Join(parts, ", ")
}

func trimFloat(v float64) string {
	return strings.TrimRight(strings.TrimRight(fmt.Sprintf("%.1f", v), "0"), ".")
}
