// Command demo is the README's main demo. Until the photo-album example lands
// it shows the stack's topology at work: a write on the Tokyo writer, and how
// long each region's reader takes to see it.
package main

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"os"
	"time"

	_ "github.com/go-sql-driver/mysql"

	"github.com/regiondb/regiondb/internal/testserver"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "demo:", err)
		os.Exit(1)
	}
}

func run() error {
	ctx := context.Background()
	s, err := testserver.Lookup()
	if err != nil {
		return err
	}
	writer, err := sql.Open("mysql", s.DSN("m1", "regiondb"))
	if err != nil {
		return err
	}
	defer writer.Close()
	if _, err := writer.ExecContext(ctx, "CREATE TABLE IF NOT EXISTS demo (id INT PRIMARY KEY AUTO_INCREMENT, note TEXT)"); err != nil {
		return err
	}
	res, err := writer.ExecContext(ctx, "INSERT INTO demo (note) VALUES ('hello from Tokyo')")
	if err != nil {
		return err
	}
	id, _ := res.LastInsertId()
	written := time.Now()
	fmt.Printf("wrote row %d on the writer m1 (%s)\n", id, testserver.PrimaryRegion)
	report := map[string]float64{}
	for _, region := range []string{testserver.PrimaryRegion, testserver.SecondaryRegion} {
		name := s.Reader(region)
		db, err := sql.Open("mysql", s.DSN(name, "regiondb"))
		if err != nil {
			return err
		}
		defer db.Close()
		for {
			var n int
			// Until the table's creation has replicated, the query fails: keep polling.
			err := db.QueryRowContext(ctx, "SELECT COUNT(*) FROM demo WHERE id = ?", id).Scan(&n)
			if err == nil && n == 1 {
				break
			}
			if time.Since(written) > 10*time.Second {
				return fmt.Errorf("reader %s never saw row %d: %v", name, id, err)
			}
			time.Sleep(5 * time.Millisecond)
		}
		ms := float64(time.Since(written).Microseconds()) / 1000
		report[region+"_visible_ms"] = ms
		fmt.Printf("reader %s (%s) saw it after %.1f ms\n", name, region, ms)
	}
	b, _ := json.Marshal(report)
	fmt.Println(string(b))
	return nil
}
