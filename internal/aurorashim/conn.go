package aurorashim

import (
	"context"
	"database/sql/driver"
	"errors"
	"fmt"
	"io"
	"sync"
)

// connector wraps a go-sql-driver/mysql connector.
type connector struct {
	shim *Shim
	base driver.Connector
}

var _ driver.Connector = (*connector)(nil)

// Connect opens a connection and sets its @aurora_server_id from the
// server's own row.
func (c *connector) Connect(ctx context.Context) (driver.Conn, error) {
	raw, err := c.base.Connect(ctx)
	if err != nil {
		return nil, err
	}
	bc, ok := raw.(baseConn)
	if !ok {
		raw.Close()
		return nil, errors.New("aurorashim: the driver's connection lacks the context interfaces")
	}
	if _, err := bc.ExecContext(ctx, "SET @aurora_server_id = (SELECT server_id FROM "+Database+".self LIMIT 1)", nil); err != nil {
		bc.Close()
		return nil, fmt.Errorf("aurorashim: set @aurora_server_id (is the shim set up on this server?): %w", err)
	}
	id, err := queryOne(ctx, bc, "SELECT @aurora_server_id")
	if err != nil {
		bc.Close()
		return nil, err
	}
	c.shim.counted(id)
	return &conn{baseConn: bc, shim: c.shim, id: id}, nil
}

func (c *connector) Driver() driver.Driver { return c.base.Driver() }

// baseConn is what the wrapped driver connection must implement (as
// go-sql-driver/mysql's does).
type baseConn interface {
	driver.Conn
	driver.ConnPrepareContext
	driver.ConnBeginTx
	driver.QueryerContext
	driver.ExecerContext
	driver.Pinger
	driver.SessionResetter
	driver.Validator
	driver.NamedValueChecker
}

// conn rewrites the statements of a driver connection.
type conn struct {
	baseConn
	shim   *Shim
	id     string    // the instance's id
	closed sync.Once // counts the close once
}

func (c *conn) Close() error {
	c.closed.Do(func() { c.shim.opened(c.id, -1) })
	return c.baseConn.Close()
}

var _ baseConn = (*conn)(nil)

func (c *conn) Prepare(q string) (driver.Stmt, error) {
	return c.PrepareContext(context.Background(), q)
}

func (c *conn) PrepareContext(ctx context.Context, q string) (driver.Stmt, error) {
	q, err := Rewrite(q)
	if err != nil {
		return nil, err
	}
	return c.baseConn.PrepareContext(ctx, q)
}

func (c *conn) QueryContext(ctx context.Context, q string, args []driver.NamedValue) (driver.Rows, error) {
	q, err := Rewrite(q)
	if err != nil {
		return nil, err
	}
	return c.baseConn.QueryContext(ctx, q, args)
}

func (c *conn) ExecContext(ctx context.Context, q string, args []driver.NamedValue) (driver.Result, error) {
	q, err := Rewrite(q)
	if err != nil {
		return nil, err
	}
	return c.baseConn.ExecContext(ctx, q, args)
}

// queryOne returns the first column of the first row of q as a string.
func queryOne(ctx context.Context, c driver.QueryerContext, q string) (string, error) {
	rows, err := c.QueryContext(ctx, q, nil)
	if err != nil {
		return "", err
	}
	defer rows.Close()
	vals := make([]driver.Value, len(rows.Columns()))
	if err := rows.Next(vals); err != nil {
		if err == io.EOF {
			return "", nil
		}
		return "", err
	}
	switch v := vals[0].(type) {
	case []byte:
		return string(v), nil
	case string:
		return v, nil
	case nil:
		return "", nil
	default:
		return fmt.Sprint(v), nil
	}
}
