// Command quickstart is regiondb on one page: queries through dbrouter,
// sessions in DynamoDB, and a cached count that never goes stale.
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
	region := flag.String("region", "us-east-1", "this process's region")
	addr := flag.String("addr", "127.0.0.1:8080", "listen address")
	writer := flag.String("writer", "", "writer DSN")
	reader := flag.String("reader", "", "this region's reader DSN")
	tokenKey := flag.String("token-key", "", "read-your-writes token secret, 16+ bytes, the same in every process")
	memcached := flag.String("memcached", "127.0.0.1:11211", "memcached address")
	dynamoEndpoint := flag.String("dynamodb", "", "DynamoDB endpoint URL (empty: AWS's)")
	flag.Parse()
	ctx := context.Background()

	// The database: writes to the writer, reads to this region's reader,
	// and every user's reads see their own writes.
	db := must(dbrouter.Open(dbrouter.Config{
		Region:    *region,
		Writer:    dbrouter.Endpoint{DSN: *writer},
		Readers:   []dbrouter.Endpoint{{DSN: *reader, Region: *region}},
		TokenKeys: []dbrouter.TokenKey{{ID: 1, Secret: []byte(*tokenKey)}},
	}))
	defer db.Close()
	must(db.ExecContext(ctx, "CREATE TABLE IF NOT EXISTS quickstart_notes (id SERIAL, body TEXT)"))

	// Sessions in this region's DynamoDB table.
	awsConfig := must(config.LoadDefaultConfig(ctx, config.WithRegion(*region)))
	dynamo := dynamodb.NewFromConfig(awsConfig, func(o *dynamodb.Options) { o.BaseEndpoint = dynamoEndpoint })
	sessions := must(session.New(session.Config{
		Table:          "quickstart_sessions",
		Region:         *region,
		Clients:        map[string]session.Client{*region: dynamo},
		InsecureCookie: true, // plain HTTP on localhost
	}))
	// For development only: production tables come from infrastructure code.
	must(0, sessions.Store(*region).CreateTable(ctx))

	// A cached count that is never refilled from a reader that lags.
	counts := cache.Typed[int]{Cache: must(cache.New(cache.Config{
		Client:      memcache.New(*memcached),
		Region:      *region,
		Consistency: db,
	}))}
	defer counts.Cache.Close()

	mux := http.NewServeMux()
	mux.HandleFunc("POST /notes", func(w http.ResponseWriter, r *http.Request) {
		body := r.FormValue("body")
		_, err := db.ExecContext(r.Context(), "INSERT INTO quickstart_notes (body) VALUES (?)", body)
		// Invalidate after the write, even a failed one (its outcome may
		// be unknown), with the write's context.
		err = errors.Join(err, counts.Cache.Invalidate(r.Context(), "notes:count"))
		err = errors.Join(err, sessions.Put(r.Context(), "last", body))
		if err != nil {
			http.Error(w, "unavailable", http.StatusServiceUnavailable)
		}
	})
	mux.HandleFunc("GET /notes", func(w http.ResponseWriter, r *http.Request) {
		n, err := counts.Get(r.Context(), "notes:count", func(ctx context.Context) (int, error) {
			var n int
			// Reads through the router with the request's context.
			err := db.QueryRowContext(ctx, "SELECT COUNT(*) FROM quickstart_notes").Scan(&n)
			return n, err
		})
		if err != nil {
			http.Error(w, "unavailable", http.StatusServiceUnavailable)
			return
		}
		last, _ := sessions.Get(r.Context(), "last") // an unavailable store already answers 503
		fmt.Fprintf(w, "%d notes; your last one: %q\n", n, last)
	})

	// The session middleware wraps dbrouter's, which scopes each request.
	log.Fatal(http.ListenAndServe(*addr, sessions.Middleware(db.Middleware(mux))))
}

// must stops the program on a setup error.
func must[T any](v T, err error) T {
	if err != nil {
		log.Fatal(err)
	}
	return v
}
