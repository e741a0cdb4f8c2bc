package demo

// Metric and attribute names of regiondb's packages that the report reads
// from the instances' /debug/metrics (see each package's telemetry.go).
const (
	metricStatements = "regiondb.dbrouter.statements"
	attrRoute        = "regiondb.route"  // "writer" or "reader"
	attrReason       = "regiondb.reason" // fresh_reader, token_wait, writer_fallback, ...
	routeReader      = "reader"
	routeWriter      = "writer"
	reasonWrite      = "write"

	// photoalbum's own counter of the router's Stats (ReadsLocal, ...).
	metricReadsServed = "photoalbum.dbrouter.reads"
	attrServedBy      = "photoalbum.served_by"

	metricCacheHits    = "regiondb.cache.hits"
	metricCacheMisses  = "regiondb.cache.misses"
	metricCacheRefused = "regiondb.cache.fills.refused"
	metricCacheErrors  = "regiondb.cache.errors"
	metricCacheSkips   = "regiondb.cache.skips"
	attrCacheReason    = "regiondb.cache.reason"

	metricSessionFallbacks = "regiondb.session.cross_region_fallbacks"
	metricSessionReads     = "regiondb.session.request.reads"  // histogram: DynamoDB reads per request
	metricSessionWrites    = "regiondb.session.request.writes" // histogram: DynamoDB writes per request
	metricSessionConflicts = "regiondb.session.conflicts"
)
