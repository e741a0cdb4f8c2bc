// Command bench-security attacks dbrouter on the local stack (found through
// REGIONDB_STACK, as `make bench-security` runs it under the stack command)
// with hostile and foreign replication positions (through RequirePosition,
// signed tokens, MergePositions, the shared watermark store and planted
// cache items), counts what reached the readers' general log besides the
// router's fixed query shapes, and checks the classifier against statements
// with a server-side effect. Its last stdout line is one JSON object:
//
//	{"injection_attempts":N,"injections_reached_sql":0,"crashes":0,"classifier_cases":N,"unsafe_to_reader":0,"fuzz_targets":N,"injections_reached_sql_without_validation":M,...}
package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"time"

	"github.com/regiondb/regiondb/internal/securityharness"
	"github.com/regiondb/regiondb/internal/testserver"
)

func main() {
	if securityharness.IsChild() { // one feed of attempts
		os.Exit(securityharness.ChildMain())
	}
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "bench-security:", err)
		os.Exit(1)
	}
}

func run() error {
	s, err := testserver.Lookup()
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	r, err := securityharness.Run(ctx, s, os.Stderr)
	if err != nil {
		return err
	}
	b, err := json.Marshal(r)
	if err != nil {
		return err
	}
	fmt.Println(string(b))
	return nil
}
