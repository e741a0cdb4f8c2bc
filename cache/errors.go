package cache

import (
	"errors"
	"strconv"
)

var (
	// ErrClosed is returned by every method of a [Cache] after [Cache.Close].
	ErrClosed = errors.New("cache: closed")

	// ErrNotFound is returned by a loader to say that the record does not
	// exist. When [Config.NegativeTTL] is positive the absence is cached, and
	// [Cache.Get] returns ErrNotFound (from the cache or the loader) until the
	// negative entry expires or the key is invalidated.
	ErrNotFound = errors.New("cache: not found")

	// ErrInvalidKey is wrapped by the [*KeyError] that [Cache.Get] and
	// [Cache.Invalidate] return for a key memcached cannot store (empty, over
	// 250 bytes, or containing spaces or control characters) when
	// [Config.HashKeys] is false, and for an empty key always.
	ErrInvalidKey = errors.New("cache: invalid key")

	// ErrNilLoader is returned by [Cache.Get] when the loader is nil.
	ErrNilLoader = errors.New("cache: nil loader")

	// ErrLoaderPanic is returned by [Cache.Get] to callers that joined
	// another caller's load of the same key when that loader panicked. The
	// panic itself continues in the caller whose Get ran the loader.
	ErrLoaderPanic = errors.New("cache: loader panicked in a concurrent Get of the key")

	// errCorrupt reports an item in memcached that this package did not write
	// (or a newer, incompatible version wrote). It never reaches callers: the
	// item is treated as a miss and replaced.
	errCorrupt = errors.New("cache: corrupt item")
)

// KeyError reports a key that memcached cannot store. It wraps [ErrInvalidKey].
// The key itself is not part of the message (keys may hold user data); use
// the Key field.
type KeyError struct {
	// Key is the rejected key.
	Key string
	// Reason says what is wrong with it ("empty", "longer than 250 bytes",
	// "contains a space or control character at byte N").
	Reason string
}

// Error implements error.
func (e *KeyError) Error() string {
	return "cache: invalid key (" + strconv.Itoa(len(e.Key)) + " bytes): " + e.Reason + " (set Config.HashKeys to hash such keys)"
}

// Unwrap returns [ErrInvalidKey].
func (e *KeyError) Unwrap() error { return ErrInvalidKey }

// ErrInvalidConfig is matched (with [errors.Is]) by the error [New] returns
// for a Config that fails validation; the error is a [*ConfigError] naming
// the field.
var ErrInvalidConfig = errors.New("cache: invalid config")

// ConfigError reports an invalid [Config] field given to [New]. It matches
// [ErrInvalidConfig].
type ConfigError struct {
	// Field names the Config field, e.g. "Client" or "Remotes[1].Client".
	Field string
	// Reason says what is wrong with it.
	Reason string
	// Err is the underlying error, if any.
	Err error
}

// Error returns "cache: invalid config: <field>: <reason>[: <cause>]".
func (e *ConfigError) Error() string {
	s := "cache: invalid config: " + e.Field + ": " + e.Reason
	if e.Err != nil {
		s += ": " + e.Err.Error()
	}
	return s
}

// Unwrap returns the underlying error.
func (e *ConfigError) Unwrap() error { return e.Err }

// Is reports whether target is [ErrInvalidConfig].
func (e *ConfigError) Is(target error) bool { return target == ErrInvalidConfig }
