package main

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsconfig "github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/bradfitz/gomemcache/memcache"
	"github.com/go-sql-driver/mysql"

	"github.com/regiondb/regiondb/cache"
	"github.com/regiondb/regiondb/dbrouter"
	"github.com/regiondb/regiondb/session"
)

var (
	_ database    = (*dbrouter.Router)(nil)
	_ recordCache = (*cache.Cache)(nil)
	_ linkTokens  = routerTokens{}
	_ sessions    = managerSessions{}
)

// openBackends connects the service to its database (dbrouter), sessions
// (session, on DynamoDB) and cache (cache, on memcached), all reporting to
// the service's OpenTelemetry providers.
func openBackends(ctx context.Context, cfg config, tel *telemetry, logger *slog.Logger) (_ *backends, err error) {
	var closers []func() error
	closeAll := func() error {
		var errs []error
		for i := len(closers) - 1; i >= 0; i-- {
			errs = append(errs, closers[i]())
		}
		return errors.Join(errs...)
	}
	defer func() {
		if err != nil {
			closeAll()
		}
	}()

	// Sessions: the local region's table, and the other regions' for the
	// reads of a session that has not replicated here yet.
	clients := map[string]session.Client{}
	local, err := dynamoClient(ctx, cfg.region, cfg.dynamoDB, cfg.dynamoLocal)
	if err != nil {
		return nil, err
	}
	clients[cfg.region] = local
	ddbClients := map[string]*dynamodb.Client{cfg.region: local} // for /healthz
	for _, rv := range cfg.remoteDynamoDB {
		c, err := dynamoClient(ctx, rv.region, rv.value, cfg.dynamoLocal)
		if err != nil {
			return nil, err
		}
		clients[rv.region] = c
		ddbClients[rv.region] = c
	}
	sm, err := session.New(session.Config{
		Table:          cfg.sessionTable,
		Region:         cfg.region,
		Clients:        clients,
		InsecureCookie: cfg.insecureCookies,
		Logger:         logger.With("pkg", "session"),
		TracerProvider: tel.tp,
		MeterProvider:  tel.mp,
	})
	if err != nil {
		return nil, err
	}
	if cfg.createTable {
		tctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		err := sm.Store(cfg.region).CreateTable(tctx)
		cancel()
		if err != nil {
			return nil, fmt.Errorf("create the session table: %w", err)
		}
	}

	// Database: the writer, and every region's readers. The
	// read-your-writes token travels in its own cookie (free: it needs no
	// DynamoDB write when it changes), or in the session with
	// -token-in-session.
	rcfg := dbrouter.Config{
		Region:         cfg.region,
		Writer:         dbrouter.Endpoint{Name: "writer", DSN: cfg.writer},
		TokenKeys:      []dbrouter.TokenKey{{ID: 1, Secret: []byte(cfg.tokenKey)}},
		Logger:         logger.With("pkg", "dbrouter"),
		TracerProvider: tel.tp,
		MeterProvider:  tel.mp,
	}
	tokenWhere := "its own cookie"
	if cfg.tokenInSession {
		rcfg.TokenCarrier = sm.TokenCarrier()
		tokenWhere = "the session"
	}
	for i, rv := range cfg.readers {
		rcfg.Readers = append(rcfg.Readers, dbrouter.Endpoint{Name: "reader-" + rv.region + "-" + strconv.Itoa(i), DSN: rv.value, Region: rv.region})
	}
	router, err := dbrouter.Open(rcfg)
	if err != nil {
		return nil, err
	}
	closers = append(closers, router.Close)
	if err := tel.observeRouter(router); err != nil {
		return nil, err
	}

	// Cache: this region's memcached, invalidations to every region's.
	mc := memcache.New(cfg.memcached)
	mc.Timeout = 100 * time.Millisecond
	mc.MaxIdleConns = 64 // gomemcache keeps 2 by default: under concurrency it would redial all the time
	closers = append(closers, mc.Close)
	mcClients := map[string]*memcache.Client{cfg.region: mc} // for /healthz
	// The cache signs the positions it keeps in memcached with a key derived
	// from the token secret, which every region shares.
	itemKey := hmac.New(sha256.New, []byte(cfg.tokenKey))
	itemKey.Write([]byte("photoalbum cache items"))
	ccfg := cache.Config{
		Client:         mc,
		Region:         cfg.region,
		Consistency:    router,
		ItemKeys:       []cache.Secret{itemKey.Sum(nil)},
		TTL:            cfg.cacheTTL,
		Logger:         logger.With("pkg", "cache"),
		TracerProvider: tel.tp,
		MeterProvider:  tel.mp,
	}
	for _, rv := range cfg.remoteMemcached {
		rc := memcache.New(rv.value)
		rc.Timeout = 250 * time.Millisecond
		rc.MaxIdleConns = 16
		closers = append(closers, rc.Close)
		mcClients[rv.region] = rc
		ccfg.Remotes = append(ccfg.Remotes, cache.Region{Name: rv.region, Client: rc})
	}
	c, err := cache.New(ccfg)
	if err != nil {
		return nil, err
	}
	closers = append(closers, c.Close)

	return &backends{
		db:          router,
		tokens:      routerTokens{router},
		sessions:    managerSessions{sm},
		cache:       c,
		consistency: router.Middleware,
		close:       closeAll,
		health:      newHealthChecks(router, ddbClients, cfg.sessionTable, mcClients),
		describe: map[string]string{
			"dbrouter": "dbrouter.Router (writer + readers of every region; token in " + tokenWhere + ")",
			"session":  "session.Manager on DynamoDB (table " + cfg.sessionTable + ")",
			"cache":    "cache.Cache on memcached (invalidations to every region)",
		},
	}, nil
}

// dynamoClient returns a DynamoDB client for region; endpoint overrides the
// AWS endpoint (DynamoDB Local, dynalite), local uses dummy credentials.
func dynamoClient(ctx context.Context, region, endpoint string, local bool) (*dynamodb.Client, error) {
	opts := []func(*awsconfig.LoadOptions) error{awsconfig.WithRegion(region)}
	if local {
		opts = append(opts, awsconfig.WithCredentialsProvider(credentials.NewStaticCredentialsProvider("local", "local", "")))
	}
	ac, err := awsconfig.LoadDefaultConfig(ctx, opts...)
	if err != nil {
		return nil, err
	}
	return dynamodb.NewFromConfig(ac, func(o *dynamodb.Options) {
		if endpoint != "" {
			o.BaseEndpoint = aws.String(endpoint)
		}
	}), nil
}

// routerTokens carries the router's read-your-writes token in links.
type routerTokens struct{ rt *dbrouter.Router }

func (t routerTokens) LinkToken(ctx context.Context) string { return t.rt.Token(ctx) }

func (t routerTokens) WithLinkToken(ctx context.Context, tok string) context.Context {
	// A bad token is ignored (and counted by the router): the page still shows.
	ctx, _ = t.rt.WithToken(ctx, tok)
	return ctx
}

// managerSessions keeps the logged-in user's id in the session.
type managerSessions struct{ m *session.Manager }

const sessionUserKey = "user_id"

func (s managerSessions) Middleware(next http.Handler) http.Handler { return s.m.Middleware(next) }

func (s managerSessions) UserID(ctx context.Context) (int64, error) {
	v, err := s.m.Get(ctx, sessionUserKey)
	if err != nil || v == "" {
		return 0, err
	}
	id, err := strconv.ParseInt(v, 10, 64)
	if err != nil {
		return 0, nil // not ours: treat as logged out
	}
	return id, nil
}

func (s managerSessions) Login(ctx context.Context, userID int64) error {
	if err := s.m.RenewToken(ctx); err != nil {
		return err
	}
	return s.m.Put(ctx, sessionUserKey, strconv.FormatInt(userID, 10))
}

func (s managerSessions) Logout(ctx context.Context) error { return s.m.Destroy(ctx) }

func isDuplicate(err error) bool {
	var me *mysql.MySQLError
	return errors.As(err, &me) && me.Number == 1062
}
