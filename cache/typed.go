package cache

import (
	"context"
	"encoding/json"
	"fmt"
)

// Codec converts values of type T to and from the bytes stored in memcached.
// Implementations must be safe for concurrent use; Unmarshal must not keep
// data after it returns.
type Codec[T any] interface {
	Marshal(v T) ([]byte, error)
	Unmarshal(data []byte) (T, error)
}

// JSON is the [Codec] that encodes with encoding/json.
type JSON[T any] struct{}

// Marshal implements [Codec].
func (JSON[T]) Marshal(v T) ([]byte, error) { return json.Marshal(v) }

// Unmarshal implements [Codec].
func (JSON[T]) Unmarshal(data []byte) (T, error) {
	var v T
	err := json.Unmarshal(data, &v)
	return v, err
}

// Typed is a typed view of a [Cache]: its Get loads and returns T, encoded
// with Codec. A Typed is a small value; make one per record type and share
// it. It is safe for concurrent use if its Codec is.
type Typed[T any] struct {
	// Cache is the underlying cache. Required.
	Cache *Cache
	// Codec encodes values. If nil, JSON[T].
	Codec Codec[T]
}

// Get is [Cache.Get] for values of type T; it returns [ErrNilLoader] if
// Cache or load is nil. A value loaded by this call is returned as the
// loader gave it; a cached value that Codec cannot decode (for instance
// written by an older version of the type) is reloaded with load and
// returned without being cached.
func (t Typed[T]) Get(ctx context.Context, key string, load func(ctx context.Context) (T, error)) (T, error) {
	var zero T
	if t.Cache == nil || load == nil {
		return zero, ErrNilLoader
	}
	codec := t.Codec
	if codec == nil {
		codec = JSON[T]{}
	}
	var (
		loaded bool
		lv     T
	)
	b, err := t.Cache.Get(ctx, key, func(ctx context.Context) ([]byte, error) {
		v, err := load(ctx)
		if err != nil {
			return nil, err
		}
		loaded, lv = true, v
		b, err := codec.Marshal(v)
		if err != nil {
			return nil, fmt.Errorf("cache: encode value: %w", err)
		}
		return b, nil
	})
	if err != nil {
		return zero, err
	}
	if loaded {
		return lv, nil
	}
	v, derr := codec.Unmarshal(b)
	if derr == nil {
		return v, nil
	}
	t.Cache.tel.fault(ctx, "codec")
	return load(ctx)
}
