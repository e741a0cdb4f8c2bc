package demo

import (
	"context"
	"fmt"
	"sync"
	"time"
)

// faultError is a fault the scenario could not inject: the run fails, since
// its figures would describe another scenario than the one reported.
func faultError(what string, err error) error {
	return fmt.Errorf("demo: fault injection failed: %s: %w", what, err)
}

// failover kills the writer, promotes r1 after a second, and measures per
// region the time from the kill to the first acknowledged write.
func (d *driver) failover(ctx context.Context, c *cast) error {
	d.faulted = true
	d.failoverAt = time.Since(d.rec.start)
	rec, promoted, call, err := d.writerLoss(ctx, c, "writer m1 killed (kill -9)",
		func(ctx context.Context) error { return d.s.Kill(ctx, "m1") }, "r1")
	d.recovery, d.promotedMS, d.promoteCallMS = rec, promoted, call
	return err
}

// regionalOutages plays the outages RegionalOutages adds: us-east-1's
// DynamoDB down for 10 s, then Tokyo's databases down and r2 promoted.
func (d *driver) regionalOutages(ctx context.Context, c *cast, step func(sec float64) error) error {
	d.faulted = true
	d.mark("N. Virginia's DynamoDB (ddb2) down for 10 s", true)
	if err := d.s.Stop(ctx, "ddb2"); err != nil {
		return faultError("stop ddb2", err)
	}
	if err := step(48); err != nil {
		return err
	}
	if err := d.s.Start(ctx, "ddb2"); err != nil {
		return faultError("start ddb2", err)
	}
	d.mark("N. Virginia's DynamoDB (ddb2) back", false)
	d.story(ctx, c, "photos after N. Virginia's DynamoDB outage")
	if err := step(52); err != nil {
		return err
	}
	rec, _, _, err := d.writerLoss(ctx, c, "Tokyo's databases down (writer and r1 killed)",
		func(ctx context.Context) error { return d.s.KillRegion(ctx, tokyo) }, "r2")
	d.regionLossRecovery = rec
	if err != nil {
		return err
	}
	d.story(ctx, c, "photos after r2 was promoted in N. Virginia")
	return step(64)
}

// writerLoss takes the writer away with kill, promotes the replica after a
// second (standing in for failure detection), and returns per region the ms
// from the kill to the first acknowledged write (-1: none within 60 s), when
// the promotion began and how long the stack's promote call took.
func (d *driver) writerLoss(ctx context.Context, c *cast, label string, kill func(context.Context) error, promote string) (map[string]float64, float64, float64, error) {
	recovered := map[string]time.Duration{}
	var mu sync.Mutex
	killAt := time.Now()
	d.mark(label, true)
	if err := kill(ctx); err != nil {
		return nil, 0, 0, faultError(label, err)
	}
	pctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	var wg sync.WaitGroup
	defer func() {
		cancel()
		wg.Wait()
	}()
	for region, p := range c.probes {
		wg.Go(func() {
			for pctx.Err() == nil {
				if _, ok := d.addPhotos(pctx, p, region, 1, nil); ok {
					mu.Lock()
					recovered[region] = time.Since(killAt)
					mu.Unlock()
					d.logf("%s (%s) writes again, %.0f ms after the kill", region, regionNames[region], time.Since(killAt).Seconds()*1000)
					return
				}
				select {
				case <-pctx.Done():
				case <-time.After(50 * time.Millisecond):
				}
			}
		})
	}
	select {
	case <-ctx.Done():
		return nil, 0, 0, ctx.Err()
	case <-time.After(time.Second):
	}
	d.mark("replica "+promote+" promoted to writer", true)
	promotedMS := float64(time.Since(killAt).Microseconds()) / 1000
	if err := d.s.Promote(ctx, promote); err != nil {
		return nil, 0, 0, faultError("promote "+promote, err)
	}
	callMS := float64(time.Since(killAt).Microseconds())/1000 - promotedMS
	wg.Wait()
	out := map[string]float64{}
	for region := range c.probes {
		if t, ok := recovered[region]; ok {
			out[region] = float64(t.Microseconds()) / 1000
		} else {
			out[region] = -1
		}
	}
	return out, promotedMS, callMS, nil
}
