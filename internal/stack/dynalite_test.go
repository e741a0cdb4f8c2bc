package stack_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/regiondb/regiondb/internal/testserver"
)

// abortsPerServer is how many requests the abuse test aborts mid-flight
// against each dynalite.
const abortsPerServer = 1000

const abuseTable = "stack_abuse"

// TestDynaliteSurvivesAbortedRequests aborts 1 000 requests mid-flight
// against each of the stack's dynalites, the ways a client can (a connection
// closed or reset in the middle of the headers or of the body, an SDK call
// whose context is cancelled while its body is on the wire, a body dynalite
// throws on), and checks that each still serves, in the same process, with
// its data. The control plays the same abuse against a plain `dynalite`
// (cli.js), which it must kill.
func TestDynaliteSurvivesAbortedRequests(t *testing.T) {
	tools := requirePrograms(t)
	s := testserver.Require(t)
	ctx := context.Background()
	for _, region := range []string{testserver.PrimaryRegion, testserver.SecondaryRegion} {
		name := map[string]string{testserver.PrimaryRegion: "ddb1", testserver.SecondaryRegion: "ddb2"}[region]
		t.Run(name, func(t *testing.T) {
			endpoint := s.DynamoDBEndpoint(region)
			c := ddbClient(endpoint, nil)
			createTable(t, c, abuseTable)
			t.Cleanup(func() {
				c.DeleteTable(context.Background(), &dynamodb.DeleteTableInput{TableName: aws.String(abuseTable)})
			})
			putItem(t, c, "kept", "before the abuse")
			st, err := s.State(ctx)
			if err != nil {
				t.Fatal(err)
			}
			pid := serverPID(st, name)

			n := abuse(t, endpoint, abortsPerServer, true)
			if n.sdkCancelled == 0 || n.raw == 0 || n.thrownOn == 0 {
				t.Fatalf("the abuse did not run every kind of abort: %+v", n)
			}

			if got := getItem(t, c, "kept"); got != "before the abuse" {
				t.Fatalf("item after the abuse = %q, want it unchanged", got)
			}
			putItem(t, c, "after", "still writable")
			st, err = s.State(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if now := serverPID(st, name); now != pid {
				t.Fatalf("%s is now pid %d, was %d: it died during the abuse", name, now, pid)
			}
			if len(st.UnexpectedDeaths) != 0 {
				t.Fatalf("the stack recorded deaths: %v", st.UnexpectedDeaths)
			}
		})
	}

	// The controls play the aborts, and the bodies dynalite throws on,
	// against a plain dynalite: each kind alone kills it.
	t.Run("control: aborted requests kill plain cli.js", func(t *testing.T) {
		endpoint, died := plainDynalite(t, tools)
		abuse(t, endpoint, abortsPerServer, false)
		died("aborted", "ECONNRESET")
	})
	t.Run("control: a null body kills plain cli.js", func(t *testing.T) {
		endpoint, died := plainDynalite(t, tools)
		rawAbort(strings.TrimPrefix(endpoint, "http://"), signedHeaders(4)+"null", false, true)
		died("TypeError")
	})
}

// plainDynalite starts dynalite's own cli.js on a free port. died fails the
// test unless the process exits within 10 s with one of the words in its
// output.
func plainDynalite(t *testing.T, tools string) (endpoint string, died func(words ...string)) {
	t.Helper()
	port := freePort(t)
	cmd := exec.Command("node", filepath.Join(tools, "node_modules", "dynalite", "cli.js"), "--host", "127.0.0.1", "--port", strconv.Itoa(port))
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-exited
	})
	endpoint = "http://127.0.0.1:" + strconv.Itoa(port)
	waitServing(t, endpoint)
	return endpoint, func(words ...string) {
		t.Helper()
		select {
		case err := <-exited:
			exited <- err // for the cleanup
			for _, w := range words {
				if strings.Contains(out.String(), w) {
					return
				}
			}
			t.Fatalf("plain dynalite exited (%v), but its output has none of %q:\n%s", err, words, out.String())
		case <-time.After(10 * time.Second):
			t.Fatal("plain dynalite survived: the abuse does not do what it claims")
		}
	}
}

// TestDynaliteRestartKeepsData kills a dynalite and starts it again: its data
// is on disk, so every item is still there.
func TestDynaliteRestartKeepsData(t *testing.T) {
	requirePrograms(t)
	s := testserver.Require(t)
	ctx := context.Background()
	c := ddbClient(s.DynamoDBEndpoint(testserver.SecondaryRegion), nil)
	const table = "stack_restart"
	createTable(t, c, table)
	t.Cleanup(func() { c.DeleteTable(context.Background(), &dynamodb.DeleteTableInput{TableName: aws.String(table)}) })
	for i := range 50 {
		putItemIn(t, c, table, "k"+strconv.Itoa(i), "v"+strconv.Itoa(i))
	}
	if err := s.Kill(ctx, "ddb2"); err != nil {
		t.Fatal(err)
	}
	if err := s.Start(ctx, "ddb2"); err != nil {
		t.Fatal(err)
	}
	for i := range 50 {
		if got := getItemIn(t, c, table, "k"+strconv.Itoa(i)); got != "v"+strconv.Itoa(i) {
			t.Fatalf("item k%d after a restart = %q, want v%d", i, got, i)
		}
	}
}

type abuseCount struct {
	raw, sdkCancelled, thrownOn int64
}

// abuse aborts n requests against a dynalite, from 8 connections at a time;
// with throwing, one in six is instead a body dynalite throws on. Refused
// connections (a dead server) end it early.
func abuse(t *testing.T, endpoint string, n int, throwing bool) abuseCount {
	t.Helper()
	addr := strings.TrimPrefix(endpoint, "http://")
	var cnt abuseCount
	var refused atomic.Bool
	jobs := make(chan int)
	var wg sync.WaitGroup
	// The SDK client cancels each call's context once 16 KiB of its 128 KiB
	// body are on the wire: headers and part of the body reach the server,
	// the rest never does.
	sdk := ddbClient(endpoint, cancelMidBody{http.DefaultTransport.(*http.Transport).Clone()})
	big := strings.Repeat("x", 128<<10)
	for range 8 {
		wg.Go(func() {
			for i := range jobs {
				if refused.Load() {
					continue
				}
				var err error
				kind := i % 6
				if kind == 4 && !throwing {
					kind = 0
				}
				switch kind {
				case 5:
					ctx, cancel := context.WithCancel(context.Background())
					_, err = sdk.PutItem(context.WithValue(ctx, cancelKey{}, cancel), &dynamodb.PutItemInput{TableName: aws.String(abuseTable),
						Item: map[string]types.AttributeValue{"id": &types.AttributeValueMemberS{Value: "big"}, "v": &types.AttributeValueMemberS{Value: big}}})
					cancel()
					if errors.Is(err, context.Canceled) {
						atomic.AddInt64(&cnt.sdkCancelled, 1)
						err = nil
					} else if err == nil {
						err = errors.New("an SDK call meant to be cancelled mid-body succeeded")
					}
				case 4:
					// A body dynalite's validation throws on (not an abort,
					// but the same kind of death in a plain dynalite).
					err = rawAbort(addr, signedHeaders(4)+"null", false, true)
					if err == nil {
						atomic.AddInt64(&cnt.thrownOn, 1)
					}
				default:
					err = rawAbort(addr, rawPrefix(i), i%2 == 1, false)
					if err == nil {
						atomic.AddInt64(&cnt.raw, 1)
					}
				}
				if err != nil && isRefused(err) {
					refused.Store(true)
				}
			}
		})
	}
	for i := range n {
		jobs <- i
	}
	close(jobs)
	wg.Wait()
	return cnt
}

// rawPrefix is the start of a request, cut in the headers or in the body.
func rawPrefix(i int) string {
	full := signedHeaders(1000) + `{"TableName":"` + abuseTable + `","Item":{"id":{"S":"raw"}`
	switch i % 3 {
	case 0: // in the headers
		return full[:40+i%50]
	default: // in the body, after complete headers
		return full
	}
}

func signedHeaders(contentLength int) string {
	return "POST / HTTP/1.1\r\nHost: dynamodb\r\nContent-Type: application/x-amz-json-1.0\r\n" +
		"X-Amz-Target: DynamoDB_20120810.PutItem\r\nX-Amz-Date: 20260101T000000Z\r\n" +
		"Authorization: AWS4-HMAC-SHA256 Credential=local/20260101/us-east-1/dynamodb/aws4_request, SignedHeaders=host, Signature=00\r\n" +
		"Content-Length: " + strconv.Itoa(contentLength) + "\r\n\r\n"
}

// rawAbort sends prefix on a new connection and closes it, with a reset
// (SO_LINGER 0) if rst. With wait, it first reads the reply.
func rawAbort(addr, prefix string, rst, wait bool) error {
	c, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	if _, err := io.WriteString(c, prefix); err != nil {
		return err
	}
	if wait {
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		b := make([]byte, 12)
		if _, err := io.ReadFull(c, b); err != nil {
			return fmt.Errorf("no reply to a body dynalite throws on: %w", err)
		}
	}
	if rst {
		c.(*net.TCPConn).SetLinger(0)
	}
	return nil
}

func isRefused(err error) bool {
	return strings.Contains(err.Error(), "connection refused")
}

type cancelKey struct{}

// cancelMidBody cancels a request's context (found under cancelKey) once
// 16 KiB of its body have been read by the transport.
type cancelMidBody struct{ base http.RoundTripper }

func (t cancelMidBody) RoundTrip(r *http.Request) (*http.Response, error) {
	if cancel, ok := r.Context().Value(cancelKey{}).(context.CancelFunc); ok && r.Body != nil {
		r = r.Clone(r.Context())
		r.Body = &cancelAfter{ReadCloser: r.Body, left: 16 << 10, cancel: cancel, done: r.Context().Done()}
	}
	return t.base.RoundTrip(r)
}

type cancelAfter struct {
	io.ReadCloser
	left   int
	cancel context.CancelFunc
	done   <-chan struct{}
}

func (c *cancelAfter) Read(p []byte) (int, error) {
	if c.left <= 0 {
		c.cancel()
		<-c.done
		return 0, context.Canceled
	}
	if len(p) > c.left {
		p = p[:c.left]
	}
	n, err := c.ReadCloser.Read(p)
	c.left -= n
	return n, err
}

func ddbClient(endpoint string, rt http.RoundTripper) *dynamodb.Client {
	o := dynamodb.Options{Region: "us-east-1", BaseEndpoint: aws.String(endpoint),
		Credentials: credentials.NewStaticCredentialsProvider("local", "local", "")}
	if rt != nil {
		o.HTTPClient = &http.Client{Transport: rt}
	}
	return dynamodb.New(o)
}

// createTable creates the table, dropping an older one, and waits until it
// is ACTIVE (a PutItem on a CREATING table is ResourceNotFoundException, in
// DynamoDB and in dynalite).
func createTable(t *testing.T, c *dynamodb.Client, table string) {
	t.Helper()
	ctx := context.Background()
	if _, err := c.DeleteTable(ctx, &dynamodb.DeleteTableInput{TableName: aws.String(table)}); err == nil {
		if err := dynamodb.NewTableNotExistsWaiter(c).Wait(ctx, &dynamodb.DescribeTableInput{TableName: aws.String(table)}, 30*time.Second); err != nil {
			t.Fatal(err)
		}
	}
	_, err := c.CreateTable(ctx, &dynamodb.CreateTableInput{
		TableName:            aws.String(table),
		AttributeDefinitions: []types.AttributeDefinition{{AttributeName: aws.String("id"), AttributeType: types.ScalarAttributeTypeS}},
		KeySchema:            []types.KeySchemaElement{{AttributeName: aws.String("id"), KeyType: types.KeyTypeHash}},
		BillingMode:          types.BillingModePayPerRequest,
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := dynamodb.NewTableExistsWaiter(c).Wait(ctx, &dynamodb.DescribeTableInput{TableName: aws.String(table)}, 30*time.Second); err != nil {
		t.Fatal(err)
	}
}

func putItem(t *testing.T, c *dynamodb.Client, id, v string) {
	t.Helper()
	putItemIn(t, c, abuseTable, id, v)
}

func putItemIn(t *testing.T, c *dynamodb.Client, table, id, v string) {
	t.Helper()
	_, err := c.PutItem(context.Background(), &dynamodb.PutItemInput{TableName: aws.String(table),
		Item: map[string]types.AttributeValue{"id": &types.AttributeValueMemberS{Value: id}, "v": &types.AttributeValueMemberS{Value: v}}})
	if err != nil {
		t.Fatal(err)
	}
}

func getItem(t *testing.T, c *dynamodb.Client, id string) string {
	t.Helper()
	return getItemIn(t, c, abuseTable, id)
}

func getItemIn(t *testing.T, c *dynamodb.Client, table, id string) string {
	t.Helper()
	out, err := c.GetItem(context.Background(), &dynamodb.GetItemInput{TableName: aws.String(table), ConsistentRead: aws.Bool(true),
		Key: map[string]types.AttributeValue{"id": &types.AttributeValueMemberS{Value: id}}})
	if err != nil {
		t.Fatal(err)
	}
	v, _ := out.Item["v"].(*types.AttributeValueMemberS)
	if v == nil {
		return ""
	}
	return v.Value
}

func serverPID(st testserver.State, name string) int {
	for _, sv := range st.Servers {
		if sv.Name == name {
			return sv.PID
		}
	}
	return 0
}

func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

func waitServing(t *testing.T, endpoint string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		resp, err := http.Get(endpoint + "/")
		if err == nil {
			resp.Body.Close()
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s not serving: %v", endpoint, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
