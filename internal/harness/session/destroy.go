package session

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/regiondb/regiondb/session"
)

// DestroyRaceResult is the outcome of [DestroyRace].
type DestroyRaceResult struct {
	Trials int `json:"trials"`
	// Resurrected counts trials after which the logged-out cookie named a
	// live session again, in either region, once replication settled.
	Resurrected int `json:"resurrected"`
	// ChangesKept counts trials whose racing change was acknowledged and
	// is in the session the racing request's response named (a new one).
	ChangesKept int `json:"changes_kept"`
}

// DestroyRace logs a user in, then races two requests with the same
// cookie: one that read the session and is about to change it, and a
// logout (Destroy) that completes in between. With crossRegion the logout
// runs in the other region than the change (the change's region has not
// seen it yet: Global Tables' last writer wins would let the later write
// win). After replication settles, the old cookie must name no session in
// either region.
//
// With naive, the race is replayed with the old algorithm as raw DynamoDB
// calls (logout = DeleteItem in its region; the change's conditional save
// fails, its re-read finds nothing, and it re-creates the item under the
// same id), and judged the same way: the control must resurrect.
func DestroyRace(ctx context.Context, e *Env, crossRegion, naive bool, trials int) (DestroyRaceResult, error) {
	res := DestroyRaceResult{Trials: trials}
	var servers [2]*server
	for i, r := range Regions {
		m, err := session.New(e.Config(r, true))
		if err != nil {
			return res, err
		}
		servers[i] = newServer(m)
		servers[i].region = r
		defer servers[i].Close()
	}
	changeAt, logoutAt := servers[0], servers[0]
	if crossRegion {
		changeAt, logoutAt = servers[1], servers[0]
	}
	tr := &http.Transport{}
	defer tr.CloseIdleConnections()
	var old []*http.Cookie
	for trial := range trials {
		usr := newUser("racer"+strconv.Itoa(trial), tr)
		if status, body, err := usr.do(ctx, http.MethodPost, logoutAt.URL, "/login", url.Values{"user": {usr.name}}); err != nil || status != http.StatusOK {
			return res, fmt.Errorf("login: %d %q %v", status, body, err)
		}
		ck := usr.cookieOf(logoutAt.URL)
		old = append(old, ck)
		if crossRegion {
			if err := e.waitItem(ctx, Regions[1], ck); err != nil {
				return res, err
			}
		}
		var kept bool
		var err error
		if naive {
			err = e.naiveRace(ctx, changeAt, logoutAt, ck, trial)
		} else {
			kept, err = race(ctx, tr, changeAt, logoutAt, ck, trial)
		}
		if err != nil {
			return res, err
		}
		if kept {
			res.ChangesKept++
		}
	}
	// Let replication settle (the Env's delay, several scans), then judge.
	if err := pause(ctx, 3*time.Second); err != nil {
		return res, err
	}
	for _, ck := range old {
		alive := false
		for _, srv := range servers {
			status, body, _, err := doWith(ctx, tr, http.MethodGet, srv.URL+"/get?key=user", ck)
			if err != nil {
				return res, err
			}
			if status != http.StatusOK || body != "" {
				alive = true
			}
		}
		if alive {
			res.Resurrected++
		}
	}
	return res, nil
}

// race runs one trial through the Managers: the change request reads the
// session, waits until the logout has been answered, then saves.
func race(ctx context.Context, tr http.RoundTripper, changeAt, logoutAt *server, ck *http.Cookie, trial int) (kept bool, err error) {
	read := make(chan struct{})
	release := make(chan struct{})
	changeAt.app.loaded = func() {
		close(read)
		select {
		case <-release:
		case <-ctx.Done():
		}
	}
	defer func() { changeAt.app.loaded = nil }()
	type answer struct {
		status int
		resp   *http.Response
		err    error
	}
	done := make(chan answer, 1)
	go func() {
		status, _, resp, err := doWith(ctx, tr, http.MethodPost, changeAt.URL+"/put?key=cart&value=item"+strconv.Itoa(trial), ck)
		done <- answer{status, resp, err}
	}()
	select {
	case <-read:
	case <-ctx.Done():
		return false, ctx.Err()
	}
	status, body, _, err := doWith(ctx, tr, http.MethodPost, logoutAt.URL+"/logout", ck)
	close(release)
	a := <-done
	if err != nil || status != http.StatusOK {
		return false, fmt.Errorf("logout: %d %q %v", status, body, err)
	}
	if a.err != nil {
		return false, a.err
	}
	if a.status != http.StatusOK {
		return false, nil // refused: nothing acknowledged
	}
	var fresh *http.Cookie
	for _, c := range a.resp.Cookies() {
		if c.Name == session.DefaultCookieName && c.Value != "" {
			fresh = c
		}
	}
	if fresh == nil || fresh.Value == ck.Value {
		return false, nil
	}
	_, v, _, err := doWith(ctx, tr, http.MethodGet, changeAt.URL+"/get?key=cart", fresh)
	return v == "item"+strconv.Itoa(trial), err
}

// naiveRace replays a trial with the old algorithm as raw DynamoDB calls.
func (e *Env) naiveRace(ctx context.Context, changeAt, logoutAt *server, ck *http.Cookie, trial int) error {
	key, err := itemKey(ck)
	if err != nil {
		return err
	}
	change, logout := e.Clients[changeAt.region], e.Clients[logoutAt.region]
	k := map[string]types.AttributeValue{session.AttrKey: &types.AttributeValueMemberS{Value: key}}
	// The change request reads the item...
	got, err := change.GetItem(ctx, &dynamodb.GetItemInput{TableName: &e.Table, Key: k, ConsistentRead: aws.Bool(true)})
	if err != nil || got.Item == nil {
		return fmt.Errorf("naive race: read: %v (item %v)", err, got != nil && got.Item != nil)
	}
	// ...the logout deletes it...
	if _, err := logout.DeleteItem(ctx, &dynamodb.DeleteItemInput{TableName: &e.Table, Key: k}); err != nil {
		return err
	}
	// ...and the change saves, conditioned on the version it read.
	item := got.Item
	ver := item[session.AttrVersion].(*types.AttributeValueMemberN).Value
	n, _ := strconv.Atoi(ver)
	item[session.AttrVersion] = &types.AttributeValueMemberN{Value: strconv.Itoa(n + 1)}
	item[session.AttrTouched] = &types.AttributeValueMemberN{Value: strconv.FormatInt(time.Now().UnixMilli(), 10)}
	_, err = change.PutItem(ctx, &dynamodb.PutItemInput{TableName: &e.Table, Item: item,
		ConditionExpression:       aws.String("#v = :v"),
		ExpressionAttributeNames:  map[string]string{"#v": session.AttrVersion},
		ExpressionAttributeValues: map[string]types.AttributeValue{":v": &types.AttributeValueMemberN{Value: ver}}})
	var cf *types.ConditionalCheckFailedException
	if errors.As(err, &cf) {
		// The old code: the item is gone (destroyed), so re-create it
		// under the same id with this request's changes.
		_, err = change.PutItem(ctx, &dynamodb.PutItemInput{TableName: &e.Table, Item: item,
			ConditionExpression:      aws.String("attribute_not_exists(#k)"),
			ExpressionAttributeNames: map[string]string{"#k": session.AttrKey}})
	}
	return err
}

// itemKey is the table key of the session a cookie names, per the
// documented formats: the cookie is base64url(0x01 | 24-byte id | ...),
// the key base64url(SHA-256(id)).
func itemKey(ck *http.Cookie) (string, error) {
	raw, err := base64.RawURLEncoding.DecodeString(ck.Value)
	if err != nil || len(raw) < 25 {
		return "", fmt.Errorf("sessionharness: not a session cookie: %v", err)
	}
	h := sha256.Sum256(raw[1:25])
	return base64.RawURLEncoding.EncodeToString(h[:]), nil
}

// waitItem waits until the session a cookie names is in region's table
// (replicated), for at most 10 s.
func (e *Env) waitItem(ctx context.Context, region string, ck *http.Cookie) error {
	key, err := itemKey(ck)
	if err != nil {
		return err
	}
	k := map[string]types.AttributeValue{session.AttrKey: &types.AttributeValueMemberS{Value: key}}
	deadline := time.Now().Add(10 * time.Second)
	for {
		got, err := e.Clients[region].GetItem(ctx, &dynamodb.GetItemInput{TableName: &e.Table, Key: k, ConsistentRead: aws.Bool(true)})
		if err == nil && got.Item != nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("sessionharness: session not replicated to %s within 10 s (%v)", region, err)
		}
		if err := pause(ctx, 20*time.Millisecond); err != nil {
			return err
		}
	}
}

// pause waits for d or until ctx is done (polling real servers, not
// synchronising goroutines).
func pause(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
