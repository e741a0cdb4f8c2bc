package main

import (
	"bytes"
	"encoding/json"
	"testing"

	"github.com/regiondb/regiondb/internal/testserver"
)

// TestAgainstStack runs the check against the MariaDB stack, which is not
// Aurora: the Aurora-only parts must say so, and the heartbeat visibility
// must be measured for real — r2 replicates through a 150 ms link, r1 in
// the same region, so r2's delay must be the larger by about the link's.
func TestAgainstStack(t *testing.T) {
	s := testserver.Require(t)
	var out bytes.Buffer
	code := run([]string{"-duration", "1500ms",
		"-writer", s.DSN("m1", "regiondb"), "-reader", s.DSN("r1", "regiondb"), "-reader", s.DSN("r2", "regiondb")}, &out)
	if code != 0 {
		t.Fatalf("exit %d", code)
	}
	var rep struct {
		Instances []instance `json:"instances"`
	}
	if err := json.Unmarshal(out.Bytes(), &rep); err != nil {
		t.Fatalf("report: %v\n%s", err, out.String())
	}
	if len(rep.Instances) != 3 {
		t.Fatalf("%d instances", len(rep.Instances))
	}
	for _, in := range rep.Instances {
		if len(in.Unavailable) == 0 {
			t.Errorf("%s: MariaDB reported no Aurora-only part as unavailable", in.Role)
		}
	}
	r1, r2 := rep.Instances[1].Visibility, rep.Instances[2].Visibility
	if r1 == nil || r2 == nil || r1.Seen < r1.Beats/2 || r2.Seen < r2.Beats/2 {
		t.Fatalf("visibility not measured: r1 %+v, r2 %+v", r1, r2)
	}
	if r2.P50 < 100 || r2.P50 < r1.P50+100 {
		t.Fatalf("r2 (150 ms link) p50 %.1f ms, r1 p50 %.1f ms: the delay is not what the stack makes", r2.P50, r1.P50)
	}
}
