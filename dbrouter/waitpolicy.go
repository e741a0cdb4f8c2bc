package dbrouter

import "time"

// readWaitBudget returns how long a read that needs need may wait on the
// local reader r (server-side, in the same round trip as the read: see
// readconn.go) before it is sent where need is known to be applied. Zero
// or less means: do not wait on r.
//
// The heuristic: r's recent lag with a margin, plus two poll intervals,
// capped by MaxWait (the bound the in-process wait uses).
func (rt *Router) readWaitBudget(r *reader, need *position) time.Duration {
	_ = need
	return min(time.Duration(r.recentLag.Load())*5/4+2*rt.cfg.PollInterval, rt.cfg.MaxWait)
}
