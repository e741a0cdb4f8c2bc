// Package dbrouter routes database/sql statements between a writer and read
// replicas in several regions: writes go to the writer, reads to a reader of
// the local region, and a user never misses their own write, not in the same
// request, not on their next request, not when that request lands in
// another region.
//
// # Quick start
//
//	rt, err := dbrouter.Open(dbrouter.Config{
//		Region: "us-east-1",
//		Writer: dbrouter.Endpoint{DSN: "app:pw@tcp(writer:3306)/photos"},
//		Readers: []dbrouter.Endpoint{
//			{DSN: "app:pw@tcp(reader-use1:3306)/photos", Region: "us-east-1"},
//			{DSN: "app:pw@tcp(reader-apne1:3306)/photos", Region: "ap-northeast-1"},
//		},
//		TokenKeys: []dbrouter.TokenKey{{ID: 1, Secret: secret}}, // shared by the fleet
//	})
//	...
//	defer rt.Close()
//	http.ListenAndServe(addr, rt.Middleware(mux)) // one scope per request
//
// A [*Router] has the context methods of [*sql.DB] with the same
// signatures (ExecContext, QueryContext, QueryRowContext, PrepareContext,
// BeginTx, PingContext, Close), so it satisfies sqlc's DBTX and replaces a
// *sql.DB at a call site by changing its type. Like [sql.Open], [Open] only
// validates its arguments and starts the monitors; it does not connect.
//
// # A *sql.DB that routes
//
// [Router.DB] returns a [*sql.DB] whose every statement follows the same
// rules (its connection model is in its documentation). Data layers take it
// in one line; pass each request's context so that its scope applies:
//
//	GORM:    gorm.Open(mysql.New(mysql.Config{Conn: rt.DB()}), &gorm.Config{}) // or Conn: rt (GetDBConn)
//	sqlx:    sqlx.NewDb(rt.DB(), "mysql")
//	ent:     ent.NewClient(ent.Driver(entsql.OpenDB(dialect.MySQL, rt.DB())))
//	bun:     bun.NewDB(rt.DB(), mysqldialect.New())
//	sqlc:    db.New(rt) // or db.New(rt.DB()); WithTx takes the *sql.Tx of rt.BeginTx
//	otelsql: otelsql.OpenDB(rt.Connector()) // a routing pool wrapped by otelsql
//
// # Routing
//
// Only statements that are provably read-only go to a reader: SELECT,
// WITH ... SELECT, SHOW about schema objects (TABLES, COLUMNS, CREATE ...),
// and read-only transactions (BeginTx with [sql.TxOptions].ReadOnly). The
// classifier is an allow-list lexer: everything it does not fully
// understand goes to the writer, as do writes, SELECT ... FOR UPDATE / FOR
// SHARE / LOCK IN SHARE MODE, SELECT ... INTO, calls of functions other
// than known pure built-ins (so GET_LOCK, NEXTVAL, LAST_INSERT_ID,
// FOUND_ROWS, stored functions), session state (@@identity,
// @@last_insert_id, @@warning_count, @@last_gtid, @@session.x, user
// variables, SHOW WARNINGS / ERRORS / STATUS / VARIABLES), the binary log
// and replication (SHOW MASTER STATUS, SHOW BINLOG EVENTS, SHOW SLAVE
// STATUS), numbers glued to words ("1.0LOCK"), string literals whose extent
// depends on sql_mode (a backslash in '...' or "..."), several statements,
// executable comments (/*! ... */), and every statement of a read-write
// transaction. Prepared statements ([Router.PrepareContext]) are routed like
// the same statement at each execution.
//
// Per call, through the context: [WithWriter] sends reads to the writer;
// [WithMaxStaleness] lets a read use any reader known to be at most that far
// behind.
//
// # Guarantees
//
// A read-your-writes scope lives in the request's context ([NewContext];
// [Router.Middleware] makes one per request and restores the user's token
// into it). Every write made through the scope advances it; every read
// made through it goes only to a reader known to have applied everything the
// scope requires, or else to the writer.
//
//	mode                how to ask                     what a read sees                          cost
//	eventual            no scope in ctx                a reader at most MaxLag behind            nothing extra
//	bounded staleness   WithMaxStaleness(ctx, d)       data at most d old (as last checked)      a freshness check when the last is older than d
//	read-your-writes    a scope (Middleware,           every write of the scope and of the       a wait (bounded) while the local reader
//	                    NewContext, WithToken)         user's earlier requests, any region       catches up; then another region's reader or the writer
//	monotonic reads     a scope (same)                 never older data than a read of the       as above (on the in-process path, one
//	                                                   user showed before, any region            shared position query per response that read)
//	strong              WithWriter(ctx)                every committed write                     writer load
//
// "Known to have applied" is checked per reader against the monitor's record
// of that reader's position: one reader catching up never releases the
// others.
//
// Monotonic reads are exact with respect to what was served: a reader may
// be ahead of the position its monitor last saw, so the scope requires the
// position the serving reader had when it answered. On the one-round-trip
// path (below) that position comes back with the read itself; otherwise
// the scope reads one (shared by concurrent requests) before its position
// leaves the scope ([Router.Token], the middleware) or its next read goes
// to another source. Reads still running when the token is taken, and
// bounded-staleness reads, are not covered.
//
// Which configurations give what (each process routes with its own Config):
//
//	readers a router knows                 read-your-writes, monotonic reads         when the local reader lags
//	its region's and the other regions'    hold, in every region                     wait (bounded), then another region's reader
//	                                                                                 known to have the position, then the writer
//	only its own region's                  hold, in every region                     wait (bounded), then the writer
//	none in its region (others or none)    hold                                      other regions' readers, or the writer
//	any, without a scope in ctx            none: eventual reads (MaxLag)             -
//	any, WithMaxStaleness(ctx, d)          none: data at most d old                  a freshness check
//
// The guarantee never depends on readers of other regions being
// configured: a token is kept while its scope requires anything, because no
// router can know that readers it does not monitor have applied it. Other
// regions' readers only add a place to read from while the local one lags.
// Every router of the service must share [Config.TokenKeys].
//
// Positions are exact replication positions: MariaDB GTIDs
// ([DialectMariaDB], @@last_gtid read on the session that wrote) or MySQL
// GTID sets ([DialectMySQL]); on Aurora, whose readers share storage and
// have no binlog position, a heartbeat row ([DialectHeartbeat]): one
// router of the fleet, elected among those with HeartbeatPeriod set,
// increments a counter on the writer and records the writer's server id
// beside it; a write is visible on a reader once it shows the next beat of
// the same writer (the write is then older than data the reader shows).
// Counters of different writers are never compared, so a failover that
// loses the last beats cannot make a reader look fresher than it is. A reader whose heartbeat row is
// missing or NULL serves no read that needs a position.
//
// On Aurora, open the router with [OpenAurora]: it reads the cluster's own
// topology and routes to each instance through its instance endpoint, with
// one watermark per instance, so that a DNS-balanced reader endpoint never
// stands for several instances and stale DNS of the writer endpoint cannot
// lead writes to a reader; it re-reads the topology while it runs
// ([Config].AuroraTopologyInterval). In a Global Database's secondary region,
// [Config].WriteForwarding sends writes to the local reader endpoint
// (Aurora write forwarding) so that the region's processes hold no
// connections to the writer. Its documentation lists what remains
// unverified without a real Aurora cluster; examples/aurora-check settles
// it.
//
// # Tokens across requests and regions
//
// [Router.Middleware] reads the token from the Regiondb-Token header (API
// clients), or from the user's session through [Config.TokenCarrier], or
// from the regiondb_ryw cookie (browsers), and returns the advanced token
// the same way before the response's first byte. A token is the scope's
// required position (the writer's state, so it means the same in every
// region), its issue time and an HMAC-SHA256 tag (96 bits) with the id of
// the key that made it, base64url: about 36 characters for one MariaDB
// domain, always under 100. Keys rotate through [Config.TokenKeys]. A
// corrupt, forged or expired ([Config.TokenMaxAge]) token is ignored and
// counted ([Stats].TokensRejected), never an error page. A token is sent
// until it expires: no router knows every reader that may serve the user's
// next request.
//
// Tokens only move forward on the client. A response sets a token only if
// its request advanced its scope beyond every token it carried, and the
// token it sets is the maximum of those and of what the request did; it
// deletes only the token cookies that request carried. Each token cookie is
// named after its token (regiondb_ryw.<tag>), so that concurrent requests of
// one user (a second tab, a prefetch, a retry) set cookies of different
// names, the browser keeps them all, and its next request carries them all
// to be merged. API clients that send concurrent requests keep a set of
// tokens the same way (see [Router.Middleware]).
//
// [Router.WrittenPosition], [Router.RequirePosition] and
// [Router.MergePositions] implement the cache package's Consistency
// contract, so a cache can refuse to refill from a replica that lags.
//
// # Monitors and waiting
//
// One goroutine per reader keeps the reader's applied position, lag and
// health; the read path only compares positions in memory. A monitor
// queries its reader every [Config.MonitorInterval] (default 15 s), on
// demand while a read waits in the process for a position, and after a
// write of the process, if the reader is local and nothing else tells the
// router that it has applied the write (no read sent to it within twice
// [Config.PollInterval]): then one query waits on the reader for the write
// (up to four times MonitorTimeout/2 for a reader that lags), so that the
// next read, known to be served, needs no wait of its own. Not with a
// [WatermarkStore] (it would cost the fleet a query per write) or
// [DialectHeartbeat] (no wait to send).
//
// A read that needs a position no local reader is known to have waits for
// a local reader only while that is expected to be quicker than a read
// elsewhere: the monitors measure the round trips to the writer and to each
// reader and each reader's recent lag; a reader known to be further behind
// than that difference is not waited for at all, and no wait exceeds
// [Config.MaxWait] (default 1 s). The read then takes any reader of another
// region that has the position (unless [Config.PreferWriter]), then the
// writer. Readers more than [Config.MaxLag] (default 30 s) behind, or whose
// monitor queries fail, get no reads until they catch up.
//
// # One round trip per statement (MariaDB)
//
// With [DialectMariaDB] and endpoints given as a DSN, the router carries
// positions inside the statement's own round trip: a read that must wait
// for a position is sent to the local reader as one text that waits on the
// server first and fails, without running the statement, if the reader
// does not get there in its budget ([Stats].GuardTimeouts; the read then
// goes where the position is known, without excluding the reader); a read
// of a scope gets the reader's position after it in the same text; a
// scoped UPDATE, DELETE or COMMIT gets its position in the same text, and so
// does a scoped INSERT or REPLACE whose Result the router can rebuild
// exactly: its table (unqualified names: the DSN's database) is a base
// table without triggers and has no AUTO_INCREMENT column, or the
// statement lists its columns without that one and takes its rows from
// VALUES or SET, without ON DUPLICATE KEY UPDATE. Other inserts (an
// explicit id, ON DUPLICATE KEY UPDATE or INSERT ... SELECT on such a
// table, anything the router does not parse) and statements that read
// LAST_INSERT_ID() of the statement before them read their position in a
// second round trip, as before. What the router knows of a table it reads
// from information_schema on the first such INSERT (one extra round trip)
// and keeps for at most 30 seconds; DDL sent through the router makes it
// read again, a change made by another client (an ALTER TABLE that makes a
// column AUTO_INCREMENT, a new trigger) is seen within those 30 seconds
// (until then, an INSERT that gives that column explicitly may report a
// LastInsertId of 0; the rows written are the same either way).
// A pooled session that ran USE, CREATE, CALL or another statement that
// may change what a table name means keeps the second round trip for its
// INSERTs. Endpoints given as a Connector, the MySQL and heartbeat
// dialects, and [Config].DisableCombinedStatements take the separate round
// trips.
//
// For this the router sets multiStatements=true and interpolateParams=true
// on its own copy of each DSN: statements with arguments go as one text with
// the arguments escaped by the driver (the text protocol) instead of a
// server-side prepared statement. Because such a connection runs every
// statement of a text, the router refuses, before sending anything, any text
// that is not exactly one statement ([ErrMultiStatement]); a final ";",
// whitespace and comments are allowed. The check agrees with MariaDB's
// splitter in every sql_mode and refuses what it cannot tell; it holds for
// every entry point, including the pools of [Router.Writer]. A DSN that
// sets multiStatements=true itself keeps its texts unchecked and unchanged.
// Combined writes leave the user variable @regiondb_last_insert_id on their
// session.
//
// # Fleets
//
// Reads on the one-round-trip path need no monitor queries, so a reader's
// monitor load is 1/MonitorInterval per process (67 queries/s for 1 000
// processes), plus at most one query per write of a process whose local
// reader gets no read right after the write. On the in-process path, a fleet shares what its monitors
// learn through a [WatermarkStore] ([Config.Watermarks]; package
// dbrouter/memcachestore implements it): only the process that wins a
// reader's claim queries it, at most once per PollInterval on average for
// the whole fleet (≤ 51 queries/s per reader at any fleet size; a store
// that keeps a budget, [ClaimBudgeter], lets a few claims follow each
// other at once while reads wait), and if the store fails each process
// tracks the readers itself. Each process holds at most
// [DefaultMaxOpenConns] connections per endpoint. The arithmetic for 1 000
// processes, and what was measured, is in docs/dbrouter.md in the
// repository.
//
// # Failures
//
// The router keeps working through the faults a multi-region deployment sees,
// and never hides one it cannot undo.
//
//   - Dead, stalled or lagging readers. A read that fails on a reader before
//     returning rows because the reader failed (connection refused or lost,
//     the server going away: not the caller's cancellation, not an SQL error)
//     excludes that reader at once, until its monitor sees it answer again
//     (rechecked every second), and runs again wherever routing then sends
//     it: another fresh reader, or the writer. Each failing reader is tried
//     at most once per statement, so no caller sees an error while a fresh
//     endpoint remains. QueryContext, QueryRowContext (whose error is checked
//     with [sql.Row.Err] before it is returned) and read-only BeginTx are
//     retried this way. A reader whose monitor query fails or times out
//     (MonitorTimeout), or that is further behind than MaxLag, gets no reads
//     from the next check on (within one MonitorInterval); when it answers
//     and has caught up, it gets reads again.
//   - All readers gone: reads go to the writer, counted in
//     [Stats].ReadsWriter and the regiondb.dbrouter.writer_fallbacks metric.
//   - Writer failover. When a statement on the writer cannot connect, loses
//     its connection, or is rejected because the server is read-only (MySQL
//     errors 1290, 1836, 1874: demoted, or an Aurora failover in progress),
//     the router searches for the writer among every configured endpoint (the
//     writer and the readers, since a reader may have been promoted): it
//     opens a fresh connection to each, concurrently, and reads @@read_only
//     and @@innodb_read_only; with [Config].Aurora also @@aurora_server_id
//     and information_schema.replica_host_status, whose SESSION_ID =
//     'MASTER_SESSION_ID' row names the writer. Fresh connections re-resolve
//     a cluster endpoint's DNS name. One search runs at a time per router,
//     shared by every statement that waits for it, at most one per
//     WriterSearchInterval ([DefaultWriterSearchInterval]), each probe bounded
//     by WriterProbeTimeout or, by default, by a timeout sized to the
//     endpoint's measured connect time ([DefaultWriterProbeTimeout]); a fleet
//     of N processes thus opens at most N connections per endpoint per
//     interval during a failover, and with a shared [Config].Watermarks most
//     of them probe only the writer another process found. Writes then go
//     to the new writer, without a restart
//     ([Stats].Writer, [Stats].Failovers, the regiondb.dbrouter.failovers
//     metric).
//   - Retries of writes. A statement is retried once, on the writer the
//     search found, only if it provably never ran: no connection could be
//     made, database/sql reported driver.ErrBadConn after its own retries
//     (go-sql-driver/mysql does so only when nothing was sent), or the server
//     rejected it as read-only without executing it. A write whose connection
//     broke after it was sent, a prepared statement's execution likewise, and
//     any statement or commit of a transaction whose connection broke return an
//     error matching [ErrOutcomeUnknown]: it may or may not have been applied,
//     and only the application can tell. When no writer is found the error
//     matches [ErrNoWriter] and names each endpoint's answer.
//   - A reader that became the writer (the search found it writable) serves
//     any read-your-writes read without a position wait: it has every write
//     acknowledged since it became the writer, and a read no reader can
//     serve would go to it anyway. MariaDB's MASTER_GTID_WAIT waits on
//     gtid_slave_pos, which a primary's own commits never enter, so the
//     router's wait is guarded by @@read_only (a writable server answers at
//     once and its gtid_current_pos is read instead).
//   - Loss of the writer's whole region. While the last writer search found
//     no writable server, writes fail at once with [ErrNoWriter] (the search
//     result is reused for WriterSearchInterval, then searches back off to
//     one every 2–2.5 s), reads that need nothing and reads whose
//     [WithMaxStaleness] bound a surviving reader meets are served by the
//     survivors, and a read that must observe a position no usable reader
//     has applied (its scope's writes, a token, [Router.RequirePosition], a
//     staleness bound no survivor meets) fails with an error matching
//     [ErrPositionUnavailable] instead of waiting MaxWait for a writer that
//     is gone: the readers get the time their recent lag allowed, counted
//     from when the writer was found gone, to apply what they had received,
//     and after that such reads fail at once. Each such failure, and each
//     failed position query of the writer by a monitor, starts a writer
//     search, so a replica promoted in another region is found without a
//     restart. What the lost region had acknowledged but not replicated is
//     lost with it: that is the database's loss, and a read of the scope
//     that wrote it shows the new writer's data.
//   - The caller's own cancellation or deadline is never taken for a server
//     failure: it excludes no reader and starts no writer search; its error is
//     returned as database/sql returns it.
//   - No hangs: every wait is bounded by the caller's context and by a timeout
//     of the configuration: dials by the DSN's timeout ([DefaultDialTimeout]
//     if it sets none), writer probes by WriterProbeTimeout, token waits by
//     MaxWait, monitor queries by MonitorTimeout.
//
// # Untrusted input
//
// Positions that reach the router from outside (RequirePosition and
// MergePositions, hence cache markers and leases; tokens; the shared
// [WatermarkStore]) must parse for the router's dialect: decimal GTID
// domains under MariaDB, source UUIDs under MySQL, "hb" under the
// heartbeat, at most 64 streams. Anything else is rejected and counted in
// [Stats].PositionsRejected, and the read goes to the writer. Wait queries
// are built only from numbers and 16-byte UUIDs, so their text is always
// one fixed shape. An attacker who can write to memcached (or the watermark
// store) therefore cannot run SQL, crash the process or take locks on a
// reader. What such an attacker can still do: send reads to the writer
// (garbage positions), make reads wait up to MaxWait (positions far in the
// future), make a cache accept a fill from a reader that is behind (drop a
// marker's position), and, through the watermark store, make a reader look
// fresher or staler than it is. Tokens are signed: without a key in
// [Config].TokenKeys none of this is possible through them. A monitor that
// fails anyway (a panicking driver or WatermarkStore) is logged, restarted
// with backoff, and its reader gets no reads until it answers again.
//
// # Connection pools
//
// The router keeps one [*sql.DB] pool per endpoint: the writer's limits are
// [Config].WriterPool, each reader's [Config].ReaderPool ([PoolConfig];
// zero values mean [DefaultMaxOpenConns], [DefaultMaxIdleConns],
// [DefaultConnMaxLifetime], [DefaultConnMaxIdleTime]). After a failover the
// new writer gets a writer pool of its own. The pools' use is visible in the
// db.client.connection.count metric (state used or idle, per pool). The
// routing pool ([Router.DB]) and the Router's own methods share these
// pools: a connection of the routing pool holds one of them only while a
// statement, its rows, a transaction or session state need it.
//
// # OpenTelemetry
//
// Each statement gets a client span named after its operation (SELECT,
// INSERT, ...) with the stable database conventions (db.system.name,
// db.operation.name, db.namespace, server.address, server.port, error.type
// and db.response.status_code on failure) and the routing decision:
// regiondb.route (writer or reader), regiondb.region and regiondb.endpoint of
// the endpoint that served it, and regiondb.reason (write, fresh_reader,
// token_wait, staleness_budget, writer_fallback, forced_writer, retry).
// A statement sent again to another endpoint (its reader failed, or its
// position guard did) adds the span event regiondb.retry per further
// attempt. Statements of transactions and prepared statements get spans too, and so
// do BEGIN, COMMIT and ROLLBACK. db.query.text holds the statement's text
// with its literals replaced by "?" and its comments dropped (a statement
// written with placeholders appears as written); arguments, literals,
// passwords and DSNs never appear, and a failed span's status holds the
// error number, not the server's message (which may quote values).
// db.client.operation.duration (seconds) carries db.operation.name, and on
// failure error.type and db.response.status_code.
//
// Metrics (meter and tracer named [ScopeName]): db.client.operation.duration,
// db.client.connection.count and db.client.connection.max per pool,
// regiondb.dbrouter.statements by route, reason and region,
// regiondb.dbrouter.token.wait.duration, regiondb.dbrouter.writer_fallbacks,
// regiondb.dbrouter.failovers, and per reader regiondb.dbrouter.reader.lag
// and regiondb.dbrouter.reader.position_age (milliseconds; the age of the
// newest writer position the reader is known to have applied).
//
// Providers come from [Config].TracerProvider and MeterProvider, defaulting
// to the otel globals. Without an SDK the instrumentation allocates nothing:
// while the global TracerProvider is still otel's default delegate, spans are
// skipped after one atomic load (a router opened before the application
// installs its SDK starts tracing once it is installed), and metric
// instruments are skipped when not Enabled.
//
// # Lifecycle
//
// A Router is safe for concurrent use. [Open] starts one monitor goroutine
// per reader (which runs its post-write watch's query, one at a time, on a
// goroutine of its own) and, with [DialectHeartbeat] and HeartbeatPeriod,
// one heartbeat writer; [Router.Close] stops and waits for them, then
// closes the pools; it is idempotent, and afterwards the methods return [ErrClosed].
// database/sql's own errors ([sql.ErrNoRows], [sql.ErrTxDone]) are returned
// unchanged. The router logs only background events, only through
// [Config.Logger]; DSNs, passwords and tokens never appear in its errors or
// logs.
package dbrouter
