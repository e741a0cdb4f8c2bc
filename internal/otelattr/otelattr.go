// Package otelattr holds the OpenTelemetry attribute keys that regiondb's
// packages share, so that a dashboard can join their spans and metrics on
// them. Semantic-convention keys come from go.opentelemetry.io/otel/semconv;
// a key only one package uses stays in that package, under the same
// "regiondb." prefix.
package otelattr

import "go.opentelemetry.io/otel/attribute"

// Region is the cloud region of the endpoint, cache cluster or table that
// served an operation (for example "ap-northeast-1").
const Region = attribute.Key("regiondb.region")
