package compat

import (
	"context"
	"errors"
	"os"
	"strings"
	"testing"
	"time"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"gorm.io/driver/mysql"
	"gorm.io/gorm"

	"github.com/regiondb/regiondb/dbrouter"
	"github.com/regiondb/regiondb/internal/testserver"
)

var env *Env

func TestMain(m *testing.M) {
	code := m.Run()
	if env != nil {
		env.Close()
	}
	os.Exit(code)
}

func setup(t *testing.T) *Env {
	t.Helper()
	s := testserver.Require(t)
	if env == nil {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		e, err := Setup(ctx, s)
		if err != nil {
			t.Fatal(err)
		}
		env = e
	}
	return env
}

// TestLayers runs every layer on the routing pool, and the two controls
// that must fail where it succeeds: on the writer's plain pool no read
// reaches a reader; on a naive split reads miss the writes just made while
// the local reader is stalled.
func TestLayers(t *testing.T) {
	e := setup(t)
	for _, l := range Layers() {
		t.Run(l.Name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
			defer cancel()
			r := e.Run(ctx, l, ModeRouter, Config{GeneralLog: true})
			t.Logf("router: %+v", r)
			if !r.OK {
				t.Errorf("on the routing pool: reads on readers %.2f, %d read-your-writes violations, "+
					"%d INSERTs off the writer, %d statements without a span, errors %q",
					r.ReadsOnReaders, r.RYWViolations, r.WritesOffWriter, r.SpansMissing, r.Errors)
			}
			start := time.Now()
			w := e.Run(ctx, l, ModeWriter, Config{Reads: 10, Writes: 3, GeneralLog: true})
			t.Logf("writer control: %+v (%v)", w, time.Since(start))
			start = time.Now()
			if len(w.Errors) > 0 || w.ReadsOnReaders != 0 {
				t.Errorf("control on the writer's pool: reads on readers %.2f (want 0), errors %q", w.ReadsOnReaders, w.Errors)
			}
			// The plain pool makes no router spans: the count must see them missing.
			if w.SpansMissing != w.Executed || w.Executed == 0 {
				t.Errorf("control on the writer's pool: %d of %d statements without a span, want all", w.SpansMissing, w.Executed)
			}
			n := e.Run(ctx, l, ModeNaive, Config{Reads: 10, Writes: 3})
			t.Logf("naive control: %+v (%v)", n, time.Since(start))
			if len(n.Errors) > 0 || n.RYWViolations == 0 {
				t.Errorf("control on a naive split: %d violations (want > 0), errors %q", n.RYWViolations, n.Errors)
			}
		})
	}
}

// TestGORMSurface checks what GORM users reach through the router itself
// as the connection pool: db.DB() (GetDBConn), prepared statements,
// transactions.
func TestGORMSurface(t *testing.T) {
	e := setup(t)
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	defer tp.Shutdown(context.Background())
	cfg := RouterConfig(e.S)
	cfg.TracerProvider = tp
	rt, err := dbrouter.Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer rt.Close()
	db, err := gorm.Open(mysql.New(mysql.Config{Conn: rt}), &gorm.Config{PrepareStmt: true})
	if err != nil {
		t.Fatal(err)
	}
	sqlDB, err := db.DB()
	if err != nil || sqlDB != rt.DB() {
		t.Fatalf("db.DB() = %p, %v; want the routing pool", sqlDB, err)
	}
	sqlDB.SetMaxOpenConns(50)
	ctx := dbrouter.NewContext(t.Context())
	name := "gorm-surface-" + time.Now().Format("150405.000000000")
	err = db.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
		return tx.Create(&Item{Name: name, N: 9}).Error
	})
	if err != nil {
		t.Fatal(err)
	}
	var it Item
	if err := db.WithContext(ctx).Where("name = ?", name).First(&it).Error; err != nil || it.N != 9 {
		t.Fatalf("read own write: %+v %v", it, err)
	}
	var id int
	if err := db.WithContext(t.Context()).Raw("SELECT @@server_id").Scan(&id).Error; err != nil || id == idWriter {
		t.Errorf("eventual read ran on %d (%v), want a reader", id, err)
	}
	var names []string
	for _, s := range rec.Ended() {
		names = append(names, s.Name()+"@"+attr(s.Attributes(), "regiondb.endpoint"))
	}
	got := strings.Join(names, " ")
	for _, want := range []string{"BEGIN@m1", "INSERT@m1", "COMMIT@m1"} {
		if !strings.Contains(got, want) {
			t.Errorf("spans %q lack %s", got, want)
		}
	}
	if st := sqlDB.Stats(); st.MaxOpenConnections != 50 {
		t.Errorf("SetMaxOpenConns on db.DB() did not apply: %+v", st)
	}
	rt.Close()
	if _, err := db.DB(); !errors.Is(err, dbrouter.ErrClosed) {
		t.Errorf("db.DB() after Close: %v", err)
	}
}
