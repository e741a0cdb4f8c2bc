package testserver_test

import (
	"context"
	"database/sql"
	"errors"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/go-sql-driver/mysql"

	"github.com/regiondb/regiondb/internal/testserver"
)

func open(t *testing.T, dsn string) *sql.DB {
	t.Helper()
	db, err := sql.Open("mysql", dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

// eventually polls f until it returns nil or the deadline passes.
func eventually(t *testing.T, within time.Duration, f func() error) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("not within %s: %v", within, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func count(db *sql.DB) (n int, err error) {
	err = db.QueryRow("SELECT COUNT(*) FROM regiondb.t").Scan(&n)
	return n, err
}

func wantCount(db *sql.DB, want int) func() error {
	return func() error {
		n, err := count(db)
		if err != nil {
			return err
		}
		if n != want {
			return errors.New("count " + time.Duration(n).String())
		}
		return nil
	}
}

func TestReplicationFaults(t *testing.T) {
	s := testserver.Require(t)
	ctx := context.Background()
	t.Cleanup(func() {
		if err := s.Reset(context.Background()); err != nil {
			t.Errorf("reset: %v", err)
		}
	})
	if err := s.Reset(ctx); err != nil {
		t.Fatal(err)
	}
	w := open(t, s.DSN("m1", "regiondb"))
	r1 := open(t, s.DSN("r1", "regiondb"))
	r2 := open(t, s.DSN("r2", "regiondb"))
	if _, err := w.Exec("CREATE TABLE t (id INT PRIMARY KEY)"); err != nil {
		t.Fatal(err)
	}

	t.Run("replicas are read-only for the app user", func(t *testing.T) {
		_, err := r1.Exec("INSERT INTO t VALUES (100)")
		var me *mysql.MySQLError
		if !errors.As(err, &me) || me.Number != 1290 {
			t.Fatalf("write on replica: got %v, want MySQL error 1290", err)
		}
	})

	t.Run("remote link delay is real replication lag", func(t *testing.T) {
		start := time.Now()
		if _, err := w.Exec("INSERT INTO t VALUES (1)"); err != nil {
			t.Fatal(err)
		}
		eventually(t, 5*time.Second, wantCount(r2, 1))
		if lag := time.Since(start); lag < 100*time.Millisecond {
			t.Fatalf("r2 saw the write after %s; want >= the 150 ms link delay", lag)
		}
		eventually(t, 5*time.Second, wantCount(r1, 1))
	})

	t.Run("stall and resume", func(t *testing.T) {
		if err := s.Stall(ctx, "r1"); err != nil {
			t.Fatal(err)
		}
		if _, err := w.Exec("INSERT INTO t VALUES (2)"); err != nil {
			t.Fatal(err)
		}
		eventually(t, 5*time.Second, wantCount(r2, 2))
		if n, err := count(r1); err != nil || n != 1 {
			t.Fatalf("stalled r1 has %d rows (%v), want 1", n, err)
		}
		if err := s.Resume(ctx, "r1"); err != nil {
			t.Fatal(err)
		}
		eventually(t, 5*time.Second, wantCount(r1, 2))
	})

	t.Run("lag for a duration", func(t *testing.T) {
		if err := s.Lag(ctx, "r1", 500*time.Millisecond); err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		if _, err := w.Exec("INSERT INTO t VALUES (3)"); err != nil {
			t.Fatal(err)
		}
		eventually(t, 5*time.Second, wantCount(r1, 3))
		if d := time.Since(start); d < 300*time.Millisecond {
			t.Fatalf("lagging r1 caught up after %s, want about 500 ms", d)
		}
	})

	t.Run("kill the primary and promote r1", func(t *testing.T) {
		if err := s.Kill(ctx, "m1"); err != nil {
			t.Fatal(err)
		}
		if _, err := w.Exec("INSERT INTO t VALUES (4)"); err == nil {
			t.Fatal("write to a killed primary succeeded")
		}
		if err := s.Promote(ctx, "r1"); err != nil {
			t.Fatal(err)
		}
		if p, err := s.Primary(ctx); err != nil || p != "r1" {
			t.Fatalf("primary = %q (%v), want r1", p, err)
		}
		if _, err := r1.Exec("INSERT INTO t VALUES (4)"); err != nil {
			t.Fatalf("write on promoted r1: %v", err)
		}
		eventually(t, 5*time.Second, wantCount(r2, 4))
		// The old primary comes back as a read-only replica of r1.
		if err := s.Start(ctx, "m1"); err != nil {
			t.Fatal(err)
		}
		m1 := open(t, s.DSN("m1", "regiondb"))
		eventually(t, 5*time.Second, wantCount(m1, 4))
		if _, err := m1.Exec("INSERT INTO t VALUES (5)"); err == nil {
			t.Fatal("former primary accepts writes after rejoining")
		}
	})
}

func TestMemcachedStopStart(t *testing.T) {
	s := testserver.Require(t)
	ctx := context.Background()
	if err := s.Stop(ctx, "mc2"); err != nil {
		t.Fatal(err)
	}
	if s.Server("mc2").Running {
		t.Fatal("mc2 still running after Stop")
	}
	if err := s.Start(ctx, "mc2"); err != nil {
		t.Fatal(err)
	}
	if !s.Server("mc2").Running {
		t.Fatal("mc2 not running after Start")
	}
}

func TestReplicateTable(t *testing.T) {
	s := testserver.Require(t)
	ctx := context.Background()
	clients := map[string]*dynamodb.Client{}
	for _, region := range []string{testserver.PrimaryRegion, testserver.SecondaryRegion} {
		c := dynamodb.New(dynamodb.Options{Region: region, BaseEndpoint: aws.String(s.DynamoDBEndpoint(region)),
			Credentials: credentials.NewStaticCredentialsProvider("local", "local", "")})
		_, err := c.CreateTable(ctx, &dynamodb.CreateTableInput{
			TableName:            aws.String("testserver_repl"),
			AttributeDefinitions: []types.AttributeDefinition{{AttributeName: aws.String("id"), AttributeType: types.ScalarAttributeTypeS}},
			KeySchema:            []types.KeySchemaElement{{AttributeName: aws.String("id"), KeyType: types.KeyTypeHash}},
			BillingMode:          types.BillingModePayPerRequest,
		})
		if err != nil {
			t.Fatal(err)
		}
		// A PutItem on a CREATING table is ResourceNotFoundException.
		if err := dynamodb.NewTableExistsWaiter(c).Wait(ctx, &dynamodb.DescribeTableInput{TableName: aws.String("testserver_repl")}, 30*time.Second); err != nil {
			t.Fatal(err)
		}
		clients[region] = c
	}
	t.Cleanup(func() {
		s.Replicate(context.Background(), "testserver_repl", -1)
		for _, c := range clients {
			c.DeleteTable(context.Background(), &dynamodb.DeleteTableInput{TableName: aws.String("testserver_repl")})
		}
	})
	if err := s.Replicate(ctx, "testserver_repl", 300*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	_, err := clients[testserver.PrimaryRegion].PutItem(ctx, &dynamodb.PutItemInput{TableName: aws.String("testserver_repl"),
		Item: map[string]types.AttributeValue{"id": &types.AttributeValueMemberS{Value: "a"}, "v": &types.AttributeValueMemberN{Value: "1"}}})
	if err != nil {
		t.Fatal(err)
	}
	get := func(region string) func() error {
		return func() error {
			out, err := clients[region].GetItem(ctx, &dynamodb.GetItemInput{TableName: aws.String("testserver_repl"),
				Key: map[string]types.AttributeValue{"id": &types.AttributeValueMemberS{Value: "a"}}})
			if err != nil {
				return err
			}
			if out.Item == nil {
				return errors.New("not replicated yet")
			}
			return nil
		}
	}
	if get(testserver.SecondaryRegion)() == nil {
		t.Fatal("item visible in the other region before the replication delay")
	}
	eventually(t, 5*time.Second, get(testserver.SecondaryRegion))
	if d := time.Since(start); d < 300*time.Millisecond {
		t.Fatalf("replicated after %s, want >= 300 ms", d)
	}
}

// TestRegionLossAndCrossRegionPromotion loses Tokyo's databases (m1 and r1
// killed at once), promotes r2 in us-east-1, and brings Tokyo's servers back
// as replicas of r2 across the delayed link.
func TestRegionLossAndCrossRegionPromotion(t *testing.T) {
	s := testserver.Require(t)
	ctx := context.Background()
	t.Cleanup(func() {
		if err := s.Reset(context.Background()); err != nil {
			t.Errorf("reset: %v", err)
		}
	})
	if err := s.Reset(ctx); err != nil {
		t.Fatal(err)
	}
	w := open(t, s.DSN("m1", "regiondb"))
	r2 := open(t, s.DSN("r2", "regiondb"))
	if _, err := w.Exec("CREATE TABLE t (id INT PRIMARY KEY)"); err != nil {
		t.Fatal(err)
	}
	if _, err := w.Exec("INSERT INTO t VALUES (1)"); err != nil {
		t.Fatal(err)
	}
	eventually(t, 5*time.Second, wantCount(r2, 1))

	if err := s.KillRegion(ctx, testserver.PrimaryRegion); err != nil {
		t.Fatal(err)
	}
	for _, n := range []string{"m1", "r1"} {
		if s.Server(n).Running {
			t.Fatalf("%s still running after KillRegion", n)
		}
	}
	if !s.Server("r2").Running {
		t.Fatal("KillRegion of ap-northeast-1 stopped r2")
	}
	if _, err := r2.Exec("INSERT INTO t VALUES (2)"); err == nil {
		t.Fatal("r2 accepts writes before its promotion")
	}
	if err := s.Promote(ctx, "r2"); err != nil {
		t.Fatal(err)
	}
	if p, err := s.Primary(ctx); err != nil || p != "r2" {
		t.Fatalf("primary = %q (%v), want r2", p, err)
	}
	if _, err := r2.Exec("INSERT INTO t VALUES (2)"); err != nil {
		t.Fatalf("write on promoted r2: %v", err)
	}

	// Tokyo's servers come back as read-only replicas of r2, across the
	// 150 ms link, and no longer acknowledge semi-sync commits.
	for _, n := range []string{"r1", "m1"} {
		if err := s.Start(ctx, n); err != nil {
			t.Fatalf("start %s: %v", n, err)
		}
	}
	r1 := open(t, s.DSN("r1", "regiondb"))
	m1 := open(t, s.DSN("m1", "regiondb"))
	eventually(t, 5*time.Second, wantCount(r1, 2))
	eventually(t, 5*time.Second, wantCount(m1, 2))
	for n, db := range map[string]*sql.DB{"r1": r1, "m1": m1} {
		_, err := db.Exec("INSERT INTO t VALUES (3)")
		var me *mysql.MySQLError
		if !errors.As(err, &me) || me.Number != 1290 {
			t.Fatalf("write on %s after it rejoined: %v, want MySQL error 1290", n, err)
		}
		var semi int
		if err := open(t, s.AdminDSN(n)).QueryRow("SELECT @@rpl_semi_sync_slave_enabled").Scan(&semi); err != nil || semi != 0 {
			t.Fatalf("%s: rpl_semi_sync_slave_enabled = %d (%v), want 0 across regions", n, semi, err)
		}
	}
	start := time.Now()
	if _, err := r2.Exec("INSERT INTO t VALUES (3)"); err != nil {
		t.Fatal(err)
	}
	eventually(t, 5*time.Second, wantCount(r1, 3))
	if lag := time.Since(start); lag < 100*time.Millisecond {
		t.Fatalf("r1 saw r2's write after %s; want >= the 150 ms cross-region link delay", lag)
	}
	deaths, err := s.UnexpectedDeaths(ctx)
	if err != nil || len(deaths) != 0 {
		t.Fatalf("deaths recorded for fault-control kills: %v (%v)", deaths, err)
	}
}

// TestPromotedPrimaryIgnoresMasterGTIDWait records a MariaDB fact dbrouter
// depends on: after a promotion, MASTER_GTID_WAIT on the new primary times
// out (-1) for its own writes, because it waits on gtid_slave_pos, which a
// primary's own commits never enter; gtid_current_pos has them. A wait
// guarded by read_only answers at once on the primary and still waits on a
// replica (the control: r2 returns 0 for the same GTID).
func TestPromotedPrimaryIgnoresMasterGTIDWait(t *testing.T) {
	s := testserver.Require(t)
	ctx := context.Background()
	t.Cleanup(func() {
		if err := s.Reset(context.Background()); err != nil {
			t.Errorf("reset: %v", err)
		}
	})
	if err := s.Reset(ctx); err != nil {
		t.Fatal(err)
	}
	w := open(t, s.DSN("m1", "regiondb"))
	if _, err := w.Exec("CREATE TABLE t (id INT PRIMARY KEY)"); err != nil {
		t.Fatal(err)
	}
	var before string
	if err := w.QueryRow("SELECT @@gtid_binlog_pos").Scan(&before); err != nil {
		t.Fatal(err)
	}
	if err := s.Kill(ctx, "m1"); err != nil {
		t.Fatal(err)
	}
	if err := s.Promote(ctx, "r1"); err != nil {
		t.Fatal(err)
	}
	r1 := open(t, s.DSN("r1", "regiondb"))
	conn, err := r1.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := conn.ExecContext(ctx, "INSERT INTO t VALUES (1)"); err != nil {
		t.Fatal(err)
	}
	var own, current string
	if err := conn.QueryRowContext(ctx, "SELECT @@last_gtid, @@global.gtid_current_pos").Scan(&own, &current); err != nil {
		t.Fatal(err)
	}
	if current != own {
		t.Fatalf("r1's gtid_current_pos %q lacks its own write %q", current, own)
	}
	wait := func(db *sql.DB, q, gtid string) sql.NullInt64 {
		t.Helper()
		var v sql.NullInt64
		if err := db.QueryRow(q, gtid).Scan(&v); err != nil {
			t.Fatal(err)
		}
		return v
	}
	const plain = "SELECT MASTER_GTID_WAIT(?, 0.3)"
	if v := wait(r1, plain, before); v.Int64 != 0 {
		t.Fatalf("MASTER_GTID_WAIT on promoted r1 for a position from before the promotion = %v, want 0", v)
	}
	if v := wait(r1, plain, own); v.Int64 != -1 {
		t.Fatalf("MASTER_GTID_WAIT on promoted r1 for its own write = %v, want -1 (timeout)", v)
	}
	const guarded = "SELECT IF(@@global.read_only = 0, NULL, MASTER_GTID_WAIT(?, 0.3))"
	if v := wait(r1, guarded, own); v.Valid {
		t.Fatalf("guarded wait on the primary = %v, want NULL (no wait)", v)
	}
	r2 := open(t, s.DSN("r2", "regiondb"))
	if v := wait(r2, "SELECT IF(@@global.read_only = 0, NULL, MASTER_GTID_WAIT(?, 5))", own); !v.Valid || v.Int64 != 0 {
		t.Fatalf("guarded wait on replica r2 for r1's write = %v, want 0", v)
	}
}

// TestClientRoutes checks that a client of us-east-1 reaches m1 and r1
// through their routes at the region round trip, that r2 is reached from
// ap-northeast-1 the same way, and that the plain DSNs (what every other
// test uses) stay direct.
func TestClientRoutes(t *testing.T) {
	s := testserver.Require(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	st, err := s.State(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(st.Routes) != 3 {
		t.Fatalf("routes %+v, want m1 and r1 via us-east-1, r2 via ap-northeast-1", st.Routes)
	}
	rtt := time.Duration(st.Routes[0].RTTMillis) * time.Millisecond
	if rtt <= 0 {
		t.Fatalf("route %+v adds no round trip", st.Routes[0])
	}
	ping := func(dsn string) time.Duration {
		db := open(t, dsn)
		if err := db.PingContext(ctx); err != nil { // connects
			t.Fatal(err)
		}
		start := time.Now()
		var one int
		if err := db.QueryRowContext(ctx, "SELECT 1").Scan(&one); err != nil {
			t.Fatal(err)
		}
		return time.Since(start)
	}
	for _, c := range []struct{ region, server string }{
		{testserver.SecondaryRegion, "m1"}, {testserver.SecondaryRegion, "r1"}, {testserver.PrimaryRegion, "r2"},
	} {
		if s.AddrFrom(c.region, c.server) == s.Addr(c.server) {
			t.Errorf("%s from %s: no route", c.server, c.region)
		}
		if d := ping(s.DSNFrom(c.region, c.server, "")); d < rtt {
			t.Errorf("query on %s from %s took %s, less than the region round trip %s", c.server, c.region, d, rtt)
		}
		if d := ping(s.DSN(c.server, "")); d >= rtt {
			t.Errorf("direct query on %s took %s: the plain DSN must stay direct", c.server, d)
		}
	}
	if s.AddrFrom(testserver.PrimaryRegion, "m1") != s.Addr("m1") || s.DSNFrom(testserver.SecondaryRegion, "r2", "x") != s.DSN("r2", "x") {
		t.Error("a server of the client's own region must be reached directly")
	}
}
