package dbrouter

import "context"

// RequiredPosition returns the writer position that data served to ctx must
// reflect: the writes of ctx's read-your-writes scope, including those of
// the token(s) it was restored from, or "" if ctx has no scope or requires
// nothing. The positions the scope's reads were served at are left out, so
// that a cache hit is refused only for what the user wrote. With
// [Router.CoversPosition] it implements the cache package's ReadScope.
func (rt *Router) RequiredPosition(ctx context.Context) string {
	t := trackerFrom(ctx)
	if t == nil {
		return ""
	}
	t.mu.Lock()
	p := merge(t.written, t.restored)
	t.mu.Unlock()
	if p.empty() {
		return ""
	}
	return p.String()
}

// CoversPosition reports whether data that reflects position a also
// reflects everything position b describes (a and b are values of
// [Router.WrittenPosition] or [Router.RequiredPosition]). Every a covers
// b = ""; a position that does not parse for the router's dialect covers
// nothing and is covered by nothing.
func (rt *Router) CoversPosition(a, b string) bool {
	if b == "" {
		return true
	}
	pb, err := rt.parsePosition(b)
	if err != nil {
		return false
	}
	pa, err := rt.parsePosition(a)
	if err != nil {
		return false
	}
	return pa.covers(pb)
}
