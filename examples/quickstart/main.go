// Command quickstart is regiondb on one page: queries through dbrouter, sessions in DynamoDB, a cached count that never goes stale.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log"
	"net/http"

	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/bradfitz/gomemcache/memcache"
	"github.com/regiondb/regiondb/cache"
	"github.com/regiondb/regiondb/dbrouter"
	"github.com/regiondb/regiondb/session"
)

func main() {
	region, addr := flag.String("region", "us-east-1", "this process's region"), flag.String("addr", "127.0.0.1:8080", "listen address")
	writer, reader, key := flag.String("writer", "", "writer DSN"), flag.String("reader", "", "this region's reader DSN"), flag.String("token-key", "", "token secret, 16+ bytes")
	mc, ddb := flag.String("memcached", "127.0.0.1:11211", "memcached address"), flag.String("dynamodb", "", "DynamoDB endpoint URL")
	flag.Parse()
	db := must(dbrouter.Open(dbrouter.Config{Region: *region, Writer: dbrouter.Endpoint{DSN: *writer},
		Readers: []dbrouter.Endpoint{{DSN: *reader, Region: *region}}, TokenKeys: []dbrouter.TokenKey{{ID: 1, Secret: []byte(*key)}}}))
	must(db.ExecContext(context.TODO(), "CREATE TABLE IF NOT EXISTS quickstart_notes (id SERIAL, body TEXT)"))
	dyn := dynamodb.NewFromConfig(must(config.LoadDefaultConfig(context.TODO(), config.WithRegion(*region))), func(o *dynamodb.Options) { o.BaseEndpoint = ddb })
	sessions := must(session.New(session.Config{Table: "quickstart_sessions", Region: *region, Clients: map[string]session.Client{*region: dyn}, InsecureCookie: true}))
	must(0, sessions.Store(*region).CreateTable(context.TODO())) // for development; production tables come from infrastructure code
	counts := cache.Typed[int]{Cache: must(cache.New(cache.Config{Client: memcache.New(*mc), Region: *region, Consistency: db}))}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /notes", func(w http.ResponseWriter, r *http.Request) {
		_, err := db.ExecContext(r.Context(), "INSERT INTO quickstart_notes (body) VALUES (?)", r.FormValue("body"))
		// Invalidate after the write (even a failed one: its outcome may be unknown), with the write's context.
		if errors.Join(err, counts.Cache.Invalidate(r.Context(), "notes:count"), sessions.Put(r.Context(), "last", r.FormValue("body"))) != nil {
			http.Error(w, "unavailable", http.StatusServiceUnavailable)
		}
	})
	mux.HandleFunc("GET /notes", func(w http.ResponseWriter, r *http.Request) {
		n, err := counts.Get(r.Context(), "notes:count", func(ctx context.Context) (n int, err error) {
			return n, db.QueryRowContext(ctx, "SELECT COUNT(*) FROM quickstart_notes").Scan(&n) // reads through the router with ctx
		})
		if err != nil {
			http.Error(w, "unavailable", http.StatusServiceUnavailable)
			return
		}
		last, _ := sessions.Get(r.Context(), "last") // an unavailable store already answers 503
		fmt.Fprintf(w, "%d notes; your last one: %q\n", n, last)
	})
	log.Fatal(http.ListenAndServe(*addr, sessions.Middleware(db.Middleware(mux)))) // session wraps dbrouter
}

func must[T any](v T, err error) T {
	if err != nil {
		log.Fatal(err)
	}
	return v
}
