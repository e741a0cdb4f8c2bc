package main

// Families and their members: POST /families, GET and PATCH /families/{id},
// POST /families/{id}/members.

import (
	"database/sql"
	"errors"
	"net/http"
	"strings"
)

func (a *app) createFamily(w http.ResponseWriter, r *http.Request) error {
	name, err := readName(r)
	if err != nil {
		return err
	}
	ctx := r.Context()
	u := currentUser(ctx)
	res, err := a.b.db.ExecContext(ctx, "INSERT INTO families (name) VALUES (?)", name)
	if err != nil {
		return err
	}
	id, err := res.LastInsertId()
	if err != nil {
		return err
	}
	if _, err := a.b.db.ExecContext(ctx, "INSERT INTO memberships (family_id, user_id, role) VALUES (?, ?, 'parent')", id, u.ID); err != nil {
		return err
	}
	writeJSON(w, http.StatusCreated, family{ID: id, Name: name, Members: []member{{UserID: u.ID, Name: u.Name, Role: "parent"}}})
	return nil
}

func (a *app) getFamily(w http.ResponseWriter, r *http.Request) error {
	id, err := pathID(r)
	if err != nil {
		return err
	}
	f, err := a.memberFamily(r.Context(), id)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, f)
	return nil
}

func (a *app) renameFamily(w http.ResponseWriter, r *http.Request) error {
	id, err := pathID(r)
	if err != nil {
		return err
	}
	name, err := readName(r)
	if err != nil {
		return err
	}
	ctx := r.Context()
	f, err := a.memberFamily(ctx, id)
	if err != nil {
		return err
	}
	if _, err := a.b.db.ExecContext(ctx, "UPDATE families SET name = ? WHERE id = ?", name, id); err != nil {
		return err
	}
	if err := a.b.cache.Invalidate(ctx, a.familyCacheKey(id)); err != nil {
		return err
	}
	f.Name = name
	writeJSON(w, http.StatusOK, f)
	return nil
}

var roles = map[string]bool{"parent": true, "grandparent": true, "child": true, "member": true}

func (a *app) addMember(w http.ResponseWriter, r *http.Request) error {
	id, err := pathID(r)
	if err != nil {
		return err
	}
	var in struct{ Email, Role string }
	if err := readJSON(r, &in); err != nil {
		return err
	}
	if !roles[in.Role] {
		return errorf(http.StatusBadRequest, "role must be parent, grandparent, child or member")
	}
	ctx := r.Context()
	if _, err := a.memberFamily(ctx, id); err != nil {
		return err
	}
	var uid int64
	err = a.b.db.QueryRowContext(ctx, "SELECT id FROM users WHERE email = ?", strings.ToLower(in.Email)).Scan(&uid)
	if errors.Is(err, sql.ErrNoRows) {
		return errorf(http.StatusNotFound, "no user with that email")
	}
	if err != nil {
		return err
	}
	if _, err := a.b.db.ExecContext(ctx,
		"INSERT INTO memberships (family_id, user_id, role) VALUES (?, ?, ?) ON DUPLICATE KEY UPDATE role = VALUES(role)",
		id, uid, in.Role); err != nil {
		return err
	}
	if err := a.b.cache.Invalidate(ctx, a.familyCacheKey(id)); err != nil {
		return err
	}
	f, err := a.family(ctx, id)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, f)
	return nil
}
