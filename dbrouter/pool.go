package dbrouter

import (
	"database/sql"
	"fmt"
	"math/rand/v2"
	"time"
)

// Defaults of [PoolConfig]. The router keeps one *sql.DB pool per endpoint
// (the writer and each reader), each with these limits unless the
// configuration says otherwise.
//
// The defaults are chosen so that a pool under steady load does not churn:
// it keeps as many idle connections as it may open (so a burst does not
// close connections that the next burst reopens), and recycles each
// connection only after its lifetime, which every pool shortens by a random
// part of up to a tenth so that a fleet started together does not reconnect
// in step. A fleet of N processes holds at most N × MaxOpenConns connections
// to each endpoint: 1 000 pods with the defaults may hold 10 000 to the writer
// and to each reader, so size max_connections for the fleet or lower the
// limits (each new connection to a writer in another region costs several
// cross-region round trips of TCP, TLS and authentication).
const (
	// DefaultMaxOpenConns is the default maximum number of open connections
	// to one endpoint (database/sql's own default is unlimited).
	DefaultMaxOpenConns = 10
	// DefaultMaxIdleConns is the default maximum number of idle connections
	// kept for one endpoint: as many as may be open (database/sql's own
	// default is 2, which makes a pool under steady load close and reopen
	// connections continuously).
	DefaultMaxIdleConns = DefaultMaxOpenConns
	// DefaultConnMaxLifetime is the default maximum age of a connection.
	// Connections are recycled so that, after a failover or a DNS change,
	// no pool keeps talking to a server it no longer should, and before
	// the server's wait_timeout closes them (go-sql-driver/mysql
	// recommends less than 5 minutes).
	DefaultConnMaxLifetime = 3 * time.Minute
	// DefaultConnMaxIdleTime is the default maximum time a connection may
	// sit idle before it is closed.
	DefaultConnMaxIdleTime = time.Minute
)

// PoolConfig limits the connection pool of each endpoint of one role
// (the writer, or each reader). The zero value means the defaults.
type PoolConfig struct {
	// MaxOpenConns is the maximum number of open connections to one
	// endpoint. If zero, [DefaultMaxOpenConns] is used; if negative, there
	// is no limit.
	MaxOpenConns int
	// MaxIdleConns is the maximum number of idle connections kept for one
	// endpoint. If zero, [DefaultMaxIdleConns] is used (at most
	// MaxOpenConns); if negative, no idle connection is kept.
	MaxIdleConns int
	// ConnMaxLifetime is the maximum age of a connection. If zero,
	// [DefaultConnMaxLifetime] is used; if negative, connections are not
	// closed because of their age.
	ConnMaxLifetime time.Duration
	// ConnMaxIdleTime is the maximum time a connection may be idle. If
	// zero, [DefaultConnMaxIdleTime] is used; if negative, idle
	// connections are not closed because of idleness.
	ConnMaxIdleTime time.Duration
}

// withDefaults returns p with zero fields replaced by the defaults, in the
// form database/sql's setters take (0 = unlimited / keep none).
func (p PoolConfig) withDefaults() PoolConfig {
	switch {
	case p.MaxOpenConns == 0:
		p.MaxOpenConns = DefaultMaxOpenConns
	case p.MaxOpenConns < 0:
		p.MaxOpenConns = 0 // unlimited
	}
	switch {
	case p.MaxIdleConns == 0:
		p.MaxIdleConns = DefaultMaxIdleConns
		if p.MaxOpenConns > 0 && p.MaxIdleConns > p.MaxOpenConns {
			p.MaxIdleConns = p.MaxOpenConns
		}
	case p.MaxIdleConns < 0:
		p.MaxIdleConns = -1 // database/sql: keep none
	}
	switch {
	case p.ConnMaxLifetime == 0:
		p.ConnMaxLifetime = DefaultConnMaxLifetime
	case p.ConnMaxLifetime < 0:
		p.ConnMaxLifetime = 0 // forever
	}
	switch {
	case p.ConnMaxIdleTime == 0:
		p.ConnMaxIdleTime = DefaultConnMaxIdleTime
	case p.ConnMaxIdleTime < 0:
		p.ConnMaxIdleTime = 0 // forever
	}
	return p
}

// validate reports a limit that cannot be honoured; field names the
// Config field ("WriterPool" or "ReaderPool").
func (p PoolConfig) validate(field string) error {
	if p.MaxOpenConns > 0 && p.MaxIdleConns > p.MaxOpenConns {
		return fmt.Errorf("dbrouter: invalid Config.%s: MaxIdleConns %d exceeds MaxOpenConns %d",
			field, p.MaxIdleConns, p.MaxOpenConns)
	}
	return nil
}

// apply sets the limits (with defaults) on db. The lifetime is shortened by
// a random part of up to a tenth, so that the pools of a fleet started
// together do not recycle their connections in step.
func (p PoolConfig) apply(db *sql.DB) {
	p = p.withDefaults()
	db.SetMaxOpenConns(p.MaxOpenConns)
	db.SetMaxIdleConns(p.MaxIdleConns)
	db.SetConnMaxLifetime(jitter(p.ConnMaxLifetime))
	db.SetConnMaxIdleTime(p.ConnMaxIdleTime)
}

// jitter returns d shortened by a random part of up to a tenth (0 stays 0).
func jitter(d time.Duration) time.Duration {
	if d <= 0 {
		return d
	}
	return d - rand.N(d/10+1)
}
