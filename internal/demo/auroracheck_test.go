package demo

import (
	"context"
	"encoding/json"
	"os/exec"
	"testing"
	"time"

	"github.com/regiondb/regiondb/internal/testserver"
)

// TestAuroraCheck runs examples/aurora-check against the MariaDB stack,
// which is not Aurora: the Aurora-only parts must say so, and the heartbeat
// visibility must be measured for real — r2 replicates through a 150 ms
// link, r1 in the writer's region, so r2's delay must be the larger by
// about the link's.
func TestAuroraCheck(t *testing.T) {
	s := testserver.Require(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	bin, err := Build(ctx, "./examples/aurora-check", t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	out, err := exec.CommandContext(ctx, bin, "-duration", "1500ms",
		"-writer", s.DSN("m1", "regiondb"), "-reader", s.DSN("r1", "regiondb"), "-reader", s.DSN("r2", "regiondb")).Output()
	if err != nil {
		t.Fatalf("aurora-check: %v\n%s", err, out)
	}
	type visibility struct {
		Beats int     `json:"beats"`
		Seen  int     `json:"seen"`
		P50   float64 `json:"p50"`
	}
	var rep struct {
		Instances []struct {
			Role        string      `json:"role"`
			Visibility  *visibility `json:"heartbeat_visibility_ms"`
			Unavailable []string    `json:"unavailable"`
		} `json:"instances"`
	}
	if err := json.Unmarshal(out, &rep); err != nil {
		t.Fatalf("report: %v\n%s", err, out)
	}
	if len(rep.Instances) != 3 {
		t.Fatalf("%d instances:\n%s", len(rep.Instances), out)
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
