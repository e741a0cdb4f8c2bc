package dbrouter

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"
)

// TestSamplerAfter checks what bounds a read: only a position read by a
// query that started at or after the given time; concurrent callers share
// one query; a caller whose time is after the query in flight started does
// not use it.
func TestSamplerAfter(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var s sampler
		var queries atomic.Uint64
		release := make(chan struct{})
		q := func(context.Context) (*position, error) {
			n := queries.Add(1)
			<-release
			return newPosition([]posPart{{key: domainKey(0), seq: 100 + n}}), nil
		}
		ctx := context.Background()
		s.record(newPosition([]posPart{{key: domainKey(0), seq: 1}}), time.Now().Add(-time.Millisecond))
		after := time.Now()

		var wg sync.WaitGroup
		got := make([]*position, 3)
		for i := range got {
			wg.Go(func() {
				p, err := s.after(ctx, after, q)
				if err != nil {
					t.Error(err)
				}
				got[i] = p
			})
		}
		synctest.Wait()
		if n := queries.Load(); n != 1 {
			t.Fatalf("%d queries for three concurrent callers, want 1 (the recorded sample is older than they need)", n)
		}
		// A caller that needs a position read after the query in flight
		// started must not share it.
		time.Sleep(time.Millisecond)
		later := time.Now()
		var late *position
		wg.Go(func() { late, _ = s.after(ctx, later, q) })
		synctest.Wait()
		if n := queries.Load(); n != 2 {
			t.Fatalf("%d queries, want 2", n)
		}
		close(release)
		wg.Wait()
		for i, p := range got {
			if p.String() != "0:101" {
				t.Errorf("caller %d got %s, want 0:101", i, p)
			}
		}
		if late.String() != "0:102" {
			t.Errorf("late caller got %s, want 0:102", late)
		}
		// Now a recorded sample newer than the time asked serves without a
		// query.
		if p, _ := s.after(ctx, later, q); p.String() != "0:102" || queries.Load() != 2 {
			t.Errorf("got %s after %d queries, want the recorded 0:102 and no query", p, queries.Load())
		}
	})
}
