package main

import (
	"context"
	"flag"
	"os"

	securityharness "github.com/regiondb/regiondb/internal/harness/security"
	"github.com/regiondb/regiondb/internal/testserver"
)

// security (`make bench-security`) attacks dbrouter on the local stack (found through
// REGIONDB_STACK, as `make bench-security` runs it under the stack command)
// with hostile and foreign replication positions (through RequirePosition,
// signed tokens, MergePositions, the shared watermark store and planted
// cache items), counts what reached the readers' general log besides the
// router's fixed query shapes, and checks the classifier against statements
// with a server-side effect. Its last stdout line is one JSON object:
//
//	{"injection_attempts":N,"injections_reached_sql":0,"crashes":0,"classifier_cases":N,"unsafe_to_reader":0,"fuzz_targets":N,"injections_reached_sql_without_validation":M,...}
func security(fs *flag.FlagSet) runFunc {
	return func(ctx context.Context, s *testserver.Stack, _ logFunc) (any, error) {
		return securityharness.Run(ctx, s, os.Stderr)
	}
}
