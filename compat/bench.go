package compat

import (
	"context"
	"fmt"
	"sync/atomic"
	"time"

	"gorm.io/driver/mysql"
	"gorm.io/gorm"
	"gorm.io/gorm/logger"
	"gorm.io/plugin/dbresolver"

	"github.com/regiondb/regiondb/dbrouter"
	"github.com/regiondb/regiondb/internal/paired"
)

// PeerConfig sizes ComparePeer.
type PeerConfig struct {
	Pairs int // interleaved batch pairs (default 31)
	Batch int // operations per side and pair (default 40)
	// Scoped runs each regiondb operation in a fresh read-your-writes scope
	// (its insert then reads the write's position: one more round trip).
	Scoped bool
}

// ComparePeer runs the same GORM work (a point select by primary key and an
// insert with GORM's default transaction) through regiondb's routing
// *sql.DB and through gorm.io/plugin/dbresolver (sources: the writer,
// replicas: the local reader), one operation of each back to back in
// alternating order, and returns the median over the pairs of regiondb's
// median time over dbresolver's.
func (e *Env) ComparePeer(ctx context.Context, cfg PeerConfig) (float64, error) {
	if cfg.Pairs <= 0 {
		cfg.Pairs = 31
	}
	if cfg.Batch <= 0 {
		cfg.Batch = 40
	}
	gcfg := func() *gorm.Config { return &gorm.Config{Logger: logger.Discard} }
	rt, err := dbrouter.Open(RouterConfig(e.S))
	if err != nil {
		return 0, err
	}
	defer rt.Close()
	ours, err := gorm.Open(mysql.New(mysql.Config{Conn: rt.DB()}), gcfg())
	if err != nil {
		return 0, err
	}
	peer, err := gorm.Open(mysql.Open(e.S.DSN("m1", Database)), gcfg())
	if err != nil {
		return 0, err
	}
	if err := peer.Use(dbresolver.Register(dbresolver.Config{
		Sources:  []gorm.Dialector{mysql.Open(e.S.DSN("m1", Database))},
		Replicas: []gorm.Dialector{mysql.Open(e.S.DSN("r1", Database))},
	})); err != nil {
		return 0, err
	}
	if sdb, err := peer.DB(); err == nil {
		defer sdb.Close()
	}
	var seq atomic.Int64
	run := fmt.Sprintf("peer-%d", time.Now().UnixNano())
	var firstID int64
	op := func(db *gorm.DB, scoped bool) error {
		c := ctx
		if scoped {
			c = dbrouter.NewContext(ctx)
		}
		var it Item
		if err := db.WithContext(c).First(&it, firstID).Error; err != nil {
			return err
		}
		return db.WithContext(c).Create(&Item{Name: fmt.Sprintf("%s-%d", run, seq.Add(1)), N: 1}).Error
	}
	seed := Item{Name: run + "-seed", N: 1}
	if err := peer.WithContext(ctx).Create(&seed).Error; err != nil {
		return 0, err
	}
	firstID = seed.ID
	if err := e.S.WaitReplicated(ctx); err != nil {
		return 0, err
	}
	runOurs := func() error { return op(ours, cfg.Scoped) }
	runPeer := func() error { return op(peer, false) }
	for range 20 { // warm both
		if err := runOurs(); err != nil {
			return 0, err
		}
		if err := runPeer(); err != nil {
			return 0, err
		}
	}
	var ratios []float64
	for i := range cfg.Pairs {
		peerNs, oursNs, err := paired.Batch(cfg.Batch, i, runPeer, runOurs)
		if err != nil {
			return 0, err
		}
		ratios = append(ratios, oursNs/peerNs)
	}
	return paired.Median(ratios), nil
}
