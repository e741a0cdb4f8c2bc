package security

import (
	"strings"
	"testing"
	"time"

	"github.com/regiondb/regiondb/internal/testserver"
)

// TestNaiveWaitQuery: the control rebuilds the injection exactly,
// and the fixed shapes reject it while accepting the router's own queries.
func TestNaiveWaitQuery(t *testing.T) {
	q, ok := naiveWaitQuery(uuidText(payloads[0]) + ":1")
	if !ok || q != "SELECT MASTER_GTID_WAIT('' + sleep(0) + '-0-1', 0.050)" {
		t.Fatalf("naive query %q %v", q, ok)
	}
	if fixedShape(q) {
		t.Errorf("injection %q matches a fixed shape", q)
	}
	for _, ok := range []string{
		"SELECT MASTER_GTID_WAIT('0-0-8,1-0-5', 0.500)", "SELECT @@global.gtid_current_pos", workload,
		"SELECT IF(@@global.read_only = 0, NULL, MASTER_GTID_WAIT('0-0-8,1-0-5', 0.500))",
		"SELECT IF(@@global.read_only = 0, NULL, MASTER_GTID_WAIT('0-0-8', 0.020)), @@global.gtid_current_pos",
		"SELECT WAIT_FOR_EXECUTED_GTID_SET('3e11fa47-71ca-11e1-9e33-c80aa9429562:1-42', 0.020), @@global.gtid_executed",
		"SELECT WAIT_FOR_EXECUTED_GTID_SET('3e11fa47-71ca-11e1-9e33-c80aa9429562:1-42', 1.000)",
		"SELECT IF(IF(@@global.read_only = 1, MASTER_GTID_WAIT('0-0-8,1-0-5', 0.021), 1) = 0, 1, (SELECT 1 UNION ALL SELECT 2)) AS g",
	} {
		if !fixedShape(ok) {
			t.Errorf("%q is not a fixed shape", ok)
		}
	}
	if _, ok := naiveWaitQuery("0:x"); ok {
		t.Error("naive parser accepted a bad sequence number")
	}
}

func TestCorpus(t *testing.T) {
	if n := len(Positions()); n < 40 {
		t.Errorf("%d positions", n)
	}
	for _, tok := range Tokens(time.Now()) {
		if len(tok) > 200 {
			t.Errorf("token of %d bytes", len(tok))
		}
	}
	root, err := testserver.ModuleRoot()
	if err != nil {
		t.Fatal(err)
	}
	n, err := CountFuzzTargets(root)
	if err != nil || n < 5 {
		t.Errorf("CountFuzzTargets = %d, %v", n, err)
	}
	if !strings.Contains(uuidText("' + sleep(0) + '"), "-") {
		t.Error("uuidText")
	}
}

// TestRunStack runs the whole harness on the stack: no injection reaches a
// reader, nothing crashes, no statement with an effect is routed to a
// reader, and the controls do see what they must.
func TestRunStack(t *testing.T) {
	s := testserver.Require(t)
	var log strings.Builder
	r, err := Run(t.Context(), s, &log)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%+v\n%s", r, log.String())
	if r.InjectionAttempts == 0 || r.InjectionsReached != 0 || r.Crashes != 0 || r.UnsafeToReader != 0 {
		t.Errorf("attempts %d, reached %d, crashes %d, unsafe %d", r.InjectionAttempts, r.InjectionsReached, r.Crashes, r.UnsafeToReader)
	}
	if r.StackedAttempts == 0 || r.StackedReached != 0 || r.StackedControl == 0 {
		t.Errorf("stacked statements: %d attempts, %d reached a server, control ran %d", r.StackedAttempts, r.StackedReached, r.StackedControl)
	}
	if r.ReachedWithoutVal == 0 || r.UnsafeNaivePrefix == 0 {
		t.Errorf("controls saw nothing: %d injections, %d unsafe", r.ReachedWithoutVal, r.UnsafeNaivePrefix)
	}
	if r.ClassifierEffects != r.ClassifierCases || r.ReaderStatements == 0 {
		t.Errorf("effects %d of %d cases, %d reader statements", r.ClassifierEffects, r.ClassifierCases, r.ReaderStatements)
	}
}
