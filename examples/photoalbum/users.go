package main

// The current user's own record: GET and PATCH /me.

import (
	"context"
	"net/http"

	"github.com/regiondb/regiondb/dbrouter"
)

func (a *app) me(w http.ResponseWriter, r *http.Request) error {
	ctx := r.Context()
	u := currentUser(ctx)
	families, err := a.familiesOf(ctx, u.ID)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, map[string]any{"user": u, "families": families})
	return nil
}

func (a *app) renameMe(w http.ResponseWriter, r *http.Request) error {
	name, err := readName(r)
	if err != nil {
		return err
	}
	ctx := r.Context()
	u := currentUser(ctx)
	if _, err := a.b.db.ExecContext(ctx, "UPDATE users SET name = ? WHERE id = ?", name, u.ID); err != nil {
		return err
	}
	// The user's name is also part of each family record. Ask the writer
	// which families: a reader would first have to apply the update (a
	// wait in a remote region), and reading before the update could miss a
	// family joined meanwhile.
	families, err := a.familiesOf(dbrouter.WithWriter(ctx), u.ID)
	if err != nil {
		return err
	}
	keys := []string{a.userCacheKey(u.ID)}
	for _, id := range families {
		keys = append(keys, a.familyCacheKey(id))
	}
	for _, key := range keys {
		if err := a.b.cache.Invalidate(ctx, key); err != nil {
			return err
		}
	}
	u.Name = name
	writeJSON(w, http.StatusOK, u)
	return nil
}

// familiesOf returns the ids of the user's families.
func (a *app) familiesOf(ctx context.Context, userID int64) ([]int64, error) {
	rows, err := a.b.db.QueryContext(ctx, "SELECT family_id FROM memberships WHERE user_id = ? ORDER BY family_id", userID)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	ids := []int64{}
	for rows.Next() {
		var id int64
		if err := rows.Scan(&id); err != nil {
			return nil, err
		}
		ids = append(ids, id)
	}
	return ids, rows.Err()
}
