package dbrouter

import (
	"context"
	"database/sql"
	"errors"
	"log/slog"
	"slices"
	"time"
)

// DefaultAuroraTopologyInterval is the period of the topology refresh of a
// router opened with [OpenAurora]: it reads the cluster's topology at most
// once per interval (earlier when a writer search asks for it, but never
// twice within one interval).
const DefaultAuroraTopologyInterval = 10 * time.Second

// auroraState is what OpenAurora keeps for the topology refresh.
type auroraState struct {
	builder   *auroraBuilder
	interval  time.Duration
	defRegion string
	dbSystem  string
	kick      chan struct{} // asks for an early refresh; capacity 1
	reads     int64         // topology reads done (refresh goroutine only; tests read it after Close)
}

// kickTopology asks the topology refresh (if any) to read the topology as
// soon as its interval allows. It does not wait.
func (rt *Router) kickTopology() {
	if a := rt.aurora; a != nil {
		select {
		case a.kick <- struct{}{}:
		default:
		}
	}
}

// refreshTopology runs OpenAurora's topology refresh until ctx is done: it
// reads the topology at most once per interval (earlier when kicked by a
// writer search, but never twice within one interval), through a pooled
// connection of a local reader, else the writer, else another region's
// reader. Instances that joined become readers (with a monitor each) and
// writer candidates; readers whose instance left the topology get no reads
// (and get them again if it comes back); a writer other than the current
// one starts a writer search.
func (rt *Router) refreshTopology(ctx context.Context) {
	a := rt.aurora
	t := time.NewTimer(a.interval)
	defer t.Stop()
	last := time.Now()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-a.kick:
			if wait := time.Until(last.Add(a.interval)); wait > 0 {
				if !t.Stop() {
					select {
					case <-t.C:
					default:
					}
				}
				t.Reset(wait)
				select {
				case <-ctx.Done():
					return
				case <-t.C:
				}
			}
		}
		last = time.Now()
		topo, err := rt.readTopologyPooled(ctx)
		if err == nil {
			rt.applyTopology(ctx, topo)
		} else if ctx.Err() == nil {
			rt.cfg.Logger.LogAttrs(ctx, slog.LevelWarn, "dbrouter: Aurora topology refresh failed", slog.String("error", err.Error()))
		}
		if !t.Stop() {
			select {
			case <-t.C:
			default:
			}
		}
		t.Reset(a.interval)
	}
}

// readTopologyPooled reads the topology on a pooled connection: of a local
// reader, else the writer, else another region's reader.
func (rt *Router) readTopologyPooled(ctx context.Context) (*auroraTopology, error) {
	rt.aurora.reads++
	set := rt.rset.Load()
	var dbs []*sql.DB
	for _, r := range set.all[:set.nLocal] {
		if r.healthy.Load() && !r.removed.Load() {
			dbs = append(dbs, r.db)
		}
	}
	dbs = append(dbs, rt.wdb())
	for _, r := range set.all[set.nLocal:] {
		if r.healthy.Load() && !r.removed.Load() {
			dbs = append(dbs, r.db)
		}
	}
	var errs []error
	for _, db := range dbs {
		t, err := readAuroraTopologyDB(ctx, db, rt.aurora.defRegion)
		if err == nil {
			return t, nil
		}
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		errs = append(errs, err)
	}
	return nil, errors.Join(errs...)
}

// applyTopology brings the reader set and the writer candidates in line
// with t. An instance that joined becomes a writer candidate (so that a
// failover to it is found) and, unless it is the writer, a reader.
func (rt *Router) applyTopology(ctx context.Context, t *auroraTopology) {
	a := rt.aurora
	set := rt.rset.Load()
	listed := map[string]bool{}
	for _, id := range t.order {
		listed[id] = true
	}
	known := map[string]bool{}
	for _, r := range set.all {
		known[r.spec.Name] = true
		gone := !listed[r.spec.Name]
		if r.removed.Swap(gone) != gone {
			msg := "dbrouter: Aurora instance left the topology: no more reads"
			if !gone {
				msg = "dbrouter: Aurora instance is back in the topology"
			}
			rt.cfg.Logger.LogAttrs(ctx, slog.LevelWarn, msg, slog.String("instance", r.spec.Name))
			rt.changed.broadcast()
		}
	}
	cur := rt.curWriter().spec.Name
	var local, remote []*reader
	for _, id := range t.order {
		if known[id] || id == cur || (id == t.writer && rt.cfg.auroraJoinedReadOnly) {
			continue
		}
		ep, err := a.builder.endpoint(id, t.regions[id])
		if err != nil {
			continue // no pattern for its region, or not a host label
		}
		spec := endpointSpec{Endpoint: ep, connector: ep.Connector}
		tel := endpointTel(a.dbSystem, spec)
		cand, rtt := -1, (*rttStat)(nil)
		if !rt.cfg.auroraJoinedReadOnly {
			cand, rtt, tel = rt.addWriterCandidate(spec, tel)
		}
		if id == t.writer {
			continue // a writer candidate (found by the search below), not a reader
		}
		r := &reader{endpointDB: endpointDB{spec: spec, db: sql.OpenDB(failureConnector{spec.connector, &rt.stats.connsOpened, rtt}),
			local: ep.Region == rt.cfg.Region}, kick: make(chan struct{}, 1), cand: cand, tel: tel}
		rt.cfg.ReaderPool.apply(r.db)
		r.healthy.Store(true)
		if r.local {
			local = append(local, r)
		} else {
			remote = append(remote, r)
		}
		rt.cfg.Logger.LogAttrs(ctx, slog.LevelInfo, "dbrouter: Aurora instance joined the topology: now a reader",
			slog.String("instance", id), slog.String("region", ep.Region))
	}
	// After the loop, so that the search probes the instances that joined.
	if t.writer != "" && t.writer != cur {
		rt.search.kick() // the writer moved: confirm among the instances
	}
	if len(local)+len(remote) == 0 {
		return
	}
	next := &readerSet{nLocal: set.nLocal + len(local)}
	next.all = append(next.all, set.all[:set.nLocal]...)
	next.all = append(next.all, local...)
	next.all = append(next.all, set.all[set.nLocal:]...)
	next.all = append(next.all, remote...)
	rt.rset.Store(next)
	// This goroutine is one of rt.wg's, so adding to it here cannot race
	// with Close's Wait reaching zero.
	for _, r := range append(local, remote...) {
		rt.wg.Add(1)
		go rt.supervise(rt.ctx, "monitor "+r.spec.Name, func(ctx context.Context) { rt.monitor(ctx, r) }, func() { rt.monitorError(r) })
	}
	rt.changed.broadcast()
}

// addWriterCandidate returns the writer candidate named spec.Name (its
// index, measured connect time and telemetry attributes), adding spec as a
// new one if there is none: the writer searches that start from then on
// probe it too, so that an Aurora instance that joined after OpenAurora can
// be found as the writer after a failover to it.
func (rt *Router) addWriterCandidate(spec endpointSpec, tel *telEndpoint) (int, *rttStat, *telEndpoint) {
	rt.wmu.Lock()
	defer rt.wmu.Unlock()
	if i := slices.IndexFunc(rt.cands, func(c endpointSpec) bool { return c.Name == spec.Name }); i >= 0 {
		return i, rt.candRTT[i], rt.candTel[i]
	}
	rtt := &rttStat{}
	// The router's lists and the search's grow together, only here and
	// under wmu, so the indexes agree.
	i := rt.search.add(writerCandidate{name: spec.Name, connector: spec.connector, rtt: rtt})
	rt.cands = append(rt.cands, spec)
	rt.candTel = append(rt.candTel, tel)
	rt.candRTT = append(rt.candRTT, rtt)
	rt.wpools = append(rt.wpools, nil)
	return i, rtt, tel
}
