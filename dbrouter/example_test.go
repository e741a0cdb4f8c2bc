package dbrouter_test

import (
	"context"
	"database/sql"
	"fmt"
	"log"
	"net/http"
	"time"

	"github.com/regiondb/regiondb/dbrouter"
)

// A service in two regions: every request gets a read-your-writes scope from
// the middleware, writes go to the writer, reads to the local reader once it
// has the user's writes.
func Example_service() {
	rt, err := dbrouter.Open(dbrouter.Config{
		Region: "us-east-1",
		Writer: dbrouter.Endpoint{Name: "writer", DSN: "app:pw@tcp(writer.example:3306)/photos?parseTime=true"},
		Readers: []dbrouter.Endpoint{
			{Name: "use1", DSN: "app:pw@tcp(reader-use1.example:3306)/photos?parseTime=true", Region: "us-east-1"},
			{Name: "apne1", DSN: "app:pw@tcp(reader-apne1.example:3306)/photos?parseTime=true", Region: "ap-northeast-1"},
		},
		// The same keys in every process and region.
		TokenKeys: []dbrouter.TokenKey{{ID: 1, Secret: []byte("load-me-from-a-secret-store-32-b")}},
	})
	if err != nil {
		log.Fatal(err)
	}
	defer rt.Close()

	mux := http.NewServeMux()
	mux.HandleFunc("POST /photos/{id}/like", func(w http.ResponseWriter, r *http.Request) {
		ctx := r.Context()
		if _, err := rt.ExecContext(ctx, "UPDATE photos SET likes = likes + 1 WHERE id = ?", r.PathValue("id")); err != nil {
			http.Error(w, "try again", http.StatusServiceUnavailable)
			return
		}
		// Same request: this read sees the like, from a reader that has
		// applied it (or, if none has in time, from the writer).
		var likes int
		if err := rt.QueryRowContext(ctx, "SELECT likes FROM photos WHERE id = ?", r.PathValue("id")).Scan(&likes); err != nil {
			http.Error(w, "try again", http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, likes)
	})
	// The middleware restores the user's token (cookie or header) and
	// returns the advanced one, so the next request, in any region, sees
	// the like too.
	log.Fatal(http.ListenAndServe(":8080", rt.Middleware(mux)))
}

// Reads that need no freshness can use any reader at most 5 s behind, even
// right after the user wrote.
func ExampleWithMaxStaleness() {
	var rt *dbrouter.Router // from dbrouter.Open
	ctx := dbrouter.WithMaxStaleness(context.Background(), 5*time.Second)
	var n int
	_ = rt.QueryRowContext(ctx, "SELECT COUNT(*) FROM photos").Scan(&n)
}

// Work outside HTTP (a job, a queue consumer) makes its own scope.
func ExampleNewContext() {
	var rt *dbrouter.Router // from dbrouter.Open
	ctx := dbrouter.NewContext(context.Background())
	if _, err := rt.ExecContext(ctx, "INSERT INTO jobs (state) VALUES ('done')"); err != nil {
		log.Print(err)
	}
	// Reads through ctx see the insert.
	rows, err := rt.QueryContext(ctx, "SELECT id FROM jobs WHERE state = 'done'")
	if err == nil {
		rows.Close()
	}
}

// A read-only transaction runs on a reader chosen like a read.
func ExampleRouter_BeginTx() {
	var rt *dbrouter.Router // from dbrouter.Open
	ctx := context.Background()
	tx, err := rt.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		log.Print(err)
		return
	}
	defer tx.Rollback()
}

// MergePositions combines positions of the Consistency contract; "" counts
// as nothing. Open does not connect, so this runs without a server.
func ExampleRouter_MergePositions() {
	rt, err := dbrouter.Open(dbrouter.Config{Writer: dbrouter.Endpoint{DSN: "app:pw@tcp(127.0.0.1:1)/db"}})
	if err != nil {
		log.Fatal(err)
	}
	defer rt.Close()
	fmt.Println(rt.MergePositions("0:5,1:2", "0:7"))
	fmt.Println(rt.MergePositions("", "0:7"))
	// Output:
	// 0:7,1:2
	// 0:7
}

// Code written for a *sql.DB (a repository, a data layer such as GORM,
// sqlx, ent or bun) takes the routing pool: its reads go to readers, its
// writes and transactions to the writer, and a read after a write in the
// same scope sees it.
func ExampleRouter_DB() {
	rt, err := dbrouter.Open(dbrouter.Config{
		Region:  "us-east-1",
		Writer:  dbrouter.Endpoint{Name: "writer", DSN: "app:pw@tcp(writer.example:3306)/photos"},
		Readers: []dbrouter.Endpoint{{Name: "use1", DSN: "app:pw@tcp(reader-use1.example:3306)/photos", Region: "us-east-1"}},
	})
	if err != nil {
		log.Fatal(err)
	}
	defer rt.Close()
	db := rt.DB() // for example gorm.Open(mysql.New(mysql.Config{Conn: db}))

	ctx := dbrouter.NewContext(context.Background()) // a request's scope; the middleware makes one
	tx, err := db.BeginTx(ctx, nil)                  // on the writer
	if err != nil {
		log.Fatal(err)
	}
	if _, err := tx.ExecContext(ctx, "INSERT INTO photos (id, title) VALUES (?, ?)", 7, "dunes"); err != nil {
		tx.Rollback()
		log.Fatal(err)
	}
	if err := tx.Commit(); err != nil { // advances ctx's scope
		log.Fatal(err)
	}
	var title string
	// A reader that has applied the commit (or the writer) answers.
	if err := db.QueryRowContext(ctx, "SELECT title FROM photos WHERE id = ?", 7).Scan(&title); err != nil {
		log.Fatal(err)
	}
	fmt.Println(title)
}
