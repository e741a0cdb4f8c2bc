package compat

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"

	"entgo.io/ent/dialect"
	entsql "entgo.io/ent/dialect/sql"
	"github.com/XSAM/otelsql"
	"github.com/jmoiron/sqlx"
	"github.com/uptrace/bun"
	"github.com/uptrace/bun/dialect/mysqldialect"
	"go.opentelemetry.io/otel/trace"
	"gorm.io/driver/mysql"
	"gorm.io/gorm"
	"gorm.io/gorm/logger"
)

// Table is the table every layer reads and writes. Its name marks the
// suite's statements in the servers' general logs.
const Table = "compat_items"

// Source is what a layer is opened on: the routing pool of a router for
// reads and writes alike, or, for the controls, plain pools (the writer's
// for both; a reader's and the writer's for a naive split, the way an
// application splits by hand).
type Source struct {
	Read, Write *sql.DB
	// ReadConnector and WriteConnector are the same pools' connectors,
	// for layers that wrap a connector (otelsql).
	ReadConnector, WriteConnector driver.Connector
	// Tracer is the provider of the layer's own instrumentation (otelsql).
	Tracer trace.TracerProvider
}

// Ops are the operations the suite runs through a layer, each in that
// layer's usual way.
type Ops interface {
	// ServerID reads @@server_id: a read.
	ServerID(ctx context.Context) (int, error)
	// Insert writes a row through the layer's default write path
	// (GORM Create's default transaction, ent's Tx, bun's RunInTx, sqlc's
	// WithTx, sqlx's NamedExecContext in BeginTxx, otelsql's ExecContext).
	Insert(ctx context.Context, name string, n int) error
	// Get reads the row back by name; found is false when it is missing.
	Get(ctx context.Context, name string) (n int, found bool, err error)
	Close() error
}

// Layer is a data layer under test.
type Layer struct {
	Name string
	Open func(Source) (Ops, error)
}

// Layers returns the data layers of the suite.
func Layers() []Layer {
	return []Layer{
		{"gorm", openGORM},
		{"sqlx", openSQLX},
		{"ent", openEnt},
		{"bun", openBun},
		{"sqlc", openSQLC},
		{"otelsql", openOtelSQL},
	}
}

// Item is the row of Table, as GORM and bun map it.
type Item struct {
	bun.BaseModel `bun:"table:compat_items" gorm:"-"`
	ID            int64  `bun:"id,pk,autoincrement" gorm:"primaryKey"`
	Name          string `bun:"name" db:"name"`
	N             int    `bun:"n" db:"n"`
}

// TableName is GORM's name for Item's table.
func (Item) TableName() string { return Table }

// ---- GORM ----

type gormOps struct{ r, w *gorm.DB }

// OpenGORM opens GORM on db the way the package doc recommends, with
// prepared statements on and the default transaction for writes.
func OpenGORM(db *sql.DB) (*gorm.DB, error) {
	return gorm.Open(mysql.New(mysql.Config{Conn: db}), &gorm.Config{
		PrepareStmt: true,
		Logger:      logger.Discard,
	})
}

func openGORM(s Source) (Ops, error) {
	w, err := OpenGORM(s.Write)
	if err != nil {
		return nil, err
	}
	r := w
	if s.Read != s.Write {
		if r, err = OpenGORM(s.Read); err != nil {
			return nil, err
		}
	}
	return gormOps{r: r, w: w}, nil
}

func (o gormOps) ServerID(ctx context.Context) (int, error) {
	var id int
	err := o.r.WithContext(ctx).Raw("SELECT @@server_id AS " + Table + "_server").Scan(&id).Error
	return id, err
}

func (o gormOps) Insert(ctx context.Context, name string, n int) error {
	return o.w.WithContext(ctx).Create(&Item{Name: name, N: n}).Error
}

func (o gormOps) Get(ctx context.Context, name string) (int, bool, error) {
	var it Item
	err := o.r.WithContext(ctx).Where("name = ?", name).First(&it).Error
	if errors.Is(err, gorm.ErrRecordNotFound) {
		return 0, false, nil
	}
	return it.N, err == nil, err
}

func (o gormOps) Close() error { return nil }

// ---- sqlx ----

type sqlxOps struct{ r, w *sqlx.DB }

func openSQLX(s Source) (Ops, error) {
	return sqlxOps{r: sqlx.NewDb(s.Read, "mysql"), w: sqlx.NewDb(s.Write, "mysql")}, nil
}

func (o sqlxOps) ServerID(ctx context.Context) (int, error) {
	var id int
	err := o.r.GetContext(ctx, &id, "SELECT @@server_id AS "+Table+"_server")
	return id, err
}

func (o sqlxOps) Insert(ctx context.Context, name string, n int) error {
	tx, err := o.w.BeginTxx(ctx, nil)
	if err != nil {
		return err
	}
	if _, err := tx.NamedExecContext(ctx, "INSERT INTO "+Table+" (name, n) VALUES (:name, :n)", Item{Name: name, N: n}); err != nil {
		tx.Rollback()
		return err
	}
	return tx.Commit()
}

func (o sqlxOps) Get(ctx context.Context, name string) (int, bool, error) {
	var n int
	err := o.r.GetContext(ctx, &n, "SELECT n FROM "+Table+" WHERE name = ?", name)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, false, nil
	}
	return n, err == nil, err
}

func (o sqlxOps) Close() error { return nil }

// ---- ent (its dialect/sql layer, as generated clients use it) ----

type entOps struct{ r, w *entsql.Driver }

func openEnt(s Source) (Ops, error) {
	return entOps{r: entsql.OpenDB(dialect.MySQL, s.Read), w: entsql.OpenDB(dialect.MySQL, s.Write)}, nil
}

func (o entOps) ServerID(ctx context.Context) (int, error) {
	return entInt(ctx, o.r, "SELECT @@server_id AS "+Table+"_server", []any{})
}

func entInt(ctx context.Context, drv *entsql.Driver, q string, args []any) (int, error) {
	var rows entsql.Rows
	if err := drv.Query(ctx, q, args, &rows); err != nil {
		return 0, err
	}
	defer rows.Close()
	if !rows.Next() {
		if err := rows.Err(); err != nil {
			return 0, err
		}
		return 0, sql.ErrNoRows
	}
	var n int
	if err := rows.Scan(&n); err != nil {
		return 0, err
	}
	return n, rows.Close()
}

func (o entOps) Insert(ctx context.Context, name string, n int) error {
	tx, err := o.w.Tx(ctx)
	if err != nil {
		return err
	}
	if err := tx.Exec(ctx, "INSERT INTO "+Table+" (name, n) VALUES (?, ?)", []any{name, n}, nil); err != nil {
		tx.Rollback()
		return err
	}
	return tx.Commit()
}

func (o entOps) Get(ctx context.Context, name string) (int, bool, error) {
	n, err := entInt(ctx, o.r, "SELECT n FROM "+Table+" WHERE name = ?", []any{name})
	if errors.Is(err, sql.ErrNoRows) {
		return 0, false, nil
	}
	return n, err == nil, err
}

func (o entOps) Close() error { return nil }

// ---- bun ----

type bunOps struct{ r, w *bun.DB }

func openBun(s Source) (Ops, error) {
	return bunOps{r: bun.NewDB(s.Read, mysqldialect.New()), w: bun.NewDB(s.Write, mysqldialect.New())}, nil
}

func (o bunOps) ServerID(ctx context.Context) (int, error) {
	var id int
	err := o.r.NewRaw("SELECT @@server_id AS "+Table+"_server").Scan(ctx, &id)
	return id, err
}

func (o bunOps) Insert(ctx context.Context, name string, n int) error {
	return o.w.RunInTx(ctx, nil, func(ctx context.Context, tx bun.Tx) error {
		_, err := tx.NewInsert().Model(&Item{Name: name, N: n}).Exec(ctx)
		return err
	})
}

func (o bunOps) Get(ctx context.Context, name string) (int, bool, error) {
	var it Item
	err := o.r.NewSelect().Model(&it).Where("name = ?", name).Scan(ctx)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, false, nil
	}
	return it.N, err == nil, err
}

func (o bunOps) Close() error { return nil }

// ---- sqlc (the code sqlc generates for MySQL, written out) ----

// DBTX is sqlc's interface: *sql.DB, *sql.Tx and *dbrouter.Router have it.
type DBTX interface {
	ExecContext(context.Context, string, ...any) (sql.Result, error)
	PrepareContext(context.Context, string) (*sql.Stmt, error)
	QueryContext(context.Context, string, ...any) (*sql.Rows, error)
	QueryRowContext(context.Context, string, ...any) *sql.Row
}

// Queries is sqlc's generated type.
type Queries struct{ db DBTX }

// New is sqlc's generated constructor.
func New(db DBTX) *Queries { return &Queries{db: db} }

// WithTx is sqlc's generated transaction binding.
func (q *Queries) WithTx(tx *sql.Tx) *Queries { return &Queries{db: tx} }

// CreateItem is a generated :exec query.
func (q *Queries) CreateItem(ctx context.Context, name string, n int) error {
	_, err := q.db.ExecContext(ctx, "INSERT INTO compat_items (name, n) VALUES (?, ?)", name, n)
	return err
}

// GetItemN is a generated :one query.
func (q *Queries) GetItemN(ctx context.Context, name string) (int, error) {
	row := q.db.QueryRowContext(ctx, "SELECT n FROM compat_items WHERE name = ?", name)
	var n int
	err := row.Scan(&n)
	return n, err
}

// ServerID is a generated :one query.
func (q *Queries) ServerID(ctx context.Context) (int, error) {
	row := q.db.QueryRowContext(ctx, "SELECT @@server_id AS compat_items_server")
	var id int
	err := row.Scan(&id)
	return id, err
}

type sqlcOps struct {
	r     *Queries
	w     *sql.DB
	wq    *Queries
	begin func(context.Context, *sql.TxOptions) (*sql.Tx, error)
}

func openSQLC(s Source) (Ops, error) {
	return sqlcOps{r: New(s.Read), w: s.Write, wq: New(s.Write), begin: s.Write.BeginTx}, nil
}

func (o sqlcOps) ServerID(ctx context.Context) (int, error) { return o.r.ServerID(ctx) }

func (o sqlcOps) Insert(ctx context.Context, name string, n int) error {
	tx, err := o.begin(ctx, nil)
	if err != nil {
		return err
	}
	if err := o.wq.WithTx(tx).CreateItem(ctx, name, n); err != nil {
		tx.Rollback()
		return err
	}
	return tx.Commit()
}

func (o sqlcOps) Get(ctx context.Context, name string) (int, bool, error) {
	n, err := o.r.GetItemN(ctx, name)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, false, nil
	}
	return n, err == nil, err
}

func (o sqlcOps) Close() error { return nil }

// ---- database/sql wrapped by otelsql ----

type otelOps struct{ r, w *sql.DB }

func openOtelSQL(s Source) (Ops, error) {
	opts := []otelsql.Option{otelsql.WithTracerProvider(s.Tracer)}
	w := otelsql.OpenDB(s.WriteConnector, opts...)
	r := w
	if s.ReadConnector != s.WriteConnector {
		r = otelsql.OpenDB(s.ReadConnector, opts...)
	}
	return otelOps{r: r, w: w}, nil
}

func (o otelOps) ServerID(ctx context.Context) (int, error) {
	var id int
	err := o.r.QueryRowContext(ctx, "SELECT @@server_id AS "+Table+"_server").Scan(&id)
	return id, err
}

func (o otelOps) Insert(ctx context.Context, name string, n int) error {
	_, err := o.w.ExecContext(ctx, "INSERT INTO "+Table+" (name, n) VALUES (?, ?)", name, n)
	return err
}

func (o otelOps) Get(ctx context.Context, name string) (int, bool, error) {
	var n int
	err := o.r.QueryRowContext(ctx, "SELECT n FROM "+Table+" WHERE name = ?", name).Scan(&n)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, false, nil
	}
	return n, err == nil, err
}

// Close closes the otelsql pools (not the pools they wrap: otelsql's
// connector does not close the connector it wraps... see Run).
func (o otelOps) Close() error {
	err := o.w.Close()
	if o.r != o.w {
		err = errors.Join(err, o.r.Close())
	}
	return err
}
