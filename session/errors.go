package session

import (
	"errors"
	"fmt"
)

// ErrInvalidConfig is matched (with [errors.Is]) by the error [New] and
// [NewStore] return for a Config that fails validation; the error is a
// [*ConfigError] naming the field.
var ErrInvalidConfig = errors.New("session: invalid config")

// ConfigError describes one invalid field of a [Config].
type ConfigError struct {
	// Field is the name of the field, such as "Table" or
	// `Clients["us-east-1"]`.
	Field string
	// Reason says what is wrong with it.
	Reason string
	// Err is the underlying error, if any.
	Err error
}

// Error returns "session: invalid config: <field>: <reason>[: <cause>]".
func (e *ConfigError) Error() string {
	s := "session: invalid config: " + e.Field + ": " + e.Reason
	if e.Err != nil {
		s += ": " + e.Err.Error()
	}
	return s
}

// Unwrap returns the underlying error.
func (e *ConfigError) Unwrap() error { return e.Err }

// Is reports whether target is [ErrInvalidConfig].
func (e *ConfigError) Is(target error) bool { return target == ErrInvalidConfig }

// ErrNoMiddleware is returned by the [Manager] accessors when the request's
// context did not pass through that Manager's [Manager.Middleware].
var ErrNoMiddleware = errors.New("session: no session in the context (is the handler wrapped by Manager.Middleware?)")

// ErrUnavailable wraps the store error when DynamoDB could not be reached
// (or kept throttling) after the SDK's bounded retries. Under the default
// failure policy the middleware then answers 503 Service Unavailable.
var ErrUnavailable = errors.New("session: session store unavailable")

// ErrConflict is returned when a session could not be saved because other
// requests kept changing it: the save was retried [Config.MaxConflictRetries]
// times. The change was not stored and the request fails (no silent loss).
var ErrConflict = errors.New("session: too many concurrent changes to the session")

// ErrTooLarge is returned, before anything is written, when a value would
// make the session's DynamoDB item exceed [MaxItemSize]. It is wrapped in a
// [*SizeError].
var ErrTooLarge = errors.New("session: session too large for a DynamoDB item")

// ErrDestroyed is returned by [Manager.Put] and [Manager.RenewToken] after
// [Manager.Destroy] in the same request.
var ErrDestroyed = errors.New("session: session destroyed in this request")

// SizeError reports an item that would exceed DynamoDB's item size limit.
type SizeError struct {
	// Key is the session key whose value was being set, or "" for a whole
	// item (Store.CommitCtx, or a merge after a conflict).
	Key string
	// Size is the item's size in bytes as DynamoDB counts it.
	Size int
}

func (e *SizeError) Error() string {
	if e.Key == "" {
		return fmt.Sprintf("session: item of %d bytes exceeds DynamoDB's limit of %d bytes", e.Size, MaxItemSize)
	}
	return fmt.Sprintf("session: setting key %q makes the item %d bytes, over DynamoDB's limit of %d bytes", e.Key, e.Size, MaxItemSize)
}

// Unwrap returns [ErrTooLarge].
func (e *SizeError) Unwrap() error { return ErrTooLarge }
