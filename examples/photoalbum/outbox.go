package main

import "sync"

// push is a notification as sent to the push provider (see outbox).
type push struct {
	UserID   int64   `json:"user_id"`
	AlbumID  int64   `json:"album_id"`
	PhotoIDs []int64 `json:"photo_ids"`
	Link     string  `json:"link"`
}

// outbox stands in for a push or email provider: it keeps the last pushes
// per user until GET /debug/outbox fetches them.
type outbox struct {
	mu     sync.Mutex // protects byUser
	byUser map[int64][]push
}

func (o *outbox) send(p push) {
	o.mu.Lock()
	defer o.mu.Unlock()
	q := append(o.byUser[p.UserID], p)
	if len(q) > 100 {
		q = q[len(q)-100:]
	}
	o.byUser[p.UserID] = q
}

func (o *outbox) take(userID int64) []push {
	o.mu.Lock()
	defer o.mu.Unlock()
	q := o.byUser[userID]
	delete(o.byUser, userID)
	return q
}
