package session_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/alexedwards/scs/v2"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/regiondb/regiondb/session"
)

// Store plugs into github.com/alexedwards/scs/v2 (scs.SessionManager.Store).
var (
	_ scs.Store    = (*session.Store)(nil)
	_ scs.CtxStore = (*session.Store)(nil)
)

func TestStoreSCSContract(t *testing.T) {
	e := openEnv(t)
	ctx := context.Background()
	now := time.Now()
	cfg := e.Config("ap-northeast-1", false)
	//lint:ignore SA1019 the module keeps its fake clock for tests against the real dynalite (synctest cannot drive real network I/O)
	cfg.Now = func() time.Time { return now }
	st, err := session.NewStore(cfg)
	if err != nil {
		t.Fatal(err)
	}
	const tok = "scs-token-value"
	if _, found, err := st.FindCtx(ctx, tok); found || err != nil {
		t.Fatalf("unknown token: found %v, err %v", found, err)
	}
	if err := st.CommitCtx(ctx, tok, []byte("hello"), now.Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	if b, found, err := st.Find(tok); !found || err != nil || string(b) != "hello" {
		t.Fatalf("Find: %q %v %v", b, found, err)
	}
	if err := st.Commit(tok, []byte("again"), now.Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	if b, _, _ := st.FindCtx(ctx, tok); string(b) != "again" {
		t.Fatalf("overwrite: %q", b)
	}
	// The table holds a hash of the token, never the token.
	out, err := e.Clients["ap-northeast-1"].Scan(ctx, &dynamodb.ScanInput{TableName: &e.Table})
	if err != nil || len(out.Items) != 1 {
		t.Fatalf("scan: %v items, %v", len(out.Items), err)
	}
	for name, v := range out.Items[0] {
		var val string
		switch v := v.(type) {
		case *types.AttributeValueMemberS:
			val = v.Value
		case *types.AttributeValueMemberB:
			val = string(v.Value)
		}
		if strings.Contains(val, tok) {
			t.Fatalf("attribute %s holds the token", name)
		}
	}
	// Expired: not found (dynalite has no TTL; the read enforces it).
	now = now.Add(2 * time.Minute)
	if _, found, err := st.FindCtx(ctx, tok); found || err != nil {
		t.Fatalf("expired: found %v, err %v", found, err)
	}
	if err := st.Delete(tok); err != nil {
		t.Fatal(err)
	}
	if err := st.DeleteCtx(ctx, "never-existed"); err != nil {
		t.Fatal(err)
	}
	// Over the item size limit: a clear error, before the write.
	big := make([]byte, session.MaxItemSize)
	w := e.Count["ap-northeast-1"].Writes.Load()
	err = st.CommitCtx(ctx, "big", big, now.Add(time.Minute))
	var se *session.SizeError
	if !errors.Is(err, session.ErrTooLarge) || !errors.As(err, &se) || se.Size <= session.MaxItemSize {
		t.Fatalf("big commit: %v", err)
	}
	if e.Count["ap-northeast-1"].Writes.Load() != w {
		t.Fatal("the oversized item was sent to DynamoDB")
	}
}
