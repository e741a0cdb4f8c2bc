// Package session measures and checks the session package against
// the local stack's two dynalites: writes per read-only request, the
// cross-region anomalies of a user alternating regions (with the session's
// mechanism and without it), and lost updates under concurrent requests
// (with the conditional merge and with a blind read-modify-write). The
// bench-session command and the session package's integration tests share it.
package session

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"

	"github.com/regiondb/regiondb/internal/testserver"
	"github.com/regiondb/regiondb/session"
)

// Regions are the stack's two regions, home region first.
var Regions = [2]string{testserver.PrimaryRegion, testserver.SecondaryRegion}

// Counter counts the DynamoDB calls a client makes.
type Counter struct {
	Reads  atomic.Int64 // GetItem
	Writes atomic.Int64 // PutItem, UpdateItem, DeleteItem
}

// CountingClient is a *dynamodb.Client that counts its item calls.
type CountingClient struct {
	*dynamodb.Client
	C *Counter
}

// GetItem counts a read.
func (c CountingClient) GetItem(ctx context.Context, in *dynamodb.GetItemInput, o ...func(*dynamodb.Options)) (*dynamodb.GetItemOutput, error) {
	c.C.Reads.Add(1)
	return c.Client.GetItem(ctx, in, o...)
}

// PutItem counts a write.
func (c CountingClient) PutItem(ctx context.Context, in *dynamodb.PutItemInput, o ...func(*dynamodb.Options)) (*dynamodb.PutItemOutput, error) {
	c.C.Writes.Add(1)
	return c.Client.PutItem(ctx, in, o...)
}

// UpdateItem counts a write.
func (c CountingClient) UpdateItem(ctx context.Context, in *dynamodb.UpdateItemInput, o ...func(*dynamodb.Options)) (*dynamodb.UpdateItemOutput, error) {
	c.C.Writes.Add(1)
	return c.Client.UpdateItem(ctx, in, o...)
}

// DeleteItem counts a write.
func (c CountingClient) DeleteItem(ctx context.Context, in *dynamodb.DeleteItemInput, o ...func(*dynamodb.Options)) (*dynamodb.DeleteItemOutput, error) {
	c.C.Writes.Add(1)
	return c.Client.DeleteItem(ctx, in, o...)
}

// Env is a session table in both regions of the stack, replicated.
type Env struct {
	Stack   *testserver.Stack
	Table   string
	Clients map[string]*dynamodb.Client
	Count   map[string]*Counter
	tr      *http.Transport // of all the clients; Close closes its idle connections
}

// NewClient returns a DynamoDB client for the stack's dynalite in region.
// transport may be nil.
func NewClient(s *testserver.Stack, region string, transport http.RoundTripper) *dynamodb.Client {
	o := dynamodb.Options{
		Region:       region,
		BaseEndpoint: aws.String(s.DynamoDBEndpoint(region)),
		Credentials:  credentials.NewStaticCredentialsProvider("local", "local", ""),
	}
	if transport != nil {
		o.HTTPClient = &http.Client{Transport: transport}
	}
	return dynamodb.New(o)
}

// newEndpointClient returns a DynamoDB client for region at endpoint.
func newEndpointClient(region, endpoint string) *dynamodb.Client {
	return dynamodb.New(dynamodb.Options{
		Region:       region,
		BaseEndpoint: aws.String(endpoint),
		Credentials:  credentials.NewStaticCredentialsProvider("local", "local", ""),
	})
}

// blackhole accepts TCP connections and never answers on them: a region
// that cannot be reached (timeouts), as opposed to one that is absent.
type blackhole struct {
	net.Listener
	mu    sync.Mutex // protects conns
	conns []net.Conn
	done  sync.WaitGroup
}

func newBlackhole() (*blackhole, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	b := &blackhole{Listener: ln}
	b.done.Add(1)
	go func() {
		defer b.done.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			b.mu.Lock()
			b.conns = append(b.conns, c)
			b.mu.Unlock()
		}
	}()
	return b, nil
}

// Close stops accepting and closes the held connections.
func (b *blackhole) Close() error {
	err := b.Listener.Close()
	b.done.Wait()
	b.mu.Lock()
	for _, c := range b.conns {
		c.Close()
	}
	b.mu.Unlock()
	return err
}

// Open creates a fresh session table named prefix_<random> in both
// dynalites and replicates it with the given delay (the Global Tables
// stand-in).
func Open(ctx context.Context, s *testserver.Stack, prefix string, delay time.Duration) (*Env, error) {
	var b [4]byte
	_, _ = rand.Read(b[:])
	e := &Env{Stack: s, Table: prefix + "_" + hex.EncodeToString(b[:]), Clients: map[string]*dynamodb.Client{}, Count: map[string]*Counter{},
		tr: &http.Transport{MaxIdleConnsPerHost: 64}}
	for _, r := range Regions {
		e.Clients[r] = NewClient(s, r, e.tr)
		e.Count[r] = new(Counter)
		st, err := session.NewStore(session.Config{Table: e.Table, Region: r, Clients: map[string]session.Client{r: e.Clients[r]}})
		if err != nil {
			return nil, err
		}
		if err := st.CreateTable(ctx); err != nil {
			return nil, fmt.Errorf("sessionharness: create table in %s: %w", r, err)
		}
	}
	if err := s.Replicate(ctx, e.Table, delay); err != nil {
		return nil, err
	}
	return e, nil
}

// Close stops the replication and drops the table in both regions.
func (e *Env) Close(ctx context.Context) error {
	err := e.Stack.Replicate(ctx, e.Table, -1)
	for _, r := range Regions {
		if _, derr := e.Clients[r].DeleteTable(ctx, &dynamodb.DeleteTableInput{TableName: &e.Table}); derr != nil && err == nil {
			err = derr
		}
	}
	e.tr.CloseIdleConnections()
	return err
}

// Config returns a Manager configuration for region with counting clients:
// with fallback, the other region's client too (the cross-region
// mechanism); without, the local one only (the naive control).
func (e *Env) Config(region string, fallback bool) session.Config {
	clients := map[string]session.Client{}
	for _, r := range Regions {
		if r == region || fallback {
			clients[r] = CountingClient{Client: e.Clients[r], C: e.Count[r]}
		}
	}
	// A loaded test machine can hold a dynalite call for over a second:
	// only the outage scenarios use a short bound.
	return session.Config{Table: e.Table, Region: region, Clients: clients, InsecureCookie: true, Logger: logger, CallTimeout: 5 * time.Second}
}

// logger is the Managers' logger: stderr when REGIONDB_SESSION_LOG is set
// (debugging a harness run), else nothing.
var logger = func() *slog.Logger {
	if os.Getenv("REGIONDB_SESSION_LOG") == "" {
		return nil
	}
	return slog.New(slog.NewTextHandler(os.Stderr, nil))
}()

// Clock is a fake clock for session.Config.Now.
type Clock struct{ ns atomic.Int64 }

// NewClock returns a clock at t.
func NewClock(t time.Time) *Clock {
	c := &Clock{}
	c.ns.Store(t.UnixNano())
	return c
}

// Now returns the clock's time.
func (c *Clock) Now() time.Time { return time.Unix(0, c.ns.Load()) }

// Advance moves the clock by d.
func (c *Clock) Advance(d time.Duration) { c.ns.Add(int64(d)) }
