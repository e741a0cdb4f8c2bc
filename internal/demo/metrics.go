package demo

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
)

// point and dump mirror the JSON of photoalbum's /debug/metrics: a snapshot
// of the instance's OpenTelemetry in-memory metric reader.
type point struct {
	Attrs  map[string]string `json:"attrs"`
	Value  float64           `json:"value"`
	Count  uint64            `json:"count"`
	Bounds []float64         `json:"bounds"`
	Counts []uint64          `json:"counts"`
}

type dump struct {
	Scope  string  `json:"scope"`
	Name   string  `json:"name"`
	Unit   string  `json:"unit"`
	Kind   string  `json:"kind"`
	Points []point `json:"points"`
}

// snapshot is one instance's metrics at one moment.
type snapshot []dump

func fetchMetrics(ctx context.Context, hc *http.Client, baseURL string) (snapshot, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, baseURL+"/debug/metrics", nil)
	if err != nil {
		return nil, err
	}
	resp, err := hc.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("demo: %s/debug/metrics: %s", baseURL, resp.Status)
	}
	var s snapshot
	err = json.NewDecoder(resp.Body).Decode(&s)
	return s, err
}

func matches(attrs, want map[string]string) bool {
	for k, v := range want {
		if attrs[k] != v {
			return false
		}
	}
	return true
}

// sum adds the values (counters, gauges) or counts (histograms) of the
// points of metric name whose attributes include want.
func (s snapshot) sum(name string, want map[string]string) float64 {
	var total float64
	for _, d := range s {
		if d.Name != name {
			continue
		}
		for _, p := range d.Points {
			if !matches(p.Attrs, want) {
				continue
			}
			if d.Kind == "histogram" {
				total += float64(p.Count)
			} else {
				total += p.Value
			}
		}
	}
	return total
}

// value adds the values of every point of metric name (for a histogram,
// the sum of the recorded values).
func (s snapshot) value(name string) float64 {
	var total float64
	for _, d := range s {
		if d.Name == name {
			for _, p := range d.Points {
				total += p.Value
			}
		}
	}
	return total
}

// by groups sum by the values of the attribute keys (joined with "/").
func (s snapshot) by(name string, want map[string]string, keys ...string) map[string]float64 {
	out := map[string]float64{}
	for _, d := range s {
		if d.Name != name {
			continue
		}
		for _, p := range d.Points {
			if !matches(p.Attrs, want) {
				continue
			}
			var parts []string
			for _, k := range keys {
				v := p.Attrs[k]
				if v == "" {
					v = "-"
				}
				parts = append(parts, v)
			}
			v := p.Value
			if d.Kind == "histogram" {
				v = float64(p.Count)
			}
			out[strings.Join(parts, "/")] += v
		}
	}
	return out
}

// has reports whether the snapshot holds metric name.
func (s snapshot) has(name string) bool {
	for _, d := range s {
		if d.Name == name {
			return true
		}
	}
	return false
}

// names lists the metric names with the given prefix.
func (s snapshot) names(prefix string) []string {
	var out []string
	for _, d := range s {
		if strings.HasPrefix(d.Name, prefix) {
			out = append(out, d.Name)
		}
	}
	return out
}
