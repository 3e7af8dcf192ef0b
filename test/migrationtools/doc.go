// Package migrationtools proves that outbox's shipped migrations apply with
// every tool the README names, up and down, through the tools' own code:
// golang-migrate's library (pgx/v5 and lib/pq drivers, iofs and file
// sources), goose's library over migrations.GooseFS, and the psql binary
// running the .up.sql files in order and the .down.sql files in reverse.
// Each applies into a fresh schema chosen by search_path, and the test then
// appends an event there with outbox.Append.
//
// It is a module of its own so that the tools' dependencies stay out of the
// library's go.mod. It has tests only.
package migrationtools
