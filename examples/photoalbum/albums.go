package main

// Albums and photos: POST /families/{id}/albums, GET /albums/{id},
// POST /albums/{id}/photos (which notifies the family).

import (
	"context"
	"net/http"
	"net/url"
	"strconv"
)

func (a *app) createAlbum(w http.ResponseWriter, r *http.Request) error {
	id, err := pathID(r)
	if err != nil {
		return err
	}
	var in struct{ Title string }
	if err := readJSON(r, &in); err != nil {
		return err
	}
	if in.Title == "" {
		return errorf(http.StatusBadRequest, "title is required")
	}
	ctx := r.Context()
	if _, err := a.memberFamily(ctx, id); err != nil {
		return err
	}
	res, err := a.b.db.ExecContext(ctx, "INSERT INTO albums (family_id, title, created_by) VALUES (?, ?, ?)",
		id, in.Title, currentUser(ctx).ID)
	if err != nil {
		return err
	}
	aid, err := res.LastInsertId()
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusCreated, album{ID: aid, FamilyID: id, Title: in.Title, Photos: []photo{}})
	return nil
}

// albumFor loads an album's row and checks that the current user may see it.
func (a *app) albumFor(ctx context.Context, id int64) (album, family, error) {
	al := album{ID: id, Photos: []photo{}}
	err := a.b.db.QueryRowContext(ctx, "SELECT family_id, title FROM albums WHERE id = ?", id).Scan(&al.FamilyID, &al.Title)
	if err != nil {
		return al, family{}, err
	}
	f, err := a.memberFamily(ctx, al.FamilyID)
	return al, f, err
}

// getAlbum shows an album. Opened from a notification, the link's token
// (?rt=) makes the reads observe the writes that the notification is about,
// even though they were another user's, made in another region.
func (a *app) getAlbum(w http.ResponseWriter, r *http.Request) error {
	id, err := pathID(r)
	if err != nil {
		return err
	}
	ctx := r.Context()
	if rt := r.URL.Query().Get("rt"); rt != "" {
		ctx = a.b.tokens.WithLinkToken(ctx, rt)
	}
	al, _, err := a.albumFor(ctx, id)
	if err != nil {
		return err
	}
	rows, err := a.b.db.QueryContext(ctx,
		"SELECT id, uploaded_by, caption, content_type, width, height, created_at FROM photos WHERE album_id = ? ORDER BY id", id)
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		var p photo
		if err := rows.Scan(&p.ID, &p.UploadedBy, &p.Caption, &p.ContentType, &p.Width, &p.Height, &p.CreatedAt); err != nil {
			return err
		}
		al.Photos = append(al.Photos, p)
	}
	if err := rows.Err(); err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, al)
	return nil
}

// addPhotos records photo metadata and notifies the other family members
// with a link that carries the writer's consistency token.
func (a *app) addPhotos(w http.ResponseWriter, r *http.Request) error {
	id, err := pathID(r)
	if err != nil {
		return err
	}
	var in struct {
		Photos []struct {
			Caption     string
			ContentType string `json:"content_type"`
			Width       int
			Height      int
		}
	}
	if err := readJSON(r, &in); err != nil {
		return err
	}
	if len(in.Photos) == 0 || len(in.Photos) > 50 {
		return errorf(http.StatusBadRequest, "send 1 to 50 photos")
	}
	ctx := r.Context()
	al, f, err := a.albumFor(ctx, id)
	if err != nil {
		return err
	}
	me := currentUser(ctx)
	var ids []int64
	for _, p := range in.Photos {
		if p.ContentType == "" {
			p.ContentType = "image/jpeg"
		}
		res, err := a.b.db.ExecContext(ctx,
			"INSERT INTO photos (album_id, uploaded_by, caption, content_type, width, height) VALUES (?, ?, ?, ?, ?, ?)",
			al.ID, me.ID, p.Caption, p.ContentType, p.Width, p.Height)
		if err != nil {
			return err
		}
		pid, err := res.LastInsertId()
		if err != nil {
			return err
		}
		ids = append(ids, pid)
	}
	link := "/albums/" + strconv.FormatInt(al.ID, 10)
	if tok := a.b.tokens.LinkToken(ctx); tok != "" {
		link += "?rt=" + url.QueryEscape(tok)
	}
	var notified []int64
	for _, m := range f.Members {
		if m.UserID == me.ID {
			continue
		}
		if _, err := a.b.db.ExecContext(ctx,
			"INSERT INTO notifications (user_id, kind, album_id, photo_count, link) VALUES (?, 'photos_added', ?, ?, ?)",
			m.UserID, al.ID, len(ids), link); err != nil {
			return err
		}
		notified = append(notified, m.UserID)
	}
	// Push only once every write committed, as a real service would after
	// its transaction (or from an outbox table).
	for _, uid := range notified {
		a.outbox.send(push{UserID: uid, AlbumID: al.ID, PhotoIDs: ids, Link: link})
	}
	a.tel.notified.Add(ctx, int64(len(notified)))
	writeJSON(w, http.StatusCreated, map[string]any{"photo_ids": ids, "notified": notified, "link": link})
	return nil
}
