package cache

import (
	"testing"
	"testing/synctest"
	"time"
)

func TestBreaker(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := &breaker{threshold: 3, cooldown: time.Second}
		for i := range 2 {
			if b.failure() || !b.allow() {
				t.Fatalf("breaker opened after %d faults", i+1)
			}
		}
		b.success() // resets the count
		b.failure()
		b.failure()
		if !b.allow() {
			t.Fatal("breaker opened although a success reset the count")
		}
		if !b.failure() {
			t.Fatal("third consecutive fault did not open the breaker")
		}
		if b.allow() {
			t.Fatal("open breaker allowed a call")
		}
		time.Sleep(time.Second + time.Millisecond) // fake time
		if !b.allow() {
			t.Fatal("no probe after the cooldown")
		}
		if b.allow() {
			t.Fatal("a second call allowed while the probe is in flight")
		}
		if b.failure() {
			t.Fatal("a failed probe reported a fresh opening")
		}
		if b.allow() {
			t.Fatal("breaker closed after a failed probe")
		}
		time.Sleep(time.Second + time.Millisecond)
		if !b.allow() {
			t.Fatal("no second probe")
		}
		// A probe whose outcome is never recorded does not wedge the breaker.
		time.Sleep(time.Second + time.Millisecond)
		if !b.allow() {
			t.Fatal("breaker wedged by a probe without outcome")
		}
		if !b.success() {
			t.Fatal("successful probe did not close the breaker")
		}
		if !b.allow() || !b.allow() {
			t.Fatal("closed breaker refused calls")
		}
	})
}
