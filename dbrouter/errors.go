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

// ErrPositionUnavailable is matched (with [errors.Is]) by the error of a
// read that must observe a replication position (a read-your-writes scope,
// a token, [Router.RequirePosition]) or be at most [WithMaxStaleness] stale,
// when no usable reader qualifies and the writer is known to be gone: the
// last writer search found no writable server. Until a writer is found again
// such a read does not wait [Config].MaxWait for a position that no
// surviving server may ever apply (the writes it must see may exist only on
// the servers that are gone): the readers get the time their lag allowed,
// counted from when the writer was found gone, to apply what they had
// received, and after that such reads fail at once. The error also matches
// [ErrNoWriter] and unwraps to the search's error. Reads that need nothing,
// and bounded-staleness reads that a reader is fresh enough for, are still
// served by the surviving readers.
var ErrPositionUnavailable = errors.New("dbrouter: no reachable server has what the read must observe")

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

// ErrMultiStatement is returned, before anything is sent, for a text that
// holds more than one statement (or whose statement count the router's
// lexer cannot tell in every sql_mode) on a pool where the router turned
// multiStatements on (see [Config].DisableCombinedStatements).
var ErrMultiStatement = errors.New("dbrouter: query holds more than one statement " +
	"(or text whose extent depends on the session's sql_mode); send one statement per call, " +
	"or set multiStatements=true in the DSN to allow several")

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

// positionUnavailableError is the error of a read that no reachable server
// can serve (see [ErrPositionUnavailable]).
type positionUnavailableError struct {
	search error // the last writer search's error (matches ErrNoWriter)
}

func (e *positionUnavailableError) Error() string {
	return ErrPositionUnavailable.Error() + ": " + e.search.Error()
}

func (e *positionUnavailableError) Is(target error) bool { return target == ErrPositionUnavailable }

func (e *positionUnavailableError) Unwrap() error { return e.search }

// ErrForwardingRestricted is matched (with [errors.Is]) by the error of a
// statement that the forwarding endpoint refused because Aurora's write
// forwarding does not support it (DDL, XA, SAVEPOINT, LOAD DATA, an
// isolation level other than REPEATABLE READ). The statement did not run:
// it is not an outcome-unknown failure. The router sends the statements it
// can recognise as restricted to the writer itself (see
// [Config].WriteForwarding), so this is seen only inside a forwarded
// transaction or for a statement the router could not classify. The error
// unwraps to the driver's error.
var ErrForwardingRestricted = errors.New("dbrouter: statement not supported by Aurora write forwarding")

// forwardRestrictedError is the error of a statement refused by forwarding.
type forwardRestrictedError struct {
	endpoint string
	err      error
}

func (e *forwardRestrictedError) Error() string {
	return ErrForwardingRestricted.Error() + " (" + e.endpoint + "): " + e.err.Error()
}
func (e *forwardRestrictedError) Unwrap() error        { return e.err }
func (e *forwardRestrictedError) Is(target error) bool { return target == ErrForwardingRestricted }

// ErrorType names the error for telemetry.
func (e *forwardRestrictedError) ErrorType() string { return "forwarding_restricted" }
