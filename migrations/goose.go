package migrations

import "embed"

//go:generate go run ./internal/gengoose

// GooseFS holds the migrations in goose's format, goose/NNNN_name.sql: one
// file per version with "-- +goose Up" and "-- +goose Down" sections, generated
// by `go generate ./migrations` from the same .up.sql and .down.sql files that
// [Up] applies (a test checks they are current). goose reads one file per
// version, so it cannot use [FS]. From Go, on a *sql.DB whose search_path
// is the target schema:
//
//	goose.SetBaseFS(migrations.GooseFS)
//	if err := goose.SetDialect("postgres"); err != nil { ... }
//	err := goose.Up(db, "goose")
//
// or from a checkout, `goose -dir migrations/goose postgres "$URL" up`.
//
//go:embed goose/*.sql
var GooseFS embed.FS
