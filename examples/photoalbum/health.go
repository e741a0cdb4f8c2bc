package main

import (
	"context"
	"net/http"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/bradfitz/gomemcache/memcache"

	"github.com/regiondb/regiondb/dbrouter"
)

// healthTimeout bounds each backend check of GET /healthz.
const healthTimeout = time.Second

// backendState is one backend's state in GET /healthz.
type backendState struct {
	// State is "ok" or "down".
	State string `json:"state"`
	// Target says what was checked (no credentials).
	Target string `json:"target"`
	// Error is why it is down.
	Error string `json:"error,omitempty"`
	// Writer is the database endpoint writes go to.
	Writer string `json:"writer,omitempty"`
}

// healthChecks checks every backend the instance uses, concurrently, each
// within healthTimeout. The keys name the backend and its region.
type healthChecks map[string]func(ctx context.Context) backendState

func newHealthChecks(router *dbrouter.Router, ddb map[string]*dynamodb.Client, table string, mc map[string]*memcache.Client) healthChecks {
	h := healthChecks{}
	h["database"] = func(ctx context.Context) backendState {
		st := backendState{State: "ok", Target: "writer and every reader", Writer: router.Stats().Writer}
		if err := router.PingContext(ctx); err != nil {
			st.State, st.Error = "down", err.Error()
		}
		return st
	}
	for r, c := range ddb {
		h["dynamodb "+r] = func(ctx context.Context) backendState {
			st := backendState{State: "ok", Target: "table " + table + " in " + r}
			if _, err := c.DescribeTable(ctx, &dynamodb.DescribeTableInput{TableName: aws.String(table)}); err != nil {
				st.State, st.Error = "down", err.Error()
			}
			return st
		}
	}
	for r, c := range mc {
		h["memcached "+r] = func(ctx context.Context) backendState {
			st := backendState{State: "ok", Target: "memcached of " + r}
			// gomemcache has no context: its own Timeout bounds the ping.
			if err := c.Ping(); err != nil {
				st.State, st.Error = "down", err.Error()
			}
			return st
		}
	}
	return h
}

// serve answers GET /healthz: 200 with "status":"ok" when every backend
// answers, 503 with "status":"degraded" when one does not, and per backend
// its state.
func (h healthChecks) serve(w http.ResponseWriter, r *http.Request, region string, describe map[string]string) {
	ctx, cancel := context.WithTimeout(r.Context(), healthTimeout)
	defer cancel()
	states := make(map[string]backendState, len(h))
	var mu sync.Mutex
	var wg sync.WaitGroup
	for name, check := range h {
		wg.Go(func() {
			st := check(ctx)
			mu.Lock()
			states[name] = st
			mu.Unlock()
		})
	}
	wg.Wait()
	status, code := "ok", http.StatusOK
	for _, st := range states {
		if st.State != "ok" {
			status, code = "degraded", http.StatusServiceUnavailable
		}
	}
	writeJSON(w, code, map[string]any{"status": status, "region": region, "backends": describe, "state": states})
}
