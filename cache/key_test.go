package cache

import (
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"strings"
	"testing"
)

// keyTests feeds TestStorageKey and the seeds of FuzzStorageKey.
var keyTests = []struct {
	name    string
	key     string
	hash    bool
	want    string // "" with wantErr; "#hash" for any hashed key
	wantErr bool
}{
	{name: "plain", key: "user:42", want: "user:42"},
	{name: "utf8", key: "ユーザー:42", want: "ユーザー:42"},
	{name: "max length", key: strings.Repeat("k", 250), want: strings.Repeat("k", 250)},
	{name: "empty", key: "", wantErr: true},
	{name: "empty hashed", key: "", hash: true, wantErr: true},
	{name: "too long", key: strings.Repeat("k", 251), wantErr: true},
	{name: "too long hashed", key: strings.Repeat("k", 251), hash: true, want: "#hash"},
	{name: "space", key: "user 42", wantErr: true},
	{name: "space hashed", key: "user 42", hash: true, want: "#hash"},
	{name: "newline", key: "user\r\n42", wantErr: true},
	{name: "control", key: "a\x00b", wantErr: true},
	{name: "del", key: "a\x7fb", hash: true, want: "#hash"},
	{name: "hash marker kept without hashing", key: "#user:42", want: "#user:42"},
	{name: "hash marker hashed", key: "#user:42", hash: true, want: "#hash"},
	{name: "a hashed form hashed again", key: "#" + strings.Repeat("A", 43), hash: true, want: "#hash"},
}

func TestStorageKey(t *testing.T) {
	for _, tt := range keyTests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := storageKey(tt.key, tt.hash)
			if tt.wantErr {
				var ke *KeyError
				if !errors.As(err, &ke) || !errors.Is(err, ErrInvalidKey) {
					t.Fatalf("storageKey(%q) error = %v, want a *KeyError wrapping ErrInvalidKey", tt.key, err)
				}
				if strings.Contains(err.Error(), tt.key) && tt.key != "" {
					t.Errorf("error %q contains the key", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if tt.want == "#hash" {
				if !strings.HasPrefix(got, "#") || len(got) != 44 || !legalKey(got) {
					t.Fatalf("hashed key %q, want '#' + 43 base64url bytes", got)
				}
				again, _ := storageKey(tt.key, true)
				if again != got {
					t.Fatalf("hash not deterministic: %q, %q", got, again)
				}
				return
			}
			if got != tt.want {
				t.Fatalf("storageKey(%q) = %q, want %q", tt.key, got, tt.want)
			}
		})
	}
}

func TestStorageKeyAllocs(t *testing.T) {
	if n := testing.AllocsPerRun(100, func() { storageKey("user:42:profile", false) }); n != 0 {
		t.Fatalf("storageKey allocates %v times for a legal key", n)
	}
}

// TestHashedKeyCollision: with HashKeys, the legal key spelling another
// key's hashed form does not reach that key's item.
func TestHashedKeyCollision(t *testing.T) {
	k := strings.Repeat("x", 300)
	hk, err := storageKey(k, true)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256([]byte(k))
	if want := "#" + base64.RawURLEncoding.EncodeToString(sum[:]); hk != want {
		t.Fatalf("hashed form %q, want %q", hk, want)
	}
	got, err := storageKey(hk, true)
	if err != nil || got == hk {
		t.Fatalf("storageKey(%q) = %q, %v: collides with the hashed key", hk, got, err)
	}
}
