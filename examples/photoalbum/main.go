// Command photoalbum is a family photo-album service shared across countries,
// built on regiondb: the demo of the README and a template for a real service.
//
// One binary runs in every region, started with that region's endpoints:
//
//	photoalbum -region ap-northeast-1 -addr :8080 \
//	    -writer 'app:pw@tcp(writer.tokyo:3306)/album?parseTime=true' \
//	    -reader 'ap-northeast-1=app:pw@tcp(reader.tokyo:3306)/album?parseTime=true' \
//	    -reader 'us-east-1=app:pw@tcp(reader.virginia:3306)/album?parseTime=true' \
//	    -memcached memcached.tokyo:11211 -remote-memcached us-east-1=memcached.virginia:11211 \
//	    -dynamodb https://dynamodb.ap-northeast-1.amazonaws.com \
//	    -remote-dynamodb us-east-1=https://dynamodb.us-east-1.amazonaws.com \
//	    -token-key-file /run/secrets/ryw-key
//
// Every query goes through dbrouter (writes to the writer, reads to the local
// reader unless it has not applied the request's writes yet), logins through
// session (DynamoDB), and the user and family records that every request
// reads through cache (memcached). Notifications carry the writer's
// consistency token in their link, so a grandparent opening it in another
// region sees the photos the parent just added. OpenTelemetry traces go to
// -trace-file (stdout format); metrics are kept in memory and served at
// /debug/metrics with -debug.
//
// API (JSON): POST /signup, POST /login, POST /logout, GET /me, PATCH /me,
// POST /families, GET /families/{id}, PATCH /families/{id},
// POST /families/{id}/members, POST /families/{id}/albums, GET /albums/{id},
// POST /albums/{id}/photos, GET /notifications, GET /healthz; with -debug also
// GET /debug/metrics and GET /debug/outbox?user=ID (the push notifications
// sent, standing in for an email or push provider).
//
// On start it prints one line "photoalbum: listening on http://ADDR" to
// stdout; it stops on SIGINT or SIGTERM.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/go-sql-driver/mysql"
)

// regionValues is a repeatable flag of region=value pairs.
type regionValues []regionValue

type regionValue struct{ region, value string }

func (v *regionValues) String() string {
	var parts []string
	for _, rv := range *v {
		parts = append(parts, rv.region+"=…")
	}
	return strings.Join(parts, ",")
}

func (v *regionValues) Set(s string) error {
	region, value, ok := strings.Cut(s, "=")
	if !ok || region == "" || value == "" {
		return errors.New("want region=value")
	}
	*v = append(*v, regionValue{region, value})
	return nil
}

// config is the service's configuration, from flags.
type config struct {
	addr            string
	region          string
	writer          string
	readers         regionValues
	memcached       string
	remoteMemcached regionValues
	dynamoDB        string
	remoteDynamoDB  regionValues
	dynamoLocal     bool
	tokenInSession  bool
	cachePrefix     string
	sessionTable    string
	createTable     bool
	tokenKey        string
	migrate         bool
	cacheTTL        time.Duration
	insecureCookies bool
	debug           bool
	traceFile       string
	traceRatio      float64
	logLevel        string
}

func parseFlags(args []string, errOut io.Writer) (config, error) {
	var c config
	fs := flag.NewFlagSet("photoalbum", flag.ContinueOnError)
	fs.SetOutput(errOut)
	fs.StringVar(&c.addr, "addr", "127.0.0.1:8080", "listen address (port 0 picks a free port)")
	fs.StringVar(&c.region, "region", "", "this instance's region, e.g. ap-northeast-1 (required)")
	fs.StringVar(&c.writer, "writer", "", "MySQL DSN of the writer (required)")
	fs.Var(&c.readers, "reader", "region=DSN of a reader; repeat for every reader of every region")
	fs.StringVar(&c.memcached, "memcached", "", "this region's memcached address (required)")
	fs.Var(&c.remoteMemcached, "remote-memcached", "region=address of another region's memcached (invalidations); repeatable")
	fs.StringVar(&c.dynamoDB, "dynamodb", "", "this region's DynamoDB endpoint URL (empty: the AWS default for -region)")
	fs.Var(&c.remoteDynamoDB, "remote-dynamodb", "region=endpoint URL of another region's DynamoDB (session fallback reads); repeatable")
	fs.BoolVar(&c.dynamoLocal, "dynamodb-local", false, "use dummy AWS credentials (DynamoDB Local or dynalite at -dynamodb)")
	fs.StringVar(&c.sessionTable, "session-table", "photoalbum_sessions", "DynamoDB table of the sessions (a Global Table in production)")
	fs.BoolVar(&c.createTable, "create-session-table", false, "create the session table if missing (development)")
	tokenKeyFile := fs.String("token-key-file", "", "file holding the secret that signs read-your-writes tokens and links (same in every region)")
	fs.BoolVar(&c.tokenInSession, "token-in-session", false, "keep the read-your-writes token in the session (DynamoDB) instead of its own cookie")
	fs.StringVar(&c.tokenKey, "token-key", "", "the signing secret itself (development; prefer -token-key-file)")
	fs.BoolVar(&c.migrate, "migrate", false, "create the database and tables on the writer before serving")
	fs.DurationVar(&c.cacheTTL, "cache-ttl", time.Minute, "how long cached user and family records stay fresh")
	fs.StringVar(&c.cachePrefix, "cache-prefix", "photoalbum:v1:", "prefix of the cache keys (change it when the records' format changes)")
	fs.BoolVar(&c.insecureCookies, "insecure-cookies", false, "send cookies over plain HTTP (local development only)")
	fs.BoolVar(&c.debug, "debug", false, "serve /debug/metrics and /debug/outbox")
	fs.StringVar(&c.traceFile, "trace-file", "", "write sampled spans here in the stdout exporter's format (\"-\" for stdout)")
	fs.Float64Var(&c.traceRatio, "trace-ratio", 0.01, "share of requests traced")
	fs.StringVar(&c.logLevel, "log-level", "info", "debug, info, warn or error")
	if err := fs.Parse(args); err != nil {
		return c, err
	}
	if *tokenKeyFile != "" {
		b, err := os.ReadFile(*tokenKeyFile)
		if err != nil {
			return c, err
		}
		c.tokenKey = strings.TrimSpace(string(b))
	}
	switch {
	case c.region == "":
		return c, errors.New("-region is required")
	case c.writer == "":
		return c, errors.New("-writer is required")
	case c.memcached == "":
		return c, errors.New("-memcached is required")
	case len(c.tokenKey) < 16:
		return c, errors.New("-token-key-file (or -token-key) must hold at least 16 bytes")
	}
	return c, nil
}

func main() {
	cfg, err := parseFlags(os.Args[1:], os.Stderr)
	if errors.Is(err, flag.ErrHelp) {
		os.Exit(2)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "photoalbum:", err)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, cfg, os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "photoalbum:", err)
		os.Exit(1)
	}
}

// run serves until ctx is done.
func run(ctx context.Context, cfg config, stdout, stderr io.Writer) error {
	var level slog.Level
	if err := level.UnmarshalText([]byte(cfg.logLevel)); err != nil {
		return fmt.Errorf("-log-level: %w", err)
	}
	logger := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level})).With("region", cfg.region)
	// The MySQL driver logs through a package-level logger of its own.
	mysql.SetLogger(slog.NewLogLogger(logger.Handler(), slog.LevelWarn))

	var traceOut io.Writer
	switch cfg.traceFile {
	case "":
	case "-":
		traceOut = stdout
	default:
		f, err := os.Create(cfg.traceFile)
		if err != nil {
			return err
		}
		defer f.Close()
		traceOut = f
	}
	tel, err := newTelemetry(cfg.region, traceOut, cfg.traceRatio)
	if err != nil {
		return err
	}
	defer func() {
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		tel.shutdown(sctx)
	}()

	if cfg.migrate {
		mctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		err := migrate(mctx, cfg.writer)
		cancel()
		if err != nil {
			return err
		}
	}
	b, err := openBackends(ctx, cfg, tel, logger)
	if err != nil {
		return err
	}
	defer b.close()

	a := newApp(cfg, b, tel, logger)
	ln, err := net.Listen("tcp", cfg.addr)
	if err != nil {
		return err
	}
	srv := &http.Server{
		Handler:           a.handler(),
		ReadHeaderTimeout: 5 * time.Second,
		ErrorLog:          slog.NewLogLogger(logger.Handler(), slog.LevelWarn),
	}
	fmt.Fprintf(stdout, "photoalbum: listening on http://%s\n", ln.Addr())
	logger.Info("serving", "addr", ln.Addr().String())
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err = srv.Shutdown(sctx)
	<-errc
	logger.Info("stopped")
	return err
}
