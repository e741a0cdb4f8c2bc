package main

// HTTP plumbing of the handlers: errors into JSON responses, JSON bodies,
// path ids.

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"

	"github.com/regiondb/regiondb/dbrouter"
)

// httpError is an error with the status and message the client gets.
type httpError struct {
	status int
	msg    string
}

func (e *httpError) Error() string { return e.msg }

func errorf(status int, format string, args ...any) error {
	return &httpError{status: status, msg: fmt.Sprintf(format, args...)}
}

// errors turns a handler's error into a JSON error response; unexpected
// errors are logged and answered with a bare 500 or 503.
func (a *app) errors(h func(http.ResponseWriter, *http.Request) error) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		err := h(w, r)
		if err == nil {
			return
		}
		var he *httpError
		switch {
		case errors.As(err, &he):
		case errors.Is(err, sql.ErrNoRows):
			he = &httpError{http.StatusNotFound, "not found"}
		case errors.Is(err, context.Canceled):
			return
		case errors.Is(err, dbrouter.ErrOutcomeUnknown):
			// The write may or may not have committed (the connection
			// broke after it was sent): say so rather than invite a
			// blind retry.
			a.log.WarnContext(r.Context(), "write outcome unknown", "route", r.Pattern, "error", err)
			he = &httpError{http.StatusServiceUnavailable, "the outcome of this change is unknown: reload before retrying"}
		case errors.Is(err, dbrouter.ErrNoWriter):
			a.log.WarnContext(r.Context(), "no writer (failover?)", "route", r.Pattern, "error", err)
			w.Header().Set("Retry-After", "1")
			he = &httpError{http.StatusServiceUnavailable, "temporarily unavailable"}
		default:
			a.log.ErrorContext(r.Context(), "request failed", "route", r.Pattern, "error", err)
			he = &httpError{http.StatusServiceUnavailable, "temporarily unavailable"}
		}
		writeJSON(w, he.status, map[string]string{"error": he.msg})
	})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

func readJSON(r *http.Request, v any) error {
	dec := json.NewDecoder(http.MaxBytesReader(nil, r.Body, 64<<10))
	if err := dec.Decode(v); err != nil {
		return errorf(http.StatusBadRequest, "bad JSON body")
	}
	return nil
}

// readName reads a body {"name": ...} whose name must not be empty.
func readName(r *http.Request) (string, error) {
	var in struct{ Name string }
	if err := readJSON(r, &in); err != nil {
		return "", err
	}
	if in.Name == "" {
		return "", errorf(http.StatusBadRequest, "name is required")
	}
	return in.Name, nil
}

func pathID(r *http.Request) (int64, error) {
	id, err := strconv.ParseInt(r.PathValue("id"), 10, 64)
	if err != nil || id <= 0 {
		return 0, errorf(http.StatusNotFound, "not found")
	}
	return id, nil
}
