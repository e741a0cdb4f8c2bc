package dbrouter

import (
	"bytes"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"testing"
)

// TestRedactEveryFormat prints an Endpoint, a TokenKey and a whole Config
// in every way a program may (fmt verbs, json.Marshal, slog with the JSON
// and text handlers) and checks that neither the DSN's password nor the
// key's secret (in any encoding fmt or json uses for []byte) shows.
func TestRedactEveryFormat(t *testing.T) {
	const password = "pw-Secret-1234"
	secret := []byte("tokensecret-0123456789")
	ep := Endpoint{Name: "m1", DSN: "app:" + password + "@tcp(127.0.0.1:3306)/db", Region: "a"}
	bad := Endpoint{Name: "m2", DSN: "app:" + password + "@nonsense(", Region: "a"}
	key := TokenKey{ID: 7, Secret: secret}
	cfg := Config{Region: "a", Writer: ep, Readers: []Endpoint{ep, bad}, TokenKeys: []TokenKey{key}}
	leaks := []string{password, string(secret), fmt.Sprint([]byte(secret)), hex.EncodeToString(secret),
		base64.StdEncoding.EncodeToString(secret), fmt.Sprintf("%q", secret)}
	check := func(t *testing.T, what, out string) {
		t.Helper()
		for _, l := range leaks {
			if strings.Contains(out, l) {
				t.Errorf("%s leaks %q: %s", what, l, out)
			}
		}
	}
	values := map[string]any{"Endpoint": ep, "*Endpoint": &ep, "malformed DSN": bad, "TokenKey": key, "*TokenKey": &key,
		"[]TokenKey": []TokenKey{key}, "Config": cfg, "*Config": &cfg}
	for name, v := range values {
		t.Run(name, func(t *testing.T) {
			for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%q", "%x", "%X", "%d", "%T %[1]v"} {
				check(t, verb, fmt.Sprintf(verb, v))
			}
			check(t, "Sprint", fmt.Sprint(v))
			b, err := json.Marshal(v)
			if err != nil {
				t.Fatalf("json.Marshal: %v", err)
			}
			check(t, "json", string(b))
			for hname, h := range map[string]func(*bytes.Buffer) slog.Handler{
				"json": func(b *bytes.Buffer) slog.Handler { return slog.NewJSONHandler(b, nil) },
				"text": func(b *bytes.Buffer) slog.Handler { return slog.NewTextHandler(b, nil) },
			} {
				var buf bytes.Buffer
				slog.New(h(&buf)).Info("x", slog.Any("v", v), "w", v)
				check(t, "slog "+hname, buf.String())
			}
		})
	}
	// What is shown is still useful.
	if s := fmt.Sprint(ep); !strings.Contains(s, "app:REDACTED@tcp(127.0.0.1:3306)/db") || !strings.Contains(s, "m1") {
		t.Errorf("Endpoint prints %s", s)
	}
	if s := fmt.Sprintf("%#v", key); s != "dbrouter.TokenKey{ID:7, Secret:REDACTED}" {
		t.Errorf("TokenKey %%#v prints %s", s)
	}
	if b, _ := json.Marshal(key); string(b) != `{"ID":7,"Secret":"REDACTED"}` {
		t.Errorf("TokenKey JSON %s", b)
	}
}
