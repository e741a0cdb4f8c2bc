package session

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/aws/smithy-go"
	"go.opentelemetry.io/otel/codes"
	semconv "go.opentelemetry.io/otel/semconv/v1.40.0"
	"go.opentelemetry.io/otel/trace"
)

// Attribute names of the session table. See the package documentation for
// the schema.
const (
	AttrKey       = "id"         // S, partition key: base64url(SHA-256(session id))
	AttrData      = "data"       // B, the session's values
	AttrVersion   = "version"    // N, incremented by every write (conditional writes)
	AttrExpiresAt = "expires_at" // N, epoch seconds; enable DynamoDB TTL on it
	AttrCreated   = "created_ms" // N, epoch milliseconds of creation (absolute timeout)
	AttrTouched   = "touched_ms" // N, epoch milliseconds of the last write (idle timeout)
	AttrRegion    = "region"     // S, the region that wrote this version
	AttrDestroyed = "destroyed"  // BOOL, true: a tombstone (the session was destroyed)
)

// tombVersion is a tombstone's version: above any version a session reaches
// (one per write), so that every "newer copy wins" comparison picks it and
// no save conditioned on a live version can overwrite it.
const tombVersion = 1 << 63

// MaxItemSize is DynamoDB's item size limit in bytes (400 KB), counted as
// DynamoDB does: attribute names plus values.
const MaxItemSize = 400 * 1024

// record is one session item.
type record struct {
	found     bool
	data      []byte
	version   uint64
	expiresAt int64 // epoch seconds
	createdMS int64
	touchedMS int64
	region    string
	tomb      bool // a destroyed session's tombstone
}

// Store keeps sessions in one region's DynamoDB table. It implements
// github.com/alexedwards/scs/v2's Store and CtxStore, and is what a
// [Manager] uses for each region. A Store starts no goroutines and is safe
// for concurrent use by multiple goroutines.
//
// Every call is one DynamoDB request, retried by the SDK's standard
// retryer at most [Config.MaxAttempts] times with jittered backoff capped
// at [Config.MaxBackoff]; errors that remain wrap [ErrUnavailable].
type Store struct {
	client Client
	table  string
	region string
	now    func() time.Time
	tracer trace.Tracer
	optFn  func(*dynamodb.Options) // installs the bounded retryer
	limit  time.Duration           // bound of one call, retries included
	names  [5]string               // span names by op
}

const (
	opGet = iota
	opPut
	opUpdate
	opDelete
	opCreate
)

var opNames = [5]string{"GetItem", "PutItem", "UpdateItem", "DeleteItem", "CreateTable"}

// NewStore returns the Store of cfg.Table in cfg.Region, using
// cfg.Clients[cfg.Region]. It does no I/O; see [Store.CreateTable].
func NewStore(cfg Config) (*Store, error) {
	c, err := cfg.normalize()
	if err != nil {
		return nil, err
	}
	return newStore(c, c.Region, newTelemetry(c).tracer), nil
}

func newStore(c Config, region string, tracer trace.Tracer) *Store {
	retryer := retry.NewStandard(func(o *retry.StandardOptions) {
		o.MaxAttempts = c.MaxAttempts
		o.MaxBackoff = c.MaxBackoff
	})
	s := &Store{
		client: c.Clients[region],
		table:  c.Table,
		region: region,
		now:    c.Now,
		tracer: tracer,
		limit:  c.CallTimeout,
		optFn: func(o *dynamodb.Options) {
			o.Retryer = retryer
			o.RetryMaxAttempts = 0 // the client's own setting must not wrap ours
		},
	}
	for i, n := range opNames {
		s.names[i] = n + " " + c.Table
	}
	return s
}

// start begins a client span for op.
func (s *Store) start(ctx context.Context, op int) (context.Context, trace.Span) {
	ctx, span := s.tracer.Start(ctx, s.names[op], trace.WithSpanKind(trace.SpanKindClient))
	if span.IsRecording() {
		span.SetAttributes(
			semconv.DBSystemNameAWSDynamoDB,
			semconv.DBOperationName(opNames[op]),
			semconv.AWSDynamoDBTableNames(s.table),
			semconv.CloudRegion(s.region),
		)
	}
	return ctx, span
}

// end finishes span and wraps err.
func (s *Store) end(span trace.Span, op int, err error) error {
	if err != nil && !isConditionFailed(err) {
		if span.IsRecording() {
			span.SetStatus(codes.Error, err.Error())
			span.SetAttributes(semconv.ErrorTypeKey.String(errorType(err)))
		}
		err = fmt.Errorf("session: %s %s in %s: %w: %w", opNames[op], s.table, s.region, ErrUnavailable, err)
	}
	span.End()
	return err
}

func errorType(err error) string {
	var ae smithy.APIError
	if errors.As(err, &ae) {
		return ae.ErrorCode()
	}
	return semconv.ErrorTypeOther.Value.AsString()
}

// isOutage reports whether err, returned by a call made under ctx, says
// that the table's region is unavailable: a network error, a timeout of the
// call (not of ctx), a server error, throttling that outlasted the
// retries, or a missing table; not a rejected request or a cancelled ctx.
func isOutage(ctx context.Context, err error) bool {
	if err == nil || ctx.Err() != nil || !errors.Is(err, ErrUnavailable) {
		return false
	}
	var ae smithy.APIError
	if !errors.As(err, &ae) || ae.ErrorFault() == smithy.FaultServer {
		return true
	}
	switch ae.ErrorCode() {
	case "ProvisionedThroughputExceededException", "ThrottlingException", "RequestLimitExceeded",
		"LimitExceededException", "ResourceNotFoundException", "InternalServerError", "ServiceUnavailable":
		return true
	}
	return false
}

func isConditionFailed(err error) bool {
	var cf *types.ConditionalCheckFailedException
	return errors.As(err, &cf)
}

func keyOf(key string) map[string]types.AttributeValue {
	return map[string]types.AttributeValue{AttrKey: &types.AttributeValueMemberS{Value: key}}
}

// get reads an item with a strongly consistent read. A missing item is a
// record with found == false. Expiry is the caller's business.
func (s *Store) get(ctx context.Context, key string) (record, error) {
	ctx, cancel := context.WithTimeout(ctx, s.limit)
	defer cancel()
	ctx, span := s.start(ctx, opGet)
	out, err := s.client.GetItem(ctx, &dynamodb.GetItemInput{
		TableName:      &s.table,
		Key:            keyOf(key),
		ConsistentRead: aws.Bool(true),
	}, s.optFn)
	if err = s.end(span, opGet, err); err != nil {
		return record{}, err
	}
	return decodeItem(out.Item), nil
}

// decodeItem reads a session item. The table is outside input: missing or
// malformed attributes give zero fields (a record that reads as expired),
// never a panic.

func decodeItem(it map[string]types.AttributeValue) record {
	if it == nil {
		return record{}
	}
	r := record{found: true}
	if v, ok := it[AttrDestroyed].(*types.AttributeValueMemberBOOL); ok && v.Value {
		r.tomb = true
	}
	if v, ok := it[AttrData].(*types.AttributeValueMemberB); ok {
		r.data = v.Value
	}
	r.version, _ = strconv.ParseUint(numAttr(it, AttrVersion), 10, 64)
	r.expiresAt, _ = strconv.ParseInt(numAttr(it, AttrExpiresAt), 10, 64)
	r.createdMS, _ = strconv.ParseInt(numAttr(it, AttrCreated), 10, 64)
	r.touchedMS, _ = strconv.ParseInt(numAttr(it, AttrTouched), 10, 64)
	if v, ok := it[AttrRegion].(*types.AttributeValueMemberS); ok {
		r.region = v.Value
	}
	return r
}

func numAttr(it map[string]types.AttributeValue, name string) string {
	if v, ok := it[name].(*types.AttributeValueMemberN); ok {
		return v.Value
	}
	return ""
}

func encodeItem(key string, r record) map[string]types.AttributeValue {
	it := map[string]types.AttributeValue{
		AttrKey:       &types.AttributeValueMemberS{Value: key},
		AttrData:      &types.AttributeValueMemberB{Value: r.data},
		AttrVersion:   &types.AttributeValueMemberN{Value: strconv.FormatUint(r.version, 10)},
		AttrExpiresAt: &types.AttributeValueMemberN{Value: strconv.FormatInt(r.expiresAt, 10)},
		AttrCreated:   &types.AttributeValueMemberN{Value: strconv.FormatInt(r.createdMS, 10)},
		AttrTouched:   &types.AttributeValueMemberN{Value: strconv.FormatInt(r.touchedMS, 10)},
		AttrRegion:    &types.AttributeValueMemberS{Value: r.region},
	}
	if r.tomb {
		it[AttrDestroyed] = &types.AttributeValueMemberBOOL{Value: true}
		delete(it, AttrData) // DynamoDB refuses an empty binary value
	}
	return it
}

// itemSize is the size DynamoDB counts for an item: the UTF-8 lengths of
// attribute names and values; a number counts (digits+1)/2 + 1 bytes.
func itemSize(it map[string]types.AttributeValue) int {
	n := 0
	for name, v := range it {
		n += len(name)
		switch v := v.(type) {
		case *types.AttributeValueMemberS:
			n += len(v.Value)
		case *types.AttributeValueMemberB:
			n += len(v.Value)
		case *types.AttributeValueMemberN:
			n += (len(v.Value)+1)/2 + 1
		default:
			n += 1
		}
	}
	return n
}

// condition says what the table must hold for a write to go ahead.
type condition struct {
	exists  bool   // false: the item must not exist
	version uint64 // with exists: the item's version must be this
}

var errConditionFailed = errors.New("session: condition failed")

// put writes the item if cond holds; errConditionFailed if it did not.
func (s *Store) put(ctx context.Context, key string, r record, cond condition) error {
	it := encodeItem(key, r)
	if n := itemSize(it); n > MaxItemSize {
		return &SizeError{Size: n}
	}
	in := &dynamodb.PutItemInput{TableName: &s.table, Item: it}
	if cond.exists {
		in.ConditionExpression = aws.String("#v = :v")
		in.ExpressionAttributeNames = map[string]string{"#v": AttrVersion}
		in.ExpressionAttributeValues = map[string]types.AttributeValue{
			":v": &types.AttributeValueMemberN{Value: strconv.FormatUint(cond.version, 10)},
		}
	} else {
		in.ConditionExpression = aws.String("attribute_not_exists(#k)")
		in.ExpressionAttributeNames = map[string]string{"#k": AttrKey}
	}
	ctx, cancel := context.WithTimeout(ctx, s.limit)
	defer cancel()
	ctx, span := s.start(ctx, opPut)
	_, err := s.client.PutItem(ctx, in, s.optFn)
	if err = s.end(span, opPut, err); isConditionFailed(err) {
		return errConditionFailed
	}
	return err
}

// putTomb replaces the item of key, whatever its version, by a tombstone
// that expires when every copy of the session it ends must have expired
// anyway (see the package doc, "Logout"). With mustExist, where the table
// has no such item it writes nothing, so that made-up ids leave nothing
// behind; existed reports whether it wrote (the item existed, or
// !mustExist).
func (s *Store) putTomb(ctx context.Context, key string, now time.Time, absolute time.Duration, mustExist bool) (existed bool, err error) {
	ms := now.UnixMilli()
	tomb := record{found: true, tomb: true, version: tombVersion, createdMS: ms, touchedMS: ms, region: s.region,
		expiresAt: (ms+absolute.Milliseconds())/1000 + 1}
	ctx, cancel := context.WithTimeout(ctx, s.limit)
	defer cancel()
	ctx, span := s.start(ctx, opPut)
	in := &dynamodb.PutItemInput{TableName: &s.table, Item: encodeItem(key, tomb)}
	if mustExist {
		in.ConditionExpression = aws.String("attribute_exists(#k)")
		in.ExpressionAttributeNames = map[string]string{"#k": AttrKey}
	}
	_, err = s.client.PutItem(ctx, in, s.optFn)
	if err = s.end(span, opPut, err); isConditionFailed(err) {
		return false, nil
	}
	return err == nil, err
}

// del deletes the item (a no-op if it does not exist).
func (s *Store) del(ctx context.Context, key string) error {
	ctx, cancel := context.WithTimeout(ctx, s.limit)
	defer cancel()
	ctx, span := s.start(ctx, opDelete)
	_, err := s.client.DeleteItem(ctx, &dynamodb.DeleteItemInput{TableName: &s.table, Key: keyOf(key)}, s.optFn)
	return s.end(span, opDelete, err)
}

// FindCtx returns the data committed for the scs token. An unknown, expired
// or malformed token gives found == false and a nil error; err is for
// system failures only (it wraps [ErrUnavailable]).
func (s *Store) FindCtx(ctx context.Context, token string) (b []byte, found bool, err error) {
	if token == "" {
		return nil, false, nil
	}
	r, err := s.get(ctx, hashKey([]byte(token)))
	if err != nil || !r.found || r.tomb {
		return nil, false, err
	}
	if r.expiresAt <= s.now().Unix() {
		return nil, false, nil
	}
	return r.data, true, nil
}

// CommitCtx stores b under the scs token until expiry, overwriting what
// the token had. The table holds only a hash of the token. An item over
// [MaxItemSize] gives a [*SizeError] before any write.
func (s *Store) CommitCtx(ctx context.Context, token string, b []byte, expiry time.Time) error {
	key := hashKey([]byte(token))
	now := s.now()
	probe := encodeItem(key, record{data: b, version: 1 << 62, expiresAt: expiry.Unix(), createdMS: now.UnixMilli(), touchedMS: now.UnixMilli(), region: s.region})
	if n := itemSize(probe); n > MaxItemSize {
		return &SizeError{Size: n}
	}
	ctx, span := s.start(ctx, opUpdate)
	_, err := s.client.UpdateItem(ctx, &dynamodb.UpdateItemInput{
		TableName:        &s.table,
		Key:              keyOf(key),
		UpdateExpression: aws.String("SET #d = :d, #e = :e, #t = :t, #r = :r, #c = if_not_exists(#c, :t) ADD #v :one"),
		ExpressionAttributeNames: map[string]string{
			"#d": AttrData, "#e": AttrExpiresAt, "#t": AttrTouched, "#r": AttrRegion, "#c": AttrCreated, "#v": AttrVersion,
		},
		ExpressionAttributeValues: map[string]types.AttributeValue{
			":d":   &types.AttributeValueMemberB{Value: b},
			":e":   &types.AttributeValueMemberN{Value: strconv.FormatInt(expiry.Unix(), 10)},
			":t":   &types.AttributeValueMemberN{Value: strconv.FormatInt(now.UnixMilli(), 10)},
			":r":   &types.AttributeValueMemberS{Value: s.region},
			":one": &types.AttributeValueMemberN{Value: "1"},
		},
	}, s.optFn)
	return s.end(span, opUpdate, err)
}

// DeleteCtx removes the scs token's session. An unknown token is not an error.
func (s *Store) DeleteCtx(ctx context.Context, token string) error {
	return s.del(ctx, hashKey([]byte(token)))
}

// Find is FindCtx with context.Background(), for scs's Store interface.
func (s *Store) Find(token string) ([]byte, bool, error) {
	return s.FindCtx(context.Background(), token)
}

// Commit is CommitCtx with context.Background(), for scs's Store interface.
func (s *Store) Commit(token string, b []byte, expiry time.Time) error {
	return s.CommitCtx(context.Background(), token, b, expiry)
}

// Delete is DeleteCtx with context.Background(), for scs's Store interface.
func (s *Store) Delete(token string) error {
	return s.DeleteCtx(context.Background(), token)
}

// tableAdmin is the optional part of the client that [Store.CreateTable]
// needs; *dynamodb.Client has it.
type tableAdmin interface {
	CreateTable(ctx context.Context, in *dynamodb.CreateTableInput, optFns ...func(*dynamodb.Options)) (*dynamodb.CreateTableOutput, error)
	DescribeTable(ctx context.Context, in *dynamodb.DescribeTableInput, optFns ...func(*dynamodb.Options)) (*dynamodb.DescribeTableOutput, error)
	UpdateTimeToLive(ctx context.Context, in *dynamodb.UpdateTimeToLiveInput, optFns ...func(*dynamodb.Options)) (*dynamodb.UpdateTimeToLiveOutput, error)
}

// CreateTable creates the session table (on-demand billing, partition key
// [AttrKey]) if it does not exist, waits until it is active, and enables
// DynamoDB TTL on [AttrExpiresAt] where the server supports it (dynalite
// does not; expiry is enforced on every read anyway). It is meant for
// development and tests: production tables (Global Tables) are created by
// infrastructure code with the same schema. The client must also have
// *dynamodb.Client's CreateTable, DescribeTable and UpdateTimeToLive.
func (s *Store) CreateTable(ctx context.Context) error {
	admin, ok := s.client.(tableAdmin)
	if !ok {
		return fmt.Errorf("session: create table %s: the client has no CreateTable, DescribeTable and UpdateTimeToLive", s.table)
	}
	ctx, span := s.start(ctx, opCreate)
	_, err := admin.CreateTable(ctx, &dynamodb.CreateTableInput{
		TableName:            &s.table,
		BillingMode:          types.BillingModePayPerRequest,
		AttributeDefinitions: []types.AttributeDefinition{{AttributeName: aws.String(AttrKey), AttributeType: types.ScalarAttributeTypeS}},
		KeySchema:            []types.KeySchemaElement{{AttributeName: aws.String(AttrKey), KeyType: types.KeyTypeHash}},
	}, s.optFn)
	var inUse *types.ResourceInUseException
	if errors.As(err, &inUse) {
		err = nil
	}
	if err == nil {
		w := dynamodb.NewTableExistsWaiter(admin, func(o *dynamodb.TableExistsWaiterOptions) {
			o.MinDelay, o.MaxDelay = 20*time.Millisecond, time.Second
		})
		err = w.Wait(ctx, &dynamodb.DescribeTableInput{TableName: &s.table}, time.Minute)
	}
	if err == nil {
		_, err = admin.UpdateTimeToLive(ctx, &dynamodb.UpdateTimeToLiveInput{
			TableName:               &s.table,
			TimeToLiveSpecification: &types.TimeToLiveSpecification{AttributeName: aws.String(AttrExpiresAt), Enabled: aws.Bool(true)},
		}, s.optFn)
		var ae smithy.APIError
		if errors.As(err, &ae) && (ae.ErrorCode() == "UnknownOperationException" ||
			(ae.ErrorCode() == "ValidationException" && isTTLAlreadyOn(ae))) {
			err = nil // dynalite has no TTL; or TTL is already enabled
		}
	}
	return s.end(span, opCreate, err)
}

func isTTLAlreadyOn(ae smithy.APIError) bool {
	return strings.Contains(ae.ErrorMessage(), "TimeToLive is already enabled")
}
