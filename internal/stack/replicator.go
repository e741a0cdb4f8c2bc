package stack

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
)

// replicator stands in for DynamoDB Global Tables between the two regions'
// dynalites, which have none: it scans each replicated table every
// scanInterval, and a change seen in one region is written to the other once
// the delay has passed since it was seen, unless that region changed the item
// later (last writer wins). It is test-only: scanning suits small tables.
type replicator struct {
	clients [2]*dynamodb.Client

	mu     sync.Mutex // protects tables
	tables map[string]*tableRepl
	wg     sync.WaitGroup
}

const scanInterval = 50 * time.Millisecond

type tableRepl struct {
	name   string
	delay  time.Duration
	cancel context.CancelFunc
}

func newReplicator(endpointA, endpointB string) *replicator {
	r := &replicator{tables: map[string]*tableRepl{}}
	for i, ep := range []string{endpointA, endpointB} {
		r.clients[i] = dynamodb.New(dynamodb.Options{
			Region:       "us-east-1",
			BaseEndpoint: aws.String(ep),
			Credentials:  credentials.NewStaticCredentialsProvider("local", "local", ""),
		})
	}
	return r
}

// Replicate starts replicating table with delay, changes the delay of a
// running replication, or stops it when delay < 0.
func (r *replicator) Replicate(ctx context.Context, table string, delay time.Duration) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if t, ok := r.tables[table]; ok {
		if delay < 0 {
			t.cancel()
			delete(r.tables, table)
			return nil
		}
		t.delay = delay
		return nil
	}
	if delay < 0 {
		return nil
	}
	for i, c := range r.clients {
		if _, err := c.DescribeTable(ctx, &dynamodb.DescribeTableInput{TableName: &table}); err != nil {
			return fmt.Errorf("stack: replicate %s: region %d: %w", table, i+1, err)
		}
	}
	cctx, cancel := context.WithCancel(context.Background())
	t := &tableRepl{name: table, delay: delay, cancel: cancel}
	r.tables[table] = t
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		r.run(cctx, t)
	}()
	return nil
}

func (r *replicator) StopAll() {
	r.mu.Lock()
	for n, t := range r.tables {
		t.cancel()
		delete(r.tables, n)
	}
	r.mu.Unlock()
	r.wg.Wait()
}

func (r *replicator) Close() { r.StopAll() }

// change is an item state seen in one region and due in the other.
type change struct {
	seen time.Time
	item map[string]types.AttributeValue // nil: deleted
	hash string
}

func (r *replicator) run(ctx context.Context, t *tableRepl) {
	var keys []string
	desc, err := r.clients[0].DescribeTable(ctx, &dynamodb.DescribeTableInput{TableName: &t.name})
	if err != nil {
		return
	}
	for _, k := range desc.Table.KeySchema {
		keys = append(keys, *k.AttributeName)
	}
	// known[i][key] is the hash of the item region i last had (seen or written).
	// changed[i][key] is when region i last changed the item by a local write.
	var known [2]map[string]string
	var last [2]map[string]map[string]types.AttributeValue // the item region i last had (nil: none)
	var changedTime [2]map[string]time.Time
	for i := range 2 {
		known[i], changedTime[i], last[i] = map[string]string{}, map[string]time.Time{}, map[string]map[string]types.AttributeValue{}
	}
	pending := [2]map[string]change{{}, {}} // pending[i]: due in region i
	// lastOK[i] is the last scan of region i that worked; after scans that
	// failed (the region was down), what the first working scan finds was
	// written before the region went down, and is stamped with lastOK, not
	// now: last writer wins by write time, as Global Tables do.
	var lastOK [2]time.Time
	var failing [2]bool
	tick := time.NewTicker(scanInterval)
	defer tick.Stop()
	first := true
	for {
		now := time.Now()
		for i, c := range r.clients {
			items, err := scanAll(ctx, c, t.name)
			if err != nil {
				failing[i] = true
				continue
			}
			stamp := now
			if failing[i] && !lastOK[i].IsZero() {
				stamp = lastOK[i]
			}
			failing[i], lastOK[i] = false, now
			seen := map[string]bool{}
			for _, it := range items {
				k, h := itemKey(it, keys), itemHash(it)
				seen[k] = true
				last[i][k] = it
				if known[i][k] != h {
					known[i][k] = h
					if !first || i == 0 {
						changedTime[i][k] = stamp
						pending[1-i][k] = change{seen: stamp, item: it, hash: h}
					}
				}
			}
			for k := range known[i] {
				if !seen[k] && known[i][k] != "" {
					known[i][k] = ""
					last[i][k] = nil
					changedTime[i][k] = stamp
					pending[1-i][k] = change{seen: stamp, hash: ""}
				}
			}
		}
		first = false
		r.mu.Lock()
		delay := t.delay
		r.mu.Unlock()
		for i := range 2 {
			for k, ch := range pending[i] {
				if time.Since(ch.seen) < delay {
					continue
				}
				// Between two items with write times, the conditional put
				// below decides (last writer wins by write time); the scan
				// times decide only what it cannot.
				_, chTime := writeTime(ch.item)
				_, targetTime := writeTime(last[i][k])
				bySeen := changedTime[i][k].After(ch.seen) || (changedTime[i][k].Equal(ch.seen) && !winsTie(ch.item, last[i][k], i))
				if (bySeen && !(chTime && targetTime)) || known[i][k] == ch.hash {
					delete(pending[i], k)
					continue // the target changed it later (it wins) or has it already
				}
				var err error
				if ch.item != nil {
					in := &dynamodb.PutItemInput{TableName: &t.name, Item: ch.item}
					if wt, ok := ch.item[writeTimeAttr].(*types.AttributeValueMemberN); ok {
						// Last writer wins by write time, also against a write the
						// target took since its last scan (Global Tables never let
						// an older replicated write replace a newer one).
						// Equal write times: the first region's item wins, so that
						// both converge.
						cmp := "<"
						if i == 1 {
							cmp = "<="
						}
						in.ConditionExpression = aws.String("attribute_not_exists(#t) OR #t " + cmp + " :t")
						in.ExpressionAttributeNames = map[string]string{"#t": writeTimeAttr}
						in.ExpressionAttributeValues = map[string]types.AttributeValue{":t": wt}
					}
					_, err = r.clients[i].PutItem(ctx, in)
					var cf *types.ConditionalCheckFailedException
					if errors.As(err, &cf) { // the target's item is newer: it wins
						delete(pending[i], k)
						continue
					}
				} else {
					// The deletion happened after the scan before the one that
					// saw it: an item the target wrote since then is newer.
					_, err = r.clients[i].DeleteItem(ctx, &dynamodb.DeleteItemInput{TableName: &t.name, Key: keyOf(k, keys, ch, known),
						ConditionExpression:       aws.String("attribute_not_exists(#t) OR #t <= :t"),
						ExpressionAttributeNames:  map[string]string{"#t": writeTimeAttr},
						ExpressionAttributeValues: map[string]types.AttributeValue{":t": &types.AttributeValueMemberN{Value: strconv.FormatInt(ch.seen.Add(-scanInterval).UnixMilli(), 10)}}})
					var cf *types.ConditionalCheckFailedException
					if errors.As(err, &cf) {
						delete(pending[i], k)
						continue
					}
				}
				if err == nil { // else kept and retried: a region that is down gets it when it is back
					known[i][k] = ch.hash
					last[i][k] = ch.item
					delete(pending[i], k)
				}
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// winsTie reports whether a change replaces the item target region i
// changed between the same two scans. Global Tables go by the writes'
// timestamps, which the scans cannot see: the items' own write time
// (writeTimeAttr) decides when both have one; between an item and a
// deletion (no time: somewhere in the window) the item wins; else the first
// region wins, so that the regions converge either way.
func winsTie(change, target map[string]types.AttributeValue, i int) bool {
	a, okA := writeTime(change)
	b, okB := writeTime(target)
	switch {
	case okA && okB && a != b:
		return a > b
	case change == nil && target != nil:
		return false
	case change != nil && target == nil:
		return true
	}
	return i == 1
}

// writeTimeAttr is the attribute holding an item's write time (epoch ms)
// in the tables the stack replicates (the session table's touched_ms).
const writeTimeAttr = "touched_ms"

func writeTime(it map[string]types.AttributeValue) (int64, bool) {
	n, ok := it[writeTimeAttr].(*types.AttributeValueMemberN)
	if !ok {
		return 0, false
	}
	v, err := strconv.ParseInt(n.Value, 10, 64)
	return v, err == nil
}

func scanAll(ctx context.Context, c *dynamodb.Client, table string) ([]map[string]types.AttributeValue, error) {
	var out []map[string]types.AttributeValue
	p := dynamodb.NewScanPaginator(c, &dynamodb.ScanInput{TableName: &table, ConsistentRead: aws.Bool(true)})
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			return nil, err
		}
		out = append(out, page.Items...)
	}
	return out, nil
}

// itemKey encodes an item's primary key as a map key.
func itemKey(it map[string]types.AttributeValue, keys []string) string {
	m := map[string]any{}
	for _, k := range keys {
		m[k] = plain(it[k])
	}
	b, _ := json.Marshal(m)
	return string(b)
}

func keyOf(k string, keys []string, _ change, _ [2]map[string]string) map[string]types.AttributeValue {
	var m map[string]any
	json.Unmarshal([]byte(k), &m)
	out := map[string]types.AttributeValue{}
	for _, name := range keys {
		switch v := m[name].(type) {
		case string:
			out[name] = &types.AttributeValueMemberS{Value: v}
		case map[string]any:
			if n, ok := v["N"].(string); ok {
				out[name] = &types.AttributeValueMemberN{Value: n}
			} else if b, ok := v["B"].(string); ok {
				out[name] = &types.AttributeValueMemberB{Value: []byte(b)}
			}
		}
	}
	return out
}

func itemHash(it map[string]types.AttributeValue) string {
	names := make([]string, 0, len(it))
	for k := range it {
		names = append(names, k)
	}
	sort.Strings(names)
	h := sha256.New()
	for _, n := range names {
		b, _ := json.Marshal(plain(it[n]))
		fmt.Fprintf(h, "%q=%s;", n, b)
	}
	return fmt.Sprintf("%x", h.Sum(nil))
}

// plain converts an attribute value into a JSON-encodable form that keeps
// its type (strings stay strings; other scalars are tagged).
func plain(v types.AttributeValue) any {
	switch v := v.(type) {
	case *types.AttributeValueMemberS:
		return v.Value
	case *types.AttributeValueMemberN:
		return map[string]any{"N": v.Value}
	case *types.AttributeValueMemberB:
		return map[string]any{"B": string(v.Value)}
	case *types.AttributeValueMemberBOOL:
		return map[string]any{"BOOL": v.Value}
	case *types.AttributeValueMemberNULL:
		return map[string]any{"NULL": true}
	case *types.AttributeValueMemberSS:
		return map[string]any{"SS": v.Value}
	case *types.AttributeValueMemberNS:
		return map[string]any{"NS": v.Value}
	case *types.AttributeValueMemberBS:
		return map[string]any{"BS": v.Value}
	case *types.AttributeValueMemberL:
		l := make([]any, len(v.Value))
		for i, e := range v.Value {
			l[i] = plain(e)
		}
		return map[string]any{"L": l}
	case *types.AttributeValueMemberM:
		m := map[string]any{}
		for k, e := range v.Value {
			m[k] = plain(e)
		}
		return map[string]any{"M": m}
	}
	return nil
}
