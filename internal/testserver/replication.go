package testserver

import (
	"context"
	"database/sql"
	"fmt"

	_ "github.com/go-sql-driver/mysql" // the stack's MariaDB servers
)

// WaitReplicated waits, at most 10 s, until every running replica has
// applied everything the current primary has committed, so that a test
// starts from replicas that are not behind (after it created its schema,
// say).
func (s *Stack) WaitReplicated(ctx context.Context) error {
	primary, err := s.Primary(ctx)
	if err != nil {
		return err
	}
	m, err := sql.Open("mysql", s.AdminDSN(primary))
	if err != nil {
		return err
	}
	defer m.Close()
	var pos string
	if err := m.QueryRowContext(ctx, "SELECT @@global.gtid_binlog_pos").Scan(&pos); err != nil {
		return fmt.Errorf("testserver: position of %s: %w", primary, err)
	}
	for _, sv := range s.snapshot().Servers {
		if sv.Kind != KindMariaDB || sv.Name == primary || !sv.Running {
			continue
		}
		db, err := sql.Open("mysql", s.AdminDSN(sv.Name))
		if err != nil {
			return err
		}
		var res sql.NullInt64
		err = db.QueryRowContext(ctx, "SELECT MASTER_GTID_WAIT(?, 10)", pos).Scan(&res)
		db.Close()
		if err != nil || !res.Valid || res.Int64 != 0 {
			return fmt.Errorf("testserver: %s did not catch up with %s's %s in 10 s (%v)", sv.Name, primary, pos, err)
		}
	}
	return nil
}
