package main

import (
	"context"
	"database/sql"
	"fmt"

	"github.com/go-sql-driver/mysql"
)

// schema is the service's tables. Photos hold metadata only: the image bytes
// would live in object storage.
var schema = []string{
	`CREATE TABLE IF NOT EXISTS users (
		id BIGINT AUTO_INCREMENT PRIMARY KEY,
		email VARCHAR(255) NOT NULL UNIQUE,
		name VARCHAR(255) NOT NULL,
		password_salt VARBINARY(16) NOT NULL,
		password_hash VARBINARY(32) NOT NULL,
		home_region VARCHAR(32) NOT NULL,
		created_at DATETIME(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3)
	) ENGINE=InnoDB`,
	`CREATE TABLE IF NOT EXISTS families (
		id BIGINT AUTO_INCREMENT PRIMARY KEY,
		name VARCHAR(255) NOT NULL,
		created_at DATETIME(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3)
	) ENGINE=InnoDB`,
	`CREATE TABLE IF NOT EXISTS memberships (
		family_id BIGINT NOT NULL,
		user_id BIGINT NOT NULL,
		role VARCHAR(16) NOT NULL,
		created_at DATETIME(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
		PRIMARY KEY (family_id, user_id),
		KEY by_user (user_id)
	) ENGINE=InnoDB`,
	`CREATE TABLE IF NOT EXISTS albums (
		id BIGINT AUTO_INCREMENT PRIMARY KEY,
		family_id BIGINT NOT NULL,
		title VARCHAR(255) NOT NULL,
		created_by BIGINT NOT NULL,
		created_at DATETIME(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
		KEY by_family (family_id)
	) ENGINE=InnoDB`,
	`CREATE TABLE IF NOT EXISTS photos (
		id BIGINT AUTO_INCREMENT PRIMARY KEY,
		album_id BIGINT NOT NULL,
		uploaded_by BIGINT NOT NULL,
		caption VARCHAR(512) NOT NULL,
		content_type VARCHAR(64) NOT NULL,
		width INT NOT NULL,
		height INT NOT NULL,
		created_at DATETIME(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
		KEY by_album (album_id, id)
	) ENGINE=InnoDB`,
	`CREATE TABLE IF NOT EXISTS notifications (
		id BIGINT AUTO_INCREMENT PRIMARY KEY,
		user_id BIGINT NOT NULL,
		kind VARCHAR(32) NOT NULL,
		album_id BIGINT NOT NULL,
		photo_count INT NOT NULL,
		link VARCHAR(1024) NOT NULL,
		created_at DATETIME(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
		KEY by_user (user_id, id)
	) ENGINE=InnoDB`,
}

// migrate creates the database named in the writer's DSN and the tables, if
// missing. Migrations run on the writer only, once, before serving; they use a
// plain *sql.DB because they are not part of the request path.
func migrate(ctx context.Context, writerDSN string) error {
	cfg, err := mysql.ParseDSN(writerDSN)
	if err != nil {
		return fmt.Errorf("migrate: writer DSN: %w", err)
	}
	dbName := cfg.DBName
	if dbName == "" {
		return fmt.Errorf("migrate: the writer DSN names no database")
	}
	cfg.DBName = ""
	root, err := sql.Open("mysql", cfg.FormatDSN())
	if err != nil {
		return err
	}
	defer root.Close()
	if _, err := root.ExecContext(ctx, "CREATE DATABASE IF NOT EXISTS `"+dbName+"`"); err != nil {
		return fmt.Errorf("migrate: create database: %w", err)
	}
	db, err := sql.Open("mysql", writerDSN)
	if err != nil {
		return err
	}
	defer db.Close()
	for _, stmt := range schema {
		if _, err := db.ExecContext(ctx, stmt); err != nil {
			return fmt.Errorf("migrate: %w", err)
		}
	}
	return nil
}
