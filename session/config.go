package session

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"
)

// Defaults used for zero [Config] fields.
const (
	// DefaultCookieName is the session cookie's name.
	DefaultCookieName = "regiondb_session"
	// DefaultIdleTimeout ends a session nobody used for this long.
	DefaultIdleTimeout = 24 * time.Hour
	// DefaultAbsoluteTimeout ends every session this long after it began.
	DefaultAbsoluteTimeout = 7 * 24 * time.Hour
	// DefaultTouchInterval is the most often a read-only request extends
	// the idle deadline (one DynamoDB write per session per interval).
	DefaultTouchInterval = 10 * time.Minute
	// DefaultMaxAttempts is the number of attempts of one DynamoDB call,
	// retries included, made by the SDK's standard retryer.
	DefaultMaxAttempts = 3
	// DefaultMaxBackoff caps the SDK retryer's jittered backoff.
	DefaultMaxBackoff = 200 * time.Millisecond
	// DefaultMaxConflictRetries bounds the re-read-and-merge rounds of one save.
	DefaultMaxConflictRetries = 5
	// DefaultCallTimeout bounds one DynamoDB call, the SDK's retries
	// included, so that an unreachable region fails over instead of
	// holding the request.
	DefaultCallTimeout = time.Second
	// DefaultProbeInterval is how often, while the local table is
	// unavailable, one request tries it again.
	DefaultProbeInterval = time.Second
	// DefaultReplicationWait is how long, while the local table is
	// unavailable, a request waits for a session's newest version to
	// reach the fallback region's replica.
	DefaultReplicationWait = 1500 * time.Millisecond
	// DefaultTokenKey is the default of [Config.TokenKey]: the session key
	// under which [Manager.TokenCarrier] keeps the read-your-writes token.
	DefaultTokenKey = "regiondb.ryw_token"
)

// Client is the part of *dynamodb.Client a [Store] uses. Pass a
// *dynamodb.Client; its retryer is replaced per call by a standard retryer
// bounded by [Config.MaxAttempts] and [Config.MaxBackoff].
type Client interface {
	GetItem(ctx context.Context, in *dynamodb.GetItemInput, optFns ...func(*dynamodb.Options)) (*dynamodb.GetItemOutput, error)
	PutItem(ctx context.Context, in *dynamodb.PutItemInput, optFns ...func(*dynamodb.Options)) (*dynamodb.PutItemOutput, error)
	UpdateItem(ctx context.Context, in *dynamodb.UpdateItemInput, optFns ...func(*dynamodb.Options)) (*dynamodb.UpdateItemOutput, error)
	DeleteItem(ctx context.Context, in *dynamodb.DeleteItemInput, optFns ...func(*dynamodb.Options)) (*dynamodb.DeleteItemOutput, error)
}

// Config configures a [Manager] ([New]) or a single [Store] ([NewStore]).
// The zero value of every field but Table, Region and Clients is a usable
// default; the defaults are the secure ones.
type Config struct {
	// Table is the DynamoDB table of the sessions (a Global Table in
	// production, the same name in every region). Required.
	Table string

	// Region is the region this process runs in. Its entry in Clients is
	// the local table every session is read from and written to. Required.
	Region string

	// Clients maps region names to DynamoDB clients for Table in that
	// region (*dynamodb.Client). Clients[Region] is required. The other
	// entries are used to read a session whose cookie says it was last
	// written in that region and whose local copy has not caught up yet
	// (at most one such read per request), and, while the local table is
	// unavailable, to serve sessions from the first of them by name (see
	// the package doc, "Regional outages"). With no other entries there is
	// no cross-region fallback. NewStore uses Clients[Region] only.
	Clients map[string]Client

	// CookieName is the session cookie's name. If empty, [DefaultCookieName].
	CookieName string
	// CookiePath is the cookie's Path. If empty, "/".
	CookiePath string
	// CookieDomain is the cookie's Domain. If empty, the cookie is host-only.
	CookieDomain string
	// CookieSameSite is the cookie's SameSite attribute. If zero (or
	// http.SameSiteDefaultMode), http.SameSiteLaxMode.
	CookieSameSite http.SameSite
	// TokenKey is the session key under which [Manager.TokenCarrier] keeps
	// dbrouter's read-your-writes token. If empty, [DefaultTokenKey] is
	// used.
	TokenKey string

	// InsecureCookie, if true, omits the cookie's Secure attribute (plain
	// HTTP during development). False (the default): the cookie is Secure
	// whatever the request's TLS state, which is right behind a load
	// balancer that terminates TLS (r.TLS is nil there).
	InsecureCookie bool
	// ScriptReadableCookie, if true, omits HttpOnly. False: HttpOnly.
	ScriptReadableCookie bool

	// IdleTimeout ends a session not used for this long. If zero,
	// [DefaultIdleTimeout].
	IdleTimeout time.Duration
	// AbsoluteTimeout ends a session this long after it was created, used
	// or not. If zero, [DefaultAbsoluteTimeout].
	AbsoluteTimeout time.Duration
	// TouchInterval is the least time between two writes that only extend
	// the idle deadline: a request that reads the session but changes
	// nothing writes only if the last write is at least this old. If zero,
	// the smaller of [DefaultTouchInterval] and IdleTimeout/4. It must be
	// less than IdleTimeout.
	TouchInterval time.Duration

	// ContinueWithoutSession selects the failure policy when DynamoDB stays
	// unavailable after the SDK's retries. False (the default): the
	// request fails with 503 Service Unavailable (through ErrorFunc).
	// True: the request continues with an empty session that is not saved
	// (Put returns an error wrapping [ErrUnavailable]); every such request
	// is counted and logged.
	ContinueWithoutSession bool

	// MaxAttempts is the number of attempts of one DynamoDB call made by
	// the SDK's standard retryer (retry.NewStandard). If zero,
	// [DefaultMaxAttempts]; 1 disables retries.
	MaxAttempts int
	// MaxBackoff caps the retryer's jittered exponential backoff. If zero,
	// [DefaultMaxBackoff].
	MaxBackoff time.Duration
	// CallTimeout bounds one DynamoDB call, the SDK's retries included; a
	// call that takes longer counts as the region being unavailable. If
	// zero, [DefaultCallTimeout].
	CallTimeout time.Duration
	// ProbeInterval is how often, while the local table is unavailable
	// and sessions are served from another region's replica, one request
	// tries the local table again (see the package doc, "Regional
	// outages"). If zero, [DefaultProbeInterval].
	ProbeInterval time.Duration
	// ReplicationWait is how long, while the local table is unavailable, a
	// request whose cookie names a version the fallback region's replica
	// does not have yet waits for it to arrive (re-reading every 100 ms)
	// before it is served the older copy read-only, or, if there is none,
	// fails with [ErrUnavailable]. If zero, [DefaultReplicationWait];
	// negative: no wait.
	ReplicationWait time.Duration
	// MaxConflictRetries is how many times a save that lost a race (the
	// version it was based on changed) re-reads and merges before it fails
	// with [ErrConflict]. If zero, [DefaultMaxConflictRetries].
	MaxConflictRetries int

	// ErrorFunc answers a request whose session could not be loaded or
	// saved. If nil, the answer is a bare 503 for errors wrapping
	// [ErrUnavailable] (with Retry-After: 1) and 500 for others, and the
	// error is logged. It never runs under an internal lock.
	ErrorFunc func(w http.ResponseWriter, r *http.Request, err error)

	// Now is the clock. If nil, time.Now.
	//
	// Deprecated: Now exists for this module's own tests and will be
	// removed; nothing but tests should replace the clock. Tests of code
	// that uses a Manager can run under testing/synctest instead.
	Now func() time.Time

	// Logger receives background events (a failed fallback read, a
	// request continuing without its session). If nil, nothing is logged.
	Logger *slog.Logger
	// TracerProvider creates the spans of the DynamoDB calls. If nil,
	// otel.GetTracerProvider().
	TracerProvider trace.TracerProvider
	// MeterProvider creates the metrics. If nil, otel.GetMeterProvider().
	MeterProvider metric.MeterProvider
}

// normalize returns a copy of c with defaults filled in, or a
// [*ConfigError] naming the first invalid field. needRegions is false for NewStore.
func (c Config) normalize() (Config, error) {
	if c.Table == "" {
		return c, &ConfigError{Field: "Table", Reason: "required"}
	}
	if c.Region == "" {
		return c, &ConfigError{Field: "Region", Reason: "required"}
	}
	if c.Clients[c.Region] == nil {
		return c, &ConfigError{Field: "Clients", Reason: fmt.Sprintf("no client for Config.Region %q", c.Region)}
	}
	clients := make(map[string]Client, len(c.Clients))
	for r, cl := range c.Clients {
		if cl == nil {
			return c, &ConfigError{Field: fmt.Sprintf("Clients[%q]", r), Reason: "nil client"}
		}
		if len(r) > maxRegionLen {
			return c, &ConfigError{Field: "Clients", Reason: fmt.Sprintf("region name %q longer than %d bytes", r, maxRegionLen)}
		}
		clients[r] = cl
	}
	c.Clients = clients
	if c.CookieName == "" {
		c.CookieName = DefaultCookieName
	}
	if c.TokenKey == "" {
		c.TokenKey = DefaultTokenKey
	}
	if !validCookieName(c.CookieName) {
		return c, &ConfigError{Field: "CookieName", Reason: fmt.Sprintf("%q is not a valid cookie name", c.CookieName)}
	}
	if c.CookiePath == "" {
		c.CookiePath = "/"
	}
	if c.CookieSameSite == 0 || c.CookieSameSite == http.SameSiteDefaultMode {
		c.CookieSameSite = http.SameSiteLaxMode
	}
	for _, f := range []struct {
		name string
		v    int64
	}{
		{"IdleTimeout", int64(c.IdleTimeout)}, {"AbsoluteTimeout", int64(c.AbsoluteTimeout)},
		{"TouchInterval", int64(c.TouchInterval)}, {"MaxBackoff", int64(c.MaxBackoff)},
		{"MaxAttempts", int64(c.MaxAttempts)}, {"MaxConflictRetries", int64(c.MaxConflictRetries)},
		{"CallTimeout", int64(c.CallTimeout)}, {"ProbeInterval", int64(c.ProbeInterval)},
	} {
		if f.v < 0 {
			return c, &ConfigError{Field: f.name, Reason: "must not be negative"}
		}
	}
	if c.IdleTimeout == 0 {
		c.IdleTimeout = DefaultIdleTimeout
	}
	if c.AbsoluteTimeout == 0 {
		c.AbsoluteTimeout = DefaultAbsoluteTimeout
	}
	if c.TouchInterval == 0 {
		c.TouchInterval = min(DefaultTouchInterval, c.IdleTimeout/4)
	}
	if c.TouchInterval >= c.IdleTimeout {
		return c, &ConfigError{Field: "TouchInterval", Reason: fmt.Sprintf("%v must be less than IdleTimeout (%v)", c.TouchInterval, c.IdleTimeout)}
	}
	if c.MaxAttempts == 0 {
		c.MaxAttempts = DefaultMaxAttempts
	}
	if c.MaxBackoff == 0 {
		c.MaxBackoff = DefaultMaxBackoff
	}
	if c.MaxConflictRetries == 0 {
		c.MaxConflictRetries = DefaultMaxConflictRetries
	}
	if c.CallTimeout == 0 {
		c.CallTimeout = DefaultCallTimeout
	}
	if c.ReplicationWait == 0 {
		c.ReplicationWait = DefaultReplicationWait
	}
	if c.ProbeInterval == 0 {
		c.ProbeInterval = DefaultProbeInterval
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.TracerProvider == nil {
		c.TracerProvider = otel.GetTracerProvider()
	}
	if c.MeterProvider == nil {
		c.MeterProvider = otel.GetMeterProvider()
	}
	return c, nil
}

func validCookieName(s string) bool {
	for i := 0; i < len(s); i++ {
		b := s[i]
		if b <= ' ' || b >= 0x7f || strings.IndexByte(`()<>@,;:\"/[]?={}`, b) >= 0 {
			return false
		}
	}
	return s != ""
}
