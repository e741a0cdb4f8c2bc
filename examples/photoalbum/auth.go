package main

// Accounts and logins: the session middleware's user, sign-up, log-in,
// log-out.

import (
	"context"
	"crypto/hmac"
	"crypto/pbkdf2"
	"crypto/rand"
	"crypto/sha256"
	"database/sql"
	"errors"
	"net/http"
	"strings"
)

type userKey struct{}

// requireUser loads the session's user record (through the cache) or answers 401.
func (a *app) requireUser(next http.Handler) http.Handler {
	return a.errors(func(w http.ResponseWriter, r *http.Request) error {
		ctx := r.Context()
		id, err := a.b.sessions.UserID(ctx)
		if err != nil {
			return err
		}
		if id == 0 {
			return errorf(http.StatusUnauthorized, "log in first")
		}
		u, err := a.user(ctx, id)
		if errors.Is(err, sql.ErrNoRows) {
			return errorf(http.StatusUnauthorized, "log in first")
		}
		if err != nil {
			return err
		}
		next.ServeHTTP(w, r.WithContext(context.WithValue(ctx, userKey{}, u)))
		return nil
	})
}

func currentUser(ctx context.Context) user {
	u, _ := ctx.Value(userKey{}).(user)
	return u
}

func hashPassword(password string, salt []byte) []byte {
	// 4096 rounds keep the demo fast; use far more (or argon2id) in production.
	h, _ := pbkdf2.Key(sha256.New, password, salt, 4096, 32)
	return h
}

func (a *app) signup(w http.ResponseWriter, r *http.Request) error {
	var in struct{ Email, Name, Password string }
	if err := readJSON(r, &in); err != nil {
		return err
	}
	in.Email = strings.ToLower(strings.TrimSpace(in.Email))
	if in.Email == "" || in.Name == "" || len(in.Password) < 8 {
		return errorf(http.StatusBadRequest, "email, name and a password of 8 or more characters are required")
	}
	salt := make([]byte, 16)
	rand.Read(salt)
	ctx := r.Context()
	res, err := a.b.db.ExecContext(ctx,
		"INSERT INTO users (email, name, password_salt, password_hash, home_region) VALUES (?, ?, ?, ?, ?)",
		in.Email, in.Name, salt, hashPassword(in.Password, salt), a.cfg.region)
	if isDuplicate(err) {
		return errorf(http.StatusConflict, "email already registered")
	}
	if err != nil {
		return err
	}
	id, err := res.LastInsertId()
	if err != nil {
		return err
	}
	if err := a.b.sessions.Login(ctx, id); err != nil {
		return err
	}
	writeJSON(w, http.StatusCreated, user{ID: id, Email: in.Email, Name: in.Name, HomeRegion: a.cfg.region})
	return nil
}

func (a *app) login(w http.ResponseWriter, r *http.Request) error {
	var in struct{ Email, Password string }
	if err := readJSON(r, &in); err != nil {
		return err
	}
	ctx := r.Context()
	var (
		u          user
		salt, hash []byte
	)
	u.Email = strings.ToLower(strings.TrimSpace(in.Email))
	err := a.b.db.QueryRowContext(ctx,
		"SELECT id, name, home_region, password_salt, password_hash FROM users WHERE email = ?", u.Email).
		Scan(&u.ID, &u.Name, &u.HomeRegion, &salt, &hash)
	if errors.Is(err, sql.ErrNoRows) || (err == nil && !hmac.Equal(hash, hashPassword(in.Password, salt))) {
		return errorf(http.StatusUnauthorized, "wrong email or password")
	}
	if err != nil {
		return err
	}
	if err := a.b.sessions.Login(ctx, u.ID); err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, u)
	return nil
}

func (a *app) logout(w http.ResponseWriter, r *http.Request) error {
	if err := a.b.sessions.Logout(r.Context()); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}
