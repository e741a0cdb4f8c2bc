// Command bench-compat runs the compatibility suite of the routing *sql.DB
// (package compat) for every data layer against the local stack, with its
// controls, and compares GORM on regiondb with GORM on
// gorm.io/plugin/dbresolver. Its last line is one JSON object:
// {"layers":{"gorm":{"ok":...,"reads_on_readers":...,"ryw_violations":...},
// ...},"spans_missing":N,"controls":{...},"vs_gorm_dbresolver_ns_ratio":R}.
// Run it with `make bench-compat`.
package main

import (
	"context"
	"encoding/json"
	"fmt"
	"log"
	"os"

	"github.com/regiondb/regiondb/compat"
	"github.com/regiondb/regiondb/internal/testserver"
)

type control struct {
	ReadsOnReaders float64 `json:"reads_on_readers"`
	RYWViolations  int     `json:"ryw_violations"`
}

type output struct {
	Layers       map[string]compat.Result `json:"layers"`
	SpansMissing int                      `json:"spans_missing"`
	Controls     struct {
		// Writer: each layer on a plain *sql.DB of the writer.
		Writer map[string]control `json:"writer"`
		// WriterSpansMissing: the suite's statements without a router
		// span on those plain pools (all of them: the count can see).
		WriterSpansMissing int `json:"writer_spans_missing"`
		// Naive: reads on the local reader's plain pool, writes on the
		// writer's.
		Naive map[string]control `json:"naive"`
	} `json:"controls"`
	VsGORMDBResolver       float64 `json:"vs_gorm_dbresolver_ns_ratio"`
	VsGORMDBResolverScoped float64 `json:"vs_gorm_dbresolver_ns_ratio_scoped"`
}

func main() {
	log.SetFlags(0)
	ctx := context.Background()
	s, err := testserver.Lookup()
	if err != nil {
		log.Fatal(err)
	}
	env, err := compat.Setup(ctx, s)
	if err != nil {
		log.Fatal(err)
	}
	defer env.Close()
	var out output
	out.Layers = map[string]compat.Result{}
	out.Controls.Writer = map[string]control{}
	out.Controls.Naive = map[string]control{}
	for _, l := range compat.Layers() {
		r := env.Run(ctx, l, compat.ModeRouter, compat.Config{GeneralLog: true})
		fmt.Fprintf(os.Stderr, "%s on the routing pool: %+v\n", l.Name, r)
		out.Layers[l.Name] = r
		out.SpansMissing += r.SpansMissing
		w := env.Run(ctx, l, compat.ModeWriter, compat.Config{Reads: 20, Writes: 5, GeneralLog: true})
		fmt.Fprintf(os.Stderr, "%s on the writer's plain pool: %+v\n", l.Name, w)
		out.Controls.Writer[l.Name] = control{w.ReadsOnReaders, w.RYWViolations}
		out.Controls.WriterSpansMissing += w.SpansMissing
		n := env.Run(ctx, l, compat.ModeNaive, compat.Config{Reads: 20, Writes: 5})
		fmt.Fprintf(os.Stderr, "%s on a naive split: %+v\n", l.Name, n)
		out.Controls.Naive[l.Name] = control{n.ReadsOnReaders, n.RYWViolations}
		if len(w.Errors)+len(n.Errors) > 0 {
			log.Fatalf("%s controls failed to run: %q %q", l.Name, w.Errors, n.Errors)
		}
	}
	if out.VsGORMDBResolver, err = env.ComparePeer(ctx, compat.PeerConfig{Pairs: 61}); err != nil {
		log.Fatal(err)
	}
	if out.VsGORMDBResolverScoped, err = env.ComparePeer(ctx, compat.PeerConfig{Pairs: 61, Scoped: true}); err != nil {
		log.Fatal(err)
	}
	fmt.Fprintf(os.Stderr, "GORM point select + insert, regiondb / dbresolver: %.4f (in a read-your-writes scope: %.4f)\n",
		out.VsGORMDBResolver, out.VsGORMDBResolverScoped)
	b, _ := json.Marshal(out)
	fmt.Println(string(b))
}
