package session_test

import (
	"context"
	"fmt"
	"log"
	"net/http"

	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"

	"github.com/regiondb/regiondb/session"
)

// Example_service wires the middleware into a service running in Tokyo
// whose users may also be served from N. Virginia.
func Example_service() {
	ctx := context.Background()
	awsCfg, err := config.LoadDefaultConfig(ctx, config.WithRegion("ap-northeast-1"))
	if err != nil {
		log.Fatal(err)
	}
	sessions, err := session.New(session.Config{
		Table:  "sessions",
		Region: "ap-northeast-1",
		Clients: map[string]session.Client{
			"ap-northeast-1": dynamodb.NewFromConfig(awsCfg),
			"us-east-1":      dynamodb.NewFromConfig(awsCfg, func(o *dynamodb.Options) { o.Region = "us-east-1" }),
		},
	})
	if err != nil {
		log.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /login", func(w http.ResponseWriter, r *http.Request) {
		// ... check the credentials, then:
		if err := sessions.RenewToken(r.Context()); err != nil {
			return // the middleware answers 503 or 500
		}
		if err := sessions.Put(r.Context(), "user", r.FormValue("user")); err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		fmt.Fprintln(w, "welcome")
	})
	mux.HandleFunc("GET /me", func(w http.ResponseWriter, r *http.Request) {
		user, err := sessions.Get(r.Context(), "user")
		if err != nil {
			return
		}
		if user == "" {
			http.Error(w, "log in first", http.StatusUnauthorized)
			return
		}
		fmt.Fprintln(w, "hello", user)
	})
	log.Fatal(http.ListenAndServe(":8080", sessions.Middleware(mux)))
}

// ExampleStore_CreateTable creates the session table for development.
func ExampleStore_CreateTable() {
	ctx := context.Background()
	awsCfg, _ := config.LoadDefaultConfig(ctx)
	store, err := session.NewStore(session.Config{
		Table:   "sessions",
		Region:  "ap-northeast-1",
		Clients: map[string]session.Client{"ap-northeast-1": dynamodb.NewFromConfig(awsCfg)},
	})
	if err != nil {
		log.Fatal(err)
	}
	// store also plugs into scs: scs.New().Store = store
	if err := store.CreateTable(ctx); err != nil {
		log.Fatal(err)
	}
}

// ExampleNew shows the validation of a Config: the error names the field.
func ExampleNew() {
	_, err := session.New(session.Config{Region: "ap-northeast-1"})
	fmt.Println(err)
	// Output: session: invalid config: Table: required
}
