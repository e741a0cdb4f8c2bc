package main

// The records the API reads and writes.

import "time"

// user is an account; every request reads it through the cache (cached.go).
type user struct {
	ID         int64  `json:"id"`
	Email      string `json:"email"`
	Name       string `json:"name"`
	HomeRegion string `json:"home_region"`
}

// member is a user's place in a family.
type member struct {
	UserID int64  `json:"user_id"`
	Name   string `json:"name"`
	Role   string `json:"role"`
}

// family is a family with its members; cached like user.
type family struct {
	ID      int64    `json:"id"`
	Name    string   `json:"name"`
	Members []member `json:"members"`
}

// photo is a photo's metadata (the service stores no image bytes).
type photo struct {
	ID          int64     `json:"id"`
	UploadedBy  int64     `json:"uploaded_by"`
	Caption     string    `json:"caption"`
	ContentType string    `json:"content_type"`
	Width       int       `json:"width"`
	Height      int       `json:"height"`
	CreatedAt   time.Time `json:"created_at"`
}

// album is a family's album with its photos.
type album struct {
	ID       int64   `json:"id"`
	FamilyID int64   `json:"family_id"`
	Title    string  `json:"title"`
	Photos   []photo `json:"photos"`
}

// notification tells a family member that photos were added.
type notification struct {
	ID         int64     `json:"id"`
	Kind       string    `json:"kind"`
	AlbumID    int64     `json:"album_id"`
	PhotoCount int       `json:"photo_count"`
	Link       string    `json:"link"`
	CreatedAt  time.Time `json:"created_at"`
}
