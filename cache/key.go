package cache

import (
	"crypto/sha256"
	"encoding/base64"
	"strconv"
)

// maxKeyLen is memcached's key length limit in the text protocol.
const maxKeyLen = 250

// hashedKeyPrefix starts every hashed key. With [Config.HashKeys], a
// caller's key that starts with it is hashed too, so no caller's key can
// equal another key's hashed form.
const hashedKeyPrefix = "#"

// storageKey returns the memcached key for key: key itself when memcached
// can store it (and, with hash, it does not start with hashedKeyPrefix),
// its hash when hash is true, or a *KeyError.
// It does not allocate for a legal key.
func storageKey(key string, hash bool) (string, error) {
	if key == "" {
		return "", &KeyError{Key: key, Reason: "empty"}
	}
	reason := ""
	if len(key) > maxKeyLen {
		reason = "longer than 250 bytes"
	} else {
		for i := 0; i < len(key); i++ {
			if b := key[i]; b <= ' ' || b == 0x7f {
				reason = "contains a space or control character at byte " + strconv.Itoa(i)
				break
			}
		}
	}
	if reason == "" && !(hash && key[0] == hashedKeyPrefix[0]) {
		return key, nil
	}
	if !hash {
		return "", &KeyError{Key: key, Reason: reason}
	}
	sum := sha256.Sum256([]byte(key))
	return hashedKeyPrefix + base64.RawURLEncoding.EncodeToString(sum[:]), nil
}

// legalKey reports whether memcached can store k as is.
func legalKey(k string) bool {
	if k == "" || len(k) > maxKeyLen {
		return false
	}
	for i := 0; i < len(k); i++ {
		if b := k[i]; b <= ' ' || b == 0x7f {
			return false
		}
	}
	return true
}
