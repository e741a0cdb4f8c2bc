// Package otelattr holds the OpenTelemetry attribute keys (and the
// instrumentation version) that regiondb's packages share, so that a dashboard can join their spans and metrics on
// them. Semantic-convention keys come from go.opentelemetry.io/otel/semconv;
// a key only one package uses stays in that package, under the same
// "regiondb." prefix.
package otelattr

import (
	"runtime/debug"

	"go.opentelemetry.io/otel/attribute"
)

// Region is the cloud region of the endpoint, cache cluster or table that
// served an operation (for example "ap-northeast-1").
const Region = attribute.Key("regiondb.region")

// Version returns the version of the regiondb module as the main program
// was built with it (the instrumentation scope version of every package's
// tracer and meter), or "" when unknown.
func Version() string {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return ""
	}
	if bi.Main.Path == module {
		return bi.Main.Version
	}
	for _, d := range bi.Deps {
		if d.Path == module {
			return d.Version
		}
	}
	return ""
}

const module = "github.com/regiondb/regiondb"
