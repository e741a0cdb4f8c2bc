package dbrouter

import (
	"bytes"
	"errors"
	"log/slog"
	"strings"
	"testing"
)

func TestConfigValidation(t *testing.T) {
	const dsn = "u:secretpw@tcp(127.0.0.1:3306)/db"
	good := func() Config {
		return Config{
			Region:  "a",
			Writer:  Endpoint{DSN: dsn},
			Readers: []Endpoint{{DSN: "u:secretpw@tcp(127.0.0.1:3307)/db", Region: "a"}},
		}
	}
	for _, tc := range []struct {
		name  string
		edit  func(*Config)
		field string
	}{
		{"empty writer", func(c *Config) { c.Writer = Endpoint{} }, "Writer.DSN"},
		{"MySQL GTIDs on Aurora", func(c *Config) { c.Aurora, c.Dialect = true, DialectMySQL }, "Dialect"},
		{"malformed writer DSN", func(c *Config) { c.Writer.DSN = "u:secretpw@tcp(127.0.0.1:3306" }, "Writer.DSN"},
		{"malformed reader DSN", func(c *Config) { c.Readers[0].DSN = "u:secretpw@nonsense" }, "Readers[0].DSN"},
		{"reader without region", func(c *Config) { c.Readers[0].Region = "" }, "Readers[0].Region"},
		{"duplicate endpoint", func(c *Config) { c.Readers = append(c.Readers, c.Readers[0]) }, "Readers[1].Name"},
		{"reader is the writer", func(c *Config) { c.Readers[0].DSN = dsn; c.Readers[0].Name = "x" }, "Readers[0].DSN"},
		{"no region", func(c *Config) { c.Region = "" }, "Region"},
		{"connector without name", func(c *Config) { c.Writer = Endpoint{Connector: nopConnector{}} }, "Writer.Name"},
		{"short key", func(c *Config) { c.TokenKeys = []TokenKey{{Secret: []byte("short")}} }, "TokenKeys[0].Secret"},
		{"duplicate key id", func(c *Config) {
			c.TokenKeys = []TokenKey{{ID: 3, Secret: make([]byte, 16)}, {ID: 3, Secret: make([]byte, 16)}}
		}, "TokenKeys[1].ID"},
		{"negative duration", func(c *Config) { c.MaxLag = -1 }, "MaxLag"},
		{"bad dialect", func(c *Config) { c.Dialect = 99 }, "Dialect"},
		{"bad heartbeat table", func(c *Config) { c.HeartbeatTable = "t; DROP" }, "HeartbeatTable"},
		{"idle above open", func(c *Config) { c.ReaderPool = PoolConfig{MaxOpenConns: 2, MaxIdleConns: 5} }, "ReaderPool"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := good()
			tc.edit(&cfg)
			rt, err := Open(cfg)
			if err == nil {
				rt.Close()
				t.Fatal("Open succeeded")
			}
			var ce *ConfigError
			if !errors.As(err, &ce) || ce.Field != tc.field {
				t.Fatalf("error %v, want a ConfigError for %s", err, tc.field)
			}
			if !errors.Is(err, ErrInvalidConfig) {
				t.Errorf("error does not match ErrInvalidConfig")
			}
			if strings.Contains(err.Error(), "secretpw") {
				t.Errorf("error leaks the password: %v", err)
			}
		})
	}
	t.Run("no local reader is reported", func(t *testing.T) {
		var buf bytes.Buffer
		cfg := good()
		cfg.Readers[0].Region = "b"
		cfg.Logger = slog.New(slog.NewTextHandler(&buf, nil))
		rt, err := Open(cfg)
		if err != nil {
			t.Fatal(err)
		}
		rt.Close()
		if !strings.Contains(buf.String(), "no reader in the local region") {
			t.Errorf("log: %q", buf.String())
		}
		if rt.Stats().LocalReaders != 0 {
			t.Errorf("LocalReaders = %d", rt.Stats().LocalReaders)
		}
	})
	t.Run("zero config with a writer", func(t *testing.T) {
		rt, err := Open(Config{Writer: Endpoint{DSN: dsn}})
		if err != nil {
			t.Fatal(err)
		}
		if err := rt.Close(); err != nil {
			t.Fatal(err)
		}
		if err := rt.Close(); err != nil {
			t.Fatalf("second Close: %v", err)
		}
		if _, err := rt.ExecContext(t.Context(), "DELETE FROM t"); !errors.Is(err, ErrClosed) {
			t.Errorf("Exec after Close: %v", err)
		}
	})
	t.Run("key redacted", func(t *testing.T) {
		k := TokenKey{ID: 1, Secret: []byte("supersecretsupersecret")}
		var buf bytes.Buffer
		slog.New(slog.NewTextHandler(&buf, nil)).Info("k", "key", k, "ep", Endpoint{Name: "w", DSN: dsn})
		if s := buf.String() + k.String(); strings.Contains(s, "supersecret") || strings.Contains(s, "secretpw") {
			t.Errorf("secret in %q", s)
		}
	})
}
