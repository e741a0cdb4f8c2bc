package cache_test

import (
	"context"
	"database/sql"
	"fmt"
	"strings"
	"time"

	"github.com/bradfitz/gomemcache/memcache"
	"github.com/regiondb/regiondb/cache"
)

// Example shows the read-through pattern. It needs a memcached, so it has no
// Output line.
func Example() {
	mc := memcache.New("127.0.0.1:11211")
	mc.Timeout = 100 * time.Millisecond
	defer mc.Close()
	c, err := cache.New(cache.Config{Client: mc, TTL: 10 * time.Minute, NegativeTTL: time.Minute})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer c.Close()

	var db *sql.DB // the application's database (a *dbrouter.Router in regiondb)
	b, err := c.Get(context.Background(), "user:42:name", func(ctx context.Context) ([]byte, error) {
		var name string
		err := db.QueryRowContext(ctx, "SELECT name FROM users WHERE id = ?", 42).Scan(&name)
		if err == sql.ErrNoRows {
			return nil, cache.ErrNotFound
		}
		return []byte(name), err
	})
	fmt.Println(string(b), err)
}

// ExampleCache_Invalidate shows a write followed by the invalidation of the
// cached record in every region.
func ExampleCache_Invalidate() {
	tokyo, virginia := memcache.New("10.1.0.1:11211"), memcache.New("10.2.0.1:11211")
	c, err := cache.New(cache.Config{
		Client:  tokyo,
		Region:  "ap-northeast-1",
		Remotes: []cache.Region{{Name: "us-east-1", Client: virginia}},
		// Consistency: router, // *dbrouter.Router: markers carry the write's position
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer c.Close()

	var db *sql.DB
	ctx := context.Background()
	if _, err := db.ExecContext(ctx, "UPDATE users SET name = ? WHERE id = ?", "Aiko", 42); err != nil {
		fmt.Println(err)
		return
	}
	// Same ctx as the write, so the marker records its position.
	if err := c.Invalidate(ctx, "user:42:name"); err != nil {
		fmt.Println(err)
	}
}

// ExampleTyped shows the typed helper with the default JSON codec.
func ExampleTyped() {
	type User struct {
		ID   int64
		Name string
	}
	var c *cache.Cache // from cache.New
	users := cache.Typed[User]{Cache: c}
	u, err := users.Get(context.Background(), "user:42", func(ctx context.Context) (User, error) {
		return User{ID: 42, Name: "Aiko"}, nil
	})
	fmt.Println(u, err)
}

// ExampleKeyError shows how keys memcached cannot store are reported.
func ExampleKeyError() {
	mc := memcache.New("127.0.0.1:11211") // not dialled: the key is checked first
	c, _ := cache.New(cache.Config{Client: mc})
	defer c.Close()
	_, err := c.Get(context.Background(), "user 42", func(context.Context) ([]byte, error) { return nil, nil })
	fmt.Println(strings.Split(err.Error(), " (set")[0])
	// Output: cache: invalid key (7 bytes): contains a space or control character at byte 4
}

// ExampleJSON shows the default codec round trip.
func ExampleJSON() {
	var codec cache.Codec[[]int] = cache.JSON[[]int]{}
	b, _ := codec.Marshal([]int{1, 2, 3})
	v, _ := codec.Unmarshal(b)
	fmt.Println(string(b), v)
	// Output: [1,2,3] [1 2 3]
}
