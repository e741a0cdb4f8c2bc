package cache

import (
	"context"
	"database/sql"
	"fmt"
	"math/rand/v2"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/bradfitz/gomemcache/memcache"
	"github.com/regiondb/regiondb/internal/testserver"
)

// Database is the harness's own database on the stack.
const Database = "regiondb_cache"

// Env is the stack as the harness uses it: the writer, the two replicas and
// the two regions' memcached addresses.
type Env struct {
	Stack          *testserver.Stack
	Writer, R1, R2 *sql.DB
	MC1, MC2       string
	// Nonce makes keys and row ids unique per Env.
	Nonce int64

	runs atomic.Int64 // numbers the measurements run on this Env
}

// Open connects to the stack and creates the harness's table.
func Open(ctx context.Context, s *testserver.Stack) (*Env, error) {
	admin, err := sql.Open("mysql", s.DSN("m1", ""))
	if err != nil {
		return nil, err
	}
	defer admin.Close()
	if _, err := admin.ExecContext(ctx, "CREATE DATABASE IF NOT EXISTS "+Database); err != nil {
		return nil, fmt.Errorf("cacheharness: create database: %w", err)
	}
	e := &Env{
		Stack: s,
		MC1:   s.Memcached(testserver.PrimaryRegion),
		MC2:   s.Memcached(testserver.SecondaryRegion),
		Nonce: time.Now().UnixNano()/1000%1_000_000_000 + rand.Int64N(1000)*1_000_000_000,
	}
	open := func(name string) *sql.DB {
		db, _ := sql.Open("mysql", s.DSN(name, Database))
		db.SetMaxIdleConns(16)
		return db
	}
	e.Writer, e.R1, e.R2 = open("m1"), open("r1"), open("r2")
	if _, err := e.Writer.ExecContext(ctx, "CREATE TABLE IF NOT EXISTS kv (id BIGINT PRIMARY KEY, v BIGINT NOT NULL)"); err != nil {
		e.Close()
		return nil, fmt.Errorf("cacheharness: create table: %w", err)
	}
	// Wait until the replicas have the database and table.
	var pos string
	if err := admin.QueryRowContext(ctx, "SELECT @@gtid_binlog_pos").Scan(&pos); err != nil {
		e.Close()
		return nil, err
	}
	for _, r := range []string{"r1", "r2"} {
		db, err := sql.Open("mysql", s.DSN(r, ""))
		if err != nil {
			e.Close()
			return nil, err
		}
		var res sql.NullInt64
		err = db.QueryRowContext(ctx, "SELECT MASTER_GTID_WAIT(?, 10)", pos).Scan(&res)
		db.Close()
		if err != nil || !res.Valid || res.Int64 != 0 {
			e.Close()
			return nil, fmt.Errorf("cacheharness: replica %s did not catch up with %s: %v", r, pos, err)
		}
	}
	return e, nil
}

// Close closes the database handles.
func (e *Env) Close() {
	for _, db := range []*sql.DB{e.Writer, e.R1, e.R2} {
		if db != nil {
			db.Close()
		}
	}
}

// Client returns a gomemcache client for addr with the harness's timeout.
func Client(addr string) *memcache.Client {
	c := memcache.New(addr)
	c.Timeout = 250 * time.Millisecond
	c.MaxIdleConns = 64
	return c
}

// Seed sets row id to v on the writer and waits until both replicas have it.
func (e *Env) Seed(ctx context.Context, id, v int64) error {
	conn, err := e.Writer.Conn(ctx)
	if err != nil {
		return err
	}
	defer conn.Close()
	if _, err := conn.ExecContext(ctx, "REPLACE INTO kv (id, v) VALUES (?, ?)", id, v); err != nil {
		return err
	}
	var pos string
	if err := conn.QueryRowContext(ctx, "SELECT @@last_gtid").Scan(&pos); err != nil {
		return err
	}
	return e.WaitReplicas(ctx, pos)
}

// WaitReplicas waits (up to 10 s) until r1 and r2 have applied pos.
func (e *Env) WaitReplicas(ctx context.Context, pos string) error {
	for _, db := range []*sql.DB{e.R1, e.R2} {
		var res sql.NullInt64
		if err := db.QueryRowContext(ctx, "SELECT MASTER_GTID_WAIT(?, 10)", pos).Scan(&res); err != nil {
			return err
		}
		if !res.Valid || res.Int64 != 0 {
			return fmt.Errorf("cacheharness: replica did not reach %s in 10s", pos)
		}
	}
	return nil
}

// key returns a key unique to this Env.
func (e *Env) key(name string) string {
	return fmt.Sprintf("regiondb:cacheharness:%d:%s", e.Nonce, name)
}

// run returns a prefix that makes keys unique to one run of a measurement
// (the same measurement may run several times on one Env).
func (e *Env) run(name string) string {
	return name + ":" + strconv.FormatInt(e.runs.Add(1), 10) + ":"
}

// id returns a row id unique to this Env.
func (e *Env) id(n int64) int64 { return e.Nonce*100 + n }

// UniqueKey returns a memcached key unique to e.
func UniqueKey(e *Env, name string) string { return e.key(name) }
