package dbrouter

import (
	"database/sql"
	"testing"
	"time"
)

func TestPoolConfigDefaults(t *testing.T) {
	tests := []struct {
		name string
		in   PoolConfig
		want PoolConfig
	}{
		{"zero means defaults", PoolConfig{},
			PoolConfig{DefaultMaxOpenConns, DefaultMaxIdleConns, DefaultConnMaxLifetime, DefaultConnMaxIdleTime}},
		{"negative means unlimited or none", PoolConfig{-1, -1, -1, -1}, PoolConfig{0, -1, 0, 0}},
		{"default idle capped by a small max open", PoolConfig{MaxOpenConns: 1}, PoolConfig{1, 1, DefaultConnMaxLifetime, DefaultConnMaxIdleTime}},
		{"explicit", PoolConfig{50, 10, time.Hour, time.Second}, PoolConfig{50, 10, time.Hour, time.Second}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.in.withDefaults(); got != tt.want {
				t.Fatalf("withDefaults(%+v) = %+v, want %+v", tt.in, got, tt.want)
			}
		})
	}
	if err := (PoolConfig{MaxOpenConns: 2, MaxIdleConns: 3}).validate("WriterPool"); err == nil {
		t.Fatal("MaxIdleConns > MaxOpenConns accepted")
	} else if got := err.Error(); got != "dbrouter: invalid Config.WriterPool: MaxIdleConns 3 exceeds MaxOpenConns 2" {
		t.Fatalf("error %q", got)
	}
	if err := (PoolConfig{}).validate("ReaderPool"); err != nil {
		t.Fatal(err)
	}
}

func TestPoolConfigApply(t *testing.T) {
	db := sql.OpenDB(&failCountingDriver{})
	defer db.Close()
	PoolConfig{MaxOpenConns: 7}.apply(db)
	if got := db.Stats().MaxOpenConnections; got != 7 {
		t.Fatalf("MaxOpenConnections = %d, want 7", got)
	}
	PoolConfig{}.apply(db)
	if got := db.Stats().MaxOpenConnections; got != DefaultMaxOpenConns {
		t.Fatalf("MaxOpenConnections = %d, want %d", got, DefaultMaxOpenConns)
	}
}
