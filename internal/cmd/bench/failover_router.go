package main

import (
	"errors"

	"github.com/regiondb/regiondb/dbrouter"
	failoverharness "github.com/regiondb/regiondb/internal/harness/failover"
	"github.com/regiondb/regiondb/internal/testserver"
)

// openRouter opens the router of region on the stack with default settings:
// writer m1, readers r1 (ap-northeast-1) and r2 (us-east-1).
func openRouter(s *testserver.Stack, region string) (db failoverharness.DB, closeDB func(), isUnknown func(error) bool, err error) {
	rt, err := dbrouter.Open(dbrouter.Config{
		Region: region,
		Writer: dbrouter.Endpoint{Name: "m1", DSN: s.DSN("m1", failoverharness.Database)},
		Readers: []dbrouter.Endpoint{
			{Name: "r1", DSN: s.DSN("r1", failoverharness.Database), Region: testserver.PrimaryRegion},
			{Name: "r2", DSN: s.DSN("r2", failoverharness.Database), Region: testserver.SecondaryRegion},
		},
	})
	if err != nil {
		return nil, nil, nil, err
	}
	return rt, func() { rt.Close() }, func(err error) bool { return errors.Is(err, dbrouter.ErrOutcomeUnknown) }, nil
}
