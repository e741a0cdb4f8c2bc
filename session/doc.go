// Package session keeps net/http sessions in DynamoDB, cheaply and
// correctly across regions: a [Store] over one region's session table
// (also usable as a github.com/alexedwards/scs/v2 store), and a [Manager]
// whose [Manager.Middleware] gives each request a lazily loaded session.
//
// It was built for sessions in DynamoDB Global Tables: every region reads
// and writes its local table in a few milliseconds, replication takes about
// a second, and every replicated write is billed in every region, so a
// write per request is a real cost.
//
// # Quick start
//
//	tokyo := dynamodb.NewFromConfig(awsCfg)            // this region's client
//	virginia := dynamodb.NewFromConfig(awsCfg, func(o *dynamodb.Options) { o.Region = "us-east-1" })
//	sessions, err := session.New(session.Config{
//		Table:   "sessions",
//		Region:  "ap-northeast-1",
//		Clients: map[string]session.Client{"ap-northeast-1": tokyo, "us-east-1": virginia},
//	})
//	...
//	http.ListenAndServe(addr, sessions.Middleware(mux))
//
// and in a handler:
//
//	user, err := sessions.Get(r.Context(), "user")    // the first use reads the session
//	err = sessions.RenewToken(r.Context())            // at login: new id, old one deleted
//	err = sessions.Put(r.Context(), "user", "42")     // saved before the response starts
//
// Values are strings; encode structured values yourself. A zero Config plus
// Table, Region and Clients is complete; every field documents its default.
//
// # Table schema
//
// One item per session, partition key [AttrKey] (string):
//
//	id          S  base64url(SHA-256(session id)): the table never holds a live id
//	data        B  the session's values
//	version     N  incremented by every write; writes are conditional on it
//	expires_at  N  epoch seconds: min(idle deadline, absolute deadline); enable TTL on it
//	created_ms  N  epoch milliseconds of creation (absolute timeout)
//	touched_ms  N  epoch milliseconds of the last write (idle timeout)
//	region      S  the region that wrote this version
//	destroyed   BOOL  true on a destroyed session's tombstone (see Logout)
//
// DynamoDB's TTL deletes expired items up to days late (and dynalite has no
// TTL at all), so expiry is also checked on every read. [Store.CreateTable]
// creates the table for development and tests. Items over DynamoDB's
// [MaxItemSize] are refused with a [*SizeError] before any write.
//
// # Cost: lazy reads, rare writes
//
// A request that never calls an accessor costs no DynamoDB call, and does
// not even parse the cookie: the middleware allocates a small handle, the
// context value and the request copy (less than scs's LoadAndSave). The first
// accessor call reads the session (one strongly consistent GetItem). The
// session is written (one conditional PutItem) only if it changed, or, for
// a request that only read it, if its last write is older than
// [Config.TouchInterval]: the idle deadline moves forward at most once per
// interval, so a user reading every second with a one-minute interval costs
// 1/60 writes per request. Putting a value a
// key already has is not a change. Requests that never use the session do
// not extend it.
//
// # Security
//
// Session ids are 192 bits from crypto/rand; the table stores their SHA-256.
// The cookie is HttpOnly, Secure and SameSite=Lax unless configured
// otherwise ([Config.InsecureCookie], [Config.ScriptReadableCookie],
// [Config.CookieSameSite]); its name, path and domain are configurable.
// Secure does not depend on the request's TLS state, so it is set behind a
// load balancer that terminates TLS; only InsecureCookie removes it.
// Besides the id the cookie carries the session's version and the region
// that wrote it, authenticated by an HMAC keyed with the id: a corrupt,
// edited, unknown or expired cookie starts a new, empty session, never an
// error page. Call [Manager.RenewToken] at login and privilege changes: the
// session gets a new id and the old id's item is deleted.
//
// # Concurrent requests
//
// Every write is conditional on the version the request read (or on the
// item's absence for a new session). When another request saved first, the
// save re-reads the item and applies only the keys this request changed
// onto it (per-key last writer wins: a key changed by both requests ends
// with the later save's value; keys only the other request changed keep its
// values), then writes again, at most [Config.MaxConflictRetries] times.
// If that is exhausted the request fails with [ErrConflict]: a change is
// either stored or the request is not answered with success; none is lost
// silently. A session destroyed by a concurrent request stays destroyed:
// the keys this request changed are saved in a new session with a new id,
// as if the request had come after the logout.
//
// # Logout
//
// [Manager.Destroy] does not delete the item: it replaces it by a
// tombstone (attribute destroyed = true, a version above any a session
// reaches, expires_at = now + [Config.AbsoluteTimeout]), first in the
// table the session lives in, then in every other region's table, and only
// then clears the cookie. A destroyed id never names a session again:
//
//   - In one region, every save is conditional on the version it read; a
//     save racing the logout finds the tombstone, and its changes go to a
//     new id. A delete would instead make the racing save re-create the
//     item under the old id (the old cookie valid again).
//   - Across regions, Global Tables resolve concurrent writes to an item
//     by last writer wins. A version written before the logout that
//     replicates late is older than the tombstone and loses to it. A save
//     racing the logout in another region can succeed only before the
//     logout's own tombstone write reaches that region (one cross-region
//     round trip after Destroy starts); that tombstone is written after
//     the save there, so it is the last writer of the item in every region
//     and wins everywhere once replication settles. Until then (at most
//     that round trip plus the replication delay) the racing save's copy
//     may be readable in the region it replicated to.
//   - Reads treat a tombstone as no session, also when it is found in the
//     other region during a cross-region fallback (its version wins every
//     "newer copy" comparison). Expiry is checked on every read, and the
//     tombstone outlives every copy of the session it ends: a copy that
//     arrives after DynamoDB's TTL removed the tombstone is expired.
//
// A region that cannot be reached at logout gets the tombstone through
// replication. When the session exists in the region that destroys it, the
// other regions get the tombstone even if the session has not reached them
// yet (its versions on the way are older and lose to it); an id that names
// no item there gets no tombstone anywhere it names none (the writes are
// conditional), so made-up cookies leave nothing behind. A logout costs one
// write per region.
//
// # Regions
//
// Each region reads and writes its own table; Global Tables replicate with
// about a second of lag and resolve concurrent writes by last writer wins.
// A user whose next request lands in the other region would otherwise look
// logged out (the new session has not arrived) or see older data. The
// cookie therefore carries the version the user last saw and the region that
// wrote it (its home). When the local copy is missing or older than that
// version, the session is read once from the home region's table (or, when
// the home is this region and its copy was overwritten by an older late
// replica, from one other region), and the newer copy wins; this counts as
// a cross-region fallback. Writes go to the local table (except during a
// regional outage) and make this region the home. If the home region
// cannot be reached and the local copy is older than the cookie's
// version, the older copy is shown and changes are refused
// ([ErrUnavailable]): a write would fork the session and last writer wins
// would drop one branch. Configure the other regions' clients in
// [Config.Clients]; without them there is no fallback.
//
// # Regional outages
//
// When the local table is unavailable (connection refused, a call that
// outlasts [Config.CallTimeout], a server error, or throttling, after the
// SDK's retries; also a missing table), the Manager serves sessions from
// the replica in the first other region of [Config.Clients] by name: reads
// and conditional writes go there, one cross-region round trip each
// (regiondb.session.cross_region.duration), and the cookie then names that
// region as the session's home. The first call that finds the local table
// unavailable moves the Manager over (and that request is served from the
// replica); afterwards, one request per [Config.ProbeInterval] tries the
// local table first, and the first success moves it back. This needs no
// goroutine. Without another region's client, requests fail as described
// under Failures.
//
// Nobody is logged out, no acknowledged change is lost, and a destroyed
// session stays destroyed, across the switch and back. The argument,
// against Global Tables' last writer wins (by write time) and their
// asynchronous replication:
//
//   - A write is acknowledged only after a conditional put succeeded in
//     one region's table, and the cookie then carries its version and
//     region. Writing in the replica during the outage is allowed only if
//     the replica holds every version the request knows of (the cookie's,
//     and what it read): the new version then descends from the newest
//     acknowledged one, so no acknowledged change is overwritten. When the
//     replica lags (a write made in the local region just before the
//     outage has not been replicated; the region may hold it until it
//     returns), the request waits up to [Config.ReplicationWait] for it;
//     if it does not come, the session is shown at the older version and
//     changes are refused with [ErrUnavailable] (503): writing would fork
//     the session, and last writer wins would later drop one branch. A
//     session with no copy at all in the replica fails likewise; it is
//     never replaced by a new, empty one (the user is not logged out).
//   - A version the local region holds but never replicated has a write
//     time before the outage. A version written in the replica during the
//     outage is written later, so last writer wins keeps it when the
//     regions reconcile; by the rule above it descends from every version
//     its request's cookie named, so it holds every change acknowledged to
//     that browser. The guarantee follows the cookie: a change acknowledged
//     in the local region just before the outage to a request whose
//     response the next request's cookie does not reflect (two tabs
//     racing the outage's first second) can be overwritten.
//   - After the local table returns, its copy of a session may be older
//     than what the replica received during the outage (replication takes
//     time to catch up). The cookie of every user who wrote during the
//     outage names the replica's region and a newer version, so the
//     cross-region fallback below reads it there; and for the outage's
//     duration plus 10 s, every copy the local table wrote before its
//     return is also compared with the replica's (the newer wins), which
//     covers a logout made there with another cookie. The first write
//     after that is conditional on the local version and newer than both,
//     so it wins last writer wins everywhere.
//   - A logout during the outage writes its tombstone in the replica even
//     if the session's item has not reached it; the tombstone is later
//     than any version the local region holds, so it wins when the regions
//     reconcile (see Logout).
//
// The cost while the local table is down is one cross-region round trip
// per session read and write; regiondb.session.failover.calls counts them
// and regiondb.session.failover.openings counts the switches. Sessions
// shown older than their newest version are counted in
// regiondb.session.stale.
//
// # Failures
//
// Each DynamoDB call is retried by the SDK's standard retryer, at most
// [Config.MaxAttempts] attempts with jittered backoff capped at
// [Config.MaxBackoff] (throttling included). If the store is still
// unavailable, the request fails with 503 Service Unavailable through
// [Config.ErrorFunc] (the default), or, with
// [Config.ContinueWithoutSession], continues with an empty session that is
// not saved; both are counted. A failed touch (no change) is counted and
// ignored. The save happens before the first byte of the response, so a
// failure to save changes replaces the handler's response with the error
// response; changes made after the response started are still saved, but
// the cookie's version cannot follow.
//
// # dbrouter's read-your-writes token
//
// [Manager.TokenCarrier] keeps dbrouter's token in the session instead of a
// cookie of its own (wrap the session middleware outside dbrouter's). The
// packages do not import each other.
//
// # Telemetry
//
// With [Config.TracerProvider] and [Config.MeterProvider] (default: the
// global ones), every DynamoDB call is a client span named after the
// operation and table with semantic-convention attributes (db.system.name
// aws.dynamodb, db.operation.name, aws.dynamodb.table_names, cloud.region;
// never ids or values), and the metrics are
// regiondb.session.request.reads and regiondb.session.request.writes
// (per-request histograms), regiondb.session.cross_region_fallbacks,
// regiondb.session.conflicts, regiondb.session.expired and
// regiondb.session.unavailable. Without an SDK this costs no-op calls.
//
// regiondb.session.failover.calls, regiondb.session.failover.openings,
// regiondb.session.stale and regiondb.session.cross_region.duration are
// described under Regional outages. The per-request histograms count only
// requests that used their session.
//
// A Manager and a Store start no goroutines and need no Close.
//
// # Design notes
//
// The package's architecture and what was measured are in docs/session.md
// in the repository.
package session
