// Package regiondb is the overview of a Go library for services that run in
// several cloud regions at once against one writer database, a session table
// replicated between regions, and a cache per region.
//
// The setting it was built for: a photo-sharing service in Tokyo and
// N. Virginia, with an Aurora MySQL Global Database (writer in Tokyo, readers
// in both regions, 100-300 ms of cross-region lag and spikes of seconds),
// DynamoDB Global Tables for sessions (about 1 s of replication, every
// replicated write billed in every region), and a Memcached cluster per region.
//
// regiondb has three packages, each usable alone:
//
//   - [github.com/regiondb/regiondb/dbrouter] wraps database/sql: writes go to
//     the writer, reads to the local region's reader, and a consistency token
//     carried by the context (and by a cookie or header between requests and
//     regions) makes sure a user never misses their own write.
//   - [github.com/regiondb/regiondb/session] is a DynamoDB session store with
//     net/http middleware that reads lazily, writes rarely, and follows a user
//     whose next request lands in the other region.
//   - [github.com/regiondb/regiondb/cache] is a Memcached read-through layer
//     that runs one load per key under a stampede, never refills the cache with
//     data older than the last invalidated write, and falls through to the
//     loader when Memcached is down.
//
// They fit together through small interfaces rather than imports: the router
// satisfies the cache's Consistency interface, so an invalidation records the
// writer position of the write that caused it and a refill must come from a
// source that has applied it; and the session can carry the router's token
// for services that prefer it to a cookie.
//
// Everything is instrumented with OpenTelemetry and costs next to nothing when
// no SDK is installed. Each package logs only through the *slog.Logger its
// Config is given.
//
// A service in N. Virginia wires them like this (errors elided; see
// examples/quickstart for a complete program):
//
//	router, _ := dbrouter.Open(dbrouter.Config{
//		Region:    "us-east-1",
//		Writer:    dbrouter.Endpoint{DSN: writerDSN},
//		Readers:   []dbrouter.Endpoint{{DSN: localReaderDSN, Region: "us-east-1"}},
//		TokenKeys: []dbrouter.TokenKey{{ID: 1, Secret: tokenSecret}},
//	})
//	defer router.Close()
//	records, _ := cache.New(cache.Config{
//		Client:      memcache.New("cache.use1.internal:11211"),
//		Region:      "us-east-1",
//		Consistency: router, // refills must come from a source that has the write
//	})
//	defer records.Close()
//	sessions, _ := session.New(session.Config{
//		Table:   "sessions",
//		Region:  "us-east-1",
//		Clients: map[string]session.Client{"us-east-1": local, "ap-northeast-1": tokyo},
//	})
//	http.ListenAndServe(addr, sessions.Middleware(router.Middleware(mux)))
//
// The examples directory holds runnable services; the README shows how to
// start the local two-region stack they and the tests run against.
package regiondb
