package demo

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"sync"
	"time"
)

// person is a simulated user with what they must see: the photos they added
// or were notified about, and their own name.
type person struct {
	c        *client
	id       int64
	email    string
	password string
	home     string
	familyID int64
	albumID  int64

	mu      sync.Mutex // protects the fields below
	mustSee map[int64]bool
	names   map[string]bool // acceptable names: the last acknowledged one, plus attempts whose outcome is unknown
	pending []string        // regions whose instance sent this person a push not yet opened
	renames int
}

func (p *person) seen(ids []int64) {
	p.mu.Lock()
	for _, id := range ids {
		p.mustSee[id] = true
	}
	p.mu.Unlock()
}

func (p *person) expected() []int64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make([]int64, 0, len(p.mustSee))
	for id := range p.mustSee {
		out = append(out, id)
	}
	slices.Sort(out)
	return out
}

// violation is a read that missed something its reader had to see.
type violation struct {
	At     time.Duration `json:"at_ms"`
	Kind   string        `json:"kind"`
	User   string        `json:"user"`
	Region string        `json:"region"`
	Detail string        `json:"detail"`
}

// checker counts the verified reads, the violations and the failures.
type checker struct {
	rec *recorder

	mu              sync.Mutex // protects the fields below
	checks          map[string]int
	violations      []violation
	sessionChecks   int
	sessionAnomaly  []violation
	unavailable     map[string]int // failed requests (5xx, transport) by region
	unexpected      []string       // other failures, first few
	unexpectedCount int
}

func newChecker(rec *recorder) *checker {
	return &checker{rec: rec, checks: map[string]int{}, unavailable: map[string]int{}}
}

func (k *checker) now() time.Duration { return time.Since(k.rec.start) }

func (k *checker) check(kind string, p *person, r response, ok bool, detail string) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.checks[kind]++
	if !ok {
		k.violations = append(k.violations, violation{At: k.now() / time.Millisecond, Kind: kind, User: p.c.name, Region: r.region, Detail: detail})
	}
}

// failed classifies a response that was not 2xx. It returns true when the
// caller should treat the read as not made (unavailable), false when the
// response was recorded as a violation or anomaly.
func (k *checker) failed(kind string, p *person, r response) {
	k.mu.Lock()
	defer k.mu.Unlock()
	switch {
	case r.status == http.StatusUnauthorized:
		k.sessionAnomaly = append(k.sessionAnomaly, violation{At: k.now() / time.Millisecond, Kind: kind, User: p.c.name, Region: r.region, Detail: "logged out: " + r.String()})
	case r.status == http.StatusNotFound && kind != "write":
		// The reader is a member and the record exists: not finding it is
		// a stale read.
		k.checks[kind]++
		k.violations = append(k.violations, violation{At: k.now() / time.Millisecond, Kind: kind, User: p.c.name, Region: r.region, Detail: "not found: " + r.String()})
	case r.err != nil || r.status >= 500:
		k.unavailable[r.region]++
	default:
		k.unexpectedCount++
		if len(k.unexpected) < 10 {
			k.unexpected = append(k.unexpected, fmt.Sprintf("%s %s %s: %s", kind, p.c.name, r.region, r))
		}
	}
}

func (k *checker) session(p *person, r response, ok bool, detail string) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.sessionChecks++
	if !ok {
		k.sessionAnomaly = append(k.sessionAnomaly, violation{At: k.now() / time.Millisecond, Kind: "session", User: p.c.name, Region: r.region, Detail: detail})
	}
}

type albumJSON struct {
	ID     int64 `json:"id"`
	Photos []struct {
		ID int64 `json:"id"`
	} `json:"photos"`
}

type meJSON struct {
	User struct {
		ID   int64  `json:"id"`
		Name string `json:"name"`
	} `json:"user"`
}

type familyJSON struct {
	ID      int64  `json:"id"`
	Name    string `json:"name"`
	Members []struct {
		UserID int64  `json:"user_id"`
		Name   string `json:"name"`
	} `json:"members"`
}

type pushJSON struct {
	UserID   int64   `json:"user_id"`
	AlbumID  int64   `json:"album_id"`
	PhotoIDs []int64 `json:"photo_ids"`
	Link     string  `json:"link"`
}

// missing returns the ids of want absent from the album.
func missing(al albumJSON, want []int64) []int64 {
	have := make(map[int64]bool, len(al.Photos))
	for _, p := range al.Photos {
		have[p.ID] = true
	}
	var out []int64
	for _, id := range want {
		if !have[id] {
			out = append(out, id)
		}
	}
	return out
}

// verifyAlbum reads path (the album, possibly from a link) in region and
// checks that it holds every photo p must see plus extra.
func (d *driver) verifyAlbum(ctx context.Context, kind string, p *person, region, path string, extra []int64) bool {
	want := append(p.expected(), extra...)
	r := p.c.do(ctx, region, http.MethodGet, path, "GET /albums/{id}", nil)
	if !r.ok() {
		d.chk.failed(kind, p, r)
		return false
	}
	var al albumJSON
	if err := r.decode(&al); err != nil {
		d.chk.check(kind, p, r, false, "bad body: "+r.String())
		return false
	}
	miss := missing(al, want)
	d.chk.check(kind, p, r, len(miss) == 0, fmt.Sprintf("album %d lacks photos %v of %d expected", al.ID, miss, len(want)))
	return true
}

func albumPath(id int64) string { return "/albums/" + strconv.FormatInt(id, 10) }

// addPhotos adds n photos as p in region; on success the photos are p's to
// see and the pushes are queued for the other family members.
func (d *driver) addPhotos(ctx context.Context, p *person, region string, n int, others []*person) ([]int64, bool) {
	var in struct {
		Photos []map[string]any `json:"photos"`
	}
	for i := range n {
		in.Photos = append(in.Photos, map[string]any{"caption": fmt.Sprintf("%s photo %d", p.c.name, i), "width": 4032, "height": 3024})
	}
	r := p.c.do(ctx, region, http.MethodPost, albumPath(p.albumID)+"/photos", "POST /albums/{id}/photos", in)
	if !r.ok() {
		d.chk.failed("write", p, r)
		return nil, false
	}
	var out struct {
		PhotoIDs []int64 `json:"photo_ids"`
		Notified []int64 `json:"notified"`
	}
	if err := r.decode(&out); err != nil {
		return nil, false
	}
	p.seen(out.PhotoIDs)
	for _, o := range others {
		if slices.Contains(out.Notified, o.id) {
			o.mu.Lock()
			if !slices.Contains(o.pending, region) {
				o.pending = append(o.pending, region)
			}
			o.mu.Unlock()
		}
	}
	return out.PhotoIDs, true
}

// openPushes fetches p's pushes from the instances that sent them (the push
// provider's role) and opens each link in region, checking that the linked
// album shows the photos the push announced.
func (d *driver) openPushes(ctx context.Context, p *person, region string) int {
	p.mu.Lock()
	from := p.pending
	p.pending = nil
	p.mu.Unlock()
	opened := 0
	for _, src := range from {
		pushes, err := d.fetchOutbox(ctx, src, p.id)
		if err != nil {
			continue
		}
		for _, ps := range pushes {
			link, err := url.Parse(ps.Link)
			if err != nil {
				d.chk.check("notification link", p, response{region: region}, false, "bad link "+ps.Link)
				continue
			}
			if d.verifyAlbum(ctx, "notification link", p, region, link.RequestURI(), ps.PhotoIDs) {
				p.seen(ps.PhotoIDs)
				opened++
			}
		}
	}
	return opened
}

func (d *driver) fetchOutbox(ctx context.Context, region string, userID int64) ([]pushJSON, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, d.urls[region]+"/debug/outbox?user="+strconv.FormatInt(userID, 10), nil)
	if err != nil {
		return nil, err
	}
	resp, err := d.hc.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var out []pushJSON
	err = decodeJSON(resp, &out)
	return out, err
}

// rename changes p's name in region and checks it at once in another region
// (through the user cache).
func (d *driver) rename(ctx context.Context, p *person, region string) {
	p.mu.Lock()
	p.renames++
	name := fmt.Sprintf("%s (v%d)", p.c.name, p.renames)
	p.names[name] = true
	p.mu.Unlock()
	r := p.c.do(ctx, region, http.MethodPatch, "/me", "PATCH /me", map[string]string{"name": name})
	if !r.ok() {
		d.chk.failed("write", p, r)
		return
	}
	p.mu.Lock()
	p.names = map[string]bool{name: true}
	p.mu.Unlock()
	d.verifyName(ctx, p, d.other(region))
}

func (d *driver) verifyName(ctx context.Context, p *person, region string) {
	r := p.c.do(ctx, region, http.MethodGet, "/me", "GET /me", nil)
	if !r.ok() {
		d.chk.failed("own name", p, r)
		return
	}
	var me meJSON
	r.decode(&me)
	p.mu.Lock()
	ok := p.names[me.User.Name]
	p.mu.Unlock()
	d.chk.check("own name", p, r, ok && me.User.ID == p.id, fmt.Sprintf("GET /me showed user %d named %q", me.User.ID, me.User.Name))
}

func (d *driver) verifyFamily(ctx context.Context, p *person, region string) {
	r := p.c.do(ctx, region, http.MethodGet, "/families/"+strconv.FormatInt(p.familyID, 10), "GET /families/{id}", nil)
	if !r.ok() {
		d.chk.failed("family record", p, r)
		return
	}
	var f familyJSON
	r.decode(&f)
	name := ""
	for _, m := range f.Members {
		if m.UserID == p.id {
			name = m.Name
		}
	}
	p.mu.Lock()
	ok := p.names[name]
	p.mu.Unlock()
	d.chk.check("family record", p, r, ok, fmt.Sprintf("family %d lists the user as %q", f.ID, name))
}

// secondTab: p adds photos in region while a second tab of the same
// browser (same cookie jar) reads the album in the other region; the second
// tab's response may land after the write's. The next read, in the other
// region, must show the photos: a response of a request that did not
// supersede the write's token must not have taken it away.
func (d *driver) secondTab(ctx context.Context, p *person, region string, others []*person) {
	var wg sync.WaitGroup
	var ok bool
	wg.Go(func() { _, ok = d.addPhotos(ctx, p, region, 1, others) })
	wg.Go(func() {
		// Concurrent with the write: it may or may not show the photo.
		if r := p.c.do(ctx, d.other(region), http.MethodGet, albumPath(p.albumID), "GET /albums/{id}", nil); !r.ok() {
			d.chk.failed("second tab", p, r)
		}
	})
	wg.Wait()
	if ok {
		d.verifyAlbum(ctx, "second tab", p, d.other(region), albumPath(p.albumID), nil)
	}
}

// browse is a background person's loop until ctx ends: mostly in their
// home region, sometimes in the other (travel, or geo-DNS failover).
func (d *driver) browse(ctx context.Context, p *person, family []*person, seed uint64) {
	rng := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	others := make([]*person, 0, len(family))
	for _, o := range family {
		if o != p {
			others = append(others, o)
		}
	}
	region := func() string {
		if rng.IntN(10) < 7 {
			return p.home
		}
		return d.other(p.home)
	}
	for ctx.Err() == nil {
		if d.paused.Load() {
			select {
			case <-ctx.Done():
			case <-time.After(20 * time.Millisecond):
			}
			continue
		}
		p.mu.Lock()
		hasPending := len(p.pending) > 0
		p.mu.Unlock()
		if hasPending {
			d.openPushes(ctx, p, region())
		}
		switch n := rng.IntN(100); {
		case n < 30:
			if _, ok := d.addPhotos(ctx, p, region(), 1+rng.IntN(3), others); ok {
				// The next request, anywhere, must show them.
				d.verifyAlbum(ctx, "own photos", p, region(), albumPath(p.albumID), nil)
			}
		case n < 50:
			d.verifyAlbum(ctx, "own photos", p, region(), albumPath(p.albumID), nil)
		case n < 65:
			d.verifyName(ctx, p, region())
		case n < 75:
			d.rename(ctx, p, region())
		case n < 90:
			d.verifyFamily(ctx, p, region())
		case n < 95:
			d.secondTab(ctx, p, region(), others)
		default:
			r := p.c.do(ctx, region(), http.MethodGet, "/notifications", "GET /notifications", nil)
			if !r.ok() {
				d.chk.failed("notifications", p, r)
			}
		}
		select {
		case <-ctx.Done():
		case <-time.After(time.Duration(20+rng.IntN(60)) * time.Millisecond):
		}
	}
}
