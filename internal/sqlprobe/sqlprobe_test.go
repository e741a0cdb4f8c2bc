package sqlprobe

import (
	"testing"

	"github.com/regiondb/regiondb/internal/testserver"
)

// TestCasesHaveEffects runs every case against the stack and checks that
// MariaDB shows its effect: the list claims nothing the server does not do.
func TestCasesHaveEffects(t *testing.T) {
	s := testserver.Require(t)
	env, closeEnv, err := OpenEnv(t.Context(), s.Addr("m1"), s.Addr("r1"))
	if err != nil {
		t.Fatal(err)
	}
	defer closeEnv()
	for _, c := range Cases {
		t.Run(c.Name, func(t *testing.T) {
			ok, err := c.Observe(t.Context(), env)
			if err != nil {
				t.Fatal(err)
			}
			if !ok {
				t.Errorf("%s (%v): no effect observed", c.Query, c.Effect)
			}
		})
	}
}
