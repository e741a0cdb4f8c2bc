package main

// The service's end-to-end test runs in internal/demo (TestDemo): it builds
// this binary and runs it per region against the local stack, configured by
// flags, because examples may not import internal/. The tests here need no
// servers.

import (
	"io"
	"strings"
	"testing"
)

func TestParseFlags(t *testing.T) {
	base := []string{"-region", "ap-northeast-1", "-writer", "u:p@tcp(127.0.0.1:3306)/db", "-memcached", "127.0.0.1:11211", "-token-key", "0123456789abcdef"}
	tests := []struct {
		name    string
		args    []string
		wantErr string
	}{
		{"minimal", base, ""},
		{"readers and remotes", append(append([]string{}, base...),
			"-reader", "ap-northeast-1=u:p@tcp(r1:3306)/db", "-reader", "us-east-1=u:p@tcp(r2:3306)/db",
			"-remote-memcached", "us-east-1=mc2:11211", "-remote-dynamodb", "us-east-1=http://ddb2"), ""},
		{"no region", base[2:], "-region is required"},
		{"no writer", []string{"-region", "x", "-memcached", "m", "-token-key", "0123456789abcdef"}, "-writer is required"},
		{"short key", append(append([]string{}, base[:6]...), "-token-key", "short"), "at least 16 bytes"},
		{"bad reader", append(append([]string{}, base...), "-reader", "nodsn"), "want region=value"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := parseFlags(tt.args, io.Discard)
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("parseFlags: %v", err)
				}
				if cfg.region == "" || cfg.writer == "" {
					t.Fatalf("config not filled: %+v", cfg)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("error %v, want one containing %q", err, tt.wantErr)
			}
		})
	}
}

func TestRegionValuesStringHidesValues(t *testing.T) {
	var v regionValues
	v.Set("us-east-1=user:secret@tcp(h:1)/db")
	if s := v.String(); strings.Contains(s, "secret") {
		t.Fatalf("String() leaks the DSN: %q", s)
	}
}
