// Command bench-overhead measures dbrouter's read-path overhead over a raw
// *sql.DB on a loopback primary-key SELECT against the local stack's reader
// (interleaved query by query in one process, fresh pools per round; medians
// of the rounds, see rywharness.MeasureOverhead). Its last line is
// {"ns_ratio":...,"extra_allocs":...}. Run it with `make bench-overhead`.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"log"
	"os"

	"github.com/regiondb/regiondb/internal/rywharness"
	"github.com/regiondb/regiondb/internal/testserver"
)

func main() {
	rounds := flag.Int("rounds", 7, "repeated runs, each with fresh pools")
	pairs := flag.Int("pairs", 61, "interleaved (raw, router) batch pairs per round")
	batch := flag.Int("batch", 200, "queries per batch")
	flag.Parse()
	log.SetFlags(0)
	s, err := testserver.Lookup()
	if err != nil {
		log.Fatal(err)
	}
	o, err := rywharness.MeasureOverhead(context.Background(), s, rywharness.OverheadConfig{
		Rounds: *rounds, Pairs: *pairs, Batch: *batch,
		Logf: func(f string, a ...any) { fmt.Fprintf(os.Stderr, f+"\n", a...) },
	})
	if err != nil {
		log.Fatal(err)
	}
	b, _ := json.Marshal(o)
	fmt.Println(string(b))
}
