package dbrouter

import "errors"

// ErrClosed is returned by the methods of a [Router] after [Router.Close].
var ErrClosed = errors.New("dbrouter: router is closed")

// ErrOutcomeUnknown is matched (with [errors.Is]) by the error of a statement
// whose effect on the writer is unknown: the connection was lost after the
// statement may have reached the server, or it was lost inside a transaction
// or during its commit. The router never retries such a statement; the
// caller must find out (for example by reading the row back, or by making the
// write idempotent) before trying again. The error also unwraps to its cause.
var ErrOutcomeUnknown = errors.New("dbrouter: outcome unknown")

// ErrNoWriter is returned when the writer cannot be reached and a search of
// the configured endpoints found no writable server (or could not finish in
// its timeout), for example while a failover is still promoting a replica.
var ErrNoWriter = errors.New("dbrouter: no writable server")

// ErrOverloaded is matched (with [errors.Is]) by the error of a statement
// that an endpoint refused because it reached a capacity limit (MySQL errors
// 1040 too many connections, 1203 max_user_connections, 1226 a resource
// limit, 1041 out of resources, 1637 too many transactions). The server is
// alive and the statement did not run: the router neither excludes the
// endpoint nor searches for another writer, which would only add
// connections to a full server. Retry later, with back-off; the error also
// unwraps to the driver's error.
var ErrOverloaded = errors.New("dbrouter: endpoint overloaded")

// ErrInvalidConfig is matched (with [errors.Is]) by the error [Open] returns
// for a Config that fails validation; the error is a [*ConfigError] naming
// the field.
var ErrInvalidConfig = errors.New("dbrouter: invalid config")

// ErrInvalidToken is matched by the error of [Router.WithToken] for a token
// that is corrupt, forged (bad signature or unknown key) or expired. The
// router's own HTTP middleware never returns it: it ignores such a token and
// counts it in [Stats].TokensRejected.
var ErrInvalidToken = errors.New("dbrouter: invalid token")

// ConfigError describes one invalid field of a [Config]. Its message never
// contains a DSN or secret.
type ConfigError struct {
	// Field is the Go path of the field, such as "Writer.DSN" or
	// "Readers[2].Region".
	Field string
	// Reason says what is wrong with it.
	Reason string
	// Err is the underlying error, if any (such as the DSN parser's).
	Err error
}

// Error returns "dbrouter: invalid config: <field>: <reason>[: <cause>]".
func (e *ConfigError) Error() string {
	s := "dbrouter: invalid config: " + e.Field + ": " + e.Reason
	if e.Err != nil {
		s += ": " + e.Err.Error()
	}
	return s
}

// Unwrap returns the underlying error.
func (e *ConfigError) Unwrap() error { return e.Err }

// Is reports whether target is [ErrInvalidConfig].
func (e *ConfigError) Is(target error) bool { return target == ErrInvalidConfig }

// EndpointError is an error of one endpoint that the router reports itself
// (a ping). Its message names the endpoint, never its DSN.
type EndpointError struct {
	Endpoint string // endpoint name
	Op       string // what failed, such as "ping"
	Err      error
}

// Error names the endpoint and the operation, never the DSN.
func (e *EndpointError) Error() string {
	return "dbrouter: " + e.Op + " " + e.Endpoint + ": " + e.Err.Error()
}

// Unwrap returns the driver's error.
func (e *EndpointError) Unwrap() error { return e.Err }
