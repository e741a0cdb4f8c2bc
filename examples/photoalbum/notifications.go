package main

// The current user's notifications: GET /notifications.

import "net/http"

func (a *app) notifications(w http.ResponseWriter, r *http.Request) error {
	ctx := r.Context()
	rows, err := a.b.db.QueryContext(ctx,
		"SELECT id, kind, album_id, photo_count, link, created_at FROM notifications WHERE user_id = ? ORDER BY id DESC LIMIT 50",
		currentUser(ctx).ID)
	if err != nil {
		return err
	}
	defer rows.Close()
	out := []notification{}
	for rows.Next() {
		var n notification
		if err := rows.Scan(&n.ID, &n.Kind, &n.AlbumID, &n.PhotoCount, &n.Link, &n.CreatedAt); err != nil {
			return err
		}
		out = append(out, n)
	}
	if err := rows.Err(); err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}
