package session_test

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"testing"

	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/regiondb/regiondb/session"
)

// plantedClient is an in-memory session.Client whose table answers every
// read with one planted item (any key), and accepts every write. It is a
// fake on purpose: fuzzing needs thousands of requests a second and items
// no Manager writes (hostile or corrupt ones), which a real dynalite gives
// neither; the integration tests use the real one.
type plantedClient struct {
	mu   sync.Mutex // protects item
	item map[string]types.AttributeValue
}

func (c *plantedClient) GetItem(_ context.Context, _ *dynamodb.GetItemInput, _ ...func(*dynamodb.Options)) (*dynamodb.GetItemOutput, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return &dynamodb.GetItemOutput{Item: c.item}, nil
}

func (c *plantedClient) PutItem(_ context.Context, in *dynamodb.PutItemInput, _ ...func(*dynamodb.Options)) (*dynamodb.PutItemOutput, error) {
	return &dynamodb.PutItemOutput{}, nil
}

func (c *plantedClient) UpdateItem(context.Context, *dynamodb.UpdateItemInput, ...func(*dynamodb.Options)) (*dynamodb.UpdateItemOutput, error) {
	return &dynamodb.UpdateItemOutput{}, nil
}

func (c *plantedClient) DeleteItem(context.Context, *dynamodb.DeleteItemInput, ...func(*dynamodb.Options)) (*dynamodb.DeleteItemOutput, error) {
	return &dynamodb.DeleteItemOutput{}, nil
}

// validCookie builds a well-formed session cookie value as the package
// documents it: base64url(0x01 | 24-byte id | uvarint version |
// len(region) | region | HMAC-SHA256 keyed with the id, first 16 bytes).
func validCookie(seed byte, version uint64, region string) string {
	id := make([]byte, 24)
	id[0] = seed
	b := append([]byte{1}, id...)
	b = binary.AppendUvarint(b, version)
	b = append(b, byte(len(region)))
	b = append(b, region...)
	mac := hmac.New(sha256.New, id)
	mac.Write(b)
	return base64.RawURLEncoding.EncodeToString(append(b, mac.Sum(nil)[:16]...))
}

// FuzzMiddleware: whatever the request's Cookie header and whatever item
// the table holds, the middleware answers the handler's response (200), or
// a clear 503 from the store; never a 500, never a panic. The handler reads
// the session and, by the fuzzer's choice, changes, renews or destroys it.
func FuzzMiddleware(f *testing.F) {
	f.Add(session.DefaultCookieName+"=AQ", []byte{1, 0}, "3", "99999999999", "us-east-1", false, uint8(0))
	f.Add(session.DefaultCookieName+"=%%%; "+session.DefaultCookieName+"=x", []byte{1, 1, 1, 'k', 1, 'v'}, "1", "1", "", true, uint8(1))
	f.Add("a=b; c", []byte{}, "-5", "NaN", "ap-northeast-1", false, uint8(2))
	// Well-formed cookies, so that the fuzzer reaches the planted item.
	for i, home := range []string{"us-east-1", "ap-northeast-1", "eu-west-1"} {
		ck := session.DefaultCookieName + "=" + validCookie(byte(i), uint64(i*7), home)
		f.Add(ck, []byte{1, 1, 4, 'u', 's', 'e', 'r', 1, 'a'}, strconv.Itoa(i*7), "9999999999", home, false, uint8(i))
		f.Add(ck, []byte{1, 0}, "18446744073709551615", "9999999999", home, i == 1, uint8(i+1))
	}
	f.Fuzz(func(t *testing.T, cookieHeader string, data []byte, version, expires, region string, tomb bool, op uint8) {
		client := &plantedClient{item: map[string]types.AttributeValue{
			session.AttrKey:       &types.AttributeValueMemberS{Value: "k"},
			session.AttrData:      &types.AttributeValueMemberB{Value: data},
			session.AttrVersion:   &types.AttributeValueMemberN{Value: version},
			session.AttrExpiresAt: &types.AttributeValueMemberN{Value: expires},
			session.AttrCreated:   &types.AttributeValueMemberN{Value: "1"},
			session.AttrTouched:   &types.AttributeValueMemberN{Value: expires},
			session.AttrRegion:    &types.AttributeValueMemberS{Value: region},
			session.AttrDestroyed: &types.AttributeValueMemberBOOL{Value: tomb},
		}}
		m, err := session.New(session.Config{Table: "t", Region: "us-east-1",
			Clients: map[string]session.Client{"us-east-1": client, "ap-northeast-1": client}})
		if err != nil {
			t.Fatal(err)
		}
		h := m.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			ctx := r.Context()
			v, err := m.Get(ctx, "user")
			if err != nil {
				http.Error(w, err.Error(), http.StatusServiceUnavailable)
				return
			}
			switch op % 4 {
			case 1:
				err = m.Put(ctx, "n", strconv.Itoa(len(v)+1))
			case 2:
				err = m.RenewToken(ctx)
			case 3:
				err = m.Destroy(ctx)
			}
			if err != nil {
				http.Error(w, err.Error(), http.StatusServiceUnavailable)
				return
			}
			io.WriteString(w, "ok")
		}))
		req := httptest.NewRequest(http.MethodGet, "/", nil)
		req.Header.Set("Cookie", cookieHeader)
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code != http.StatusOK && rec.Code != http.StatusServiceUnavailable {
			t.Fatalf("cookie %q: status %d %q", cookieHeader, rec.Code, rec.Body)
		}
	})
}
