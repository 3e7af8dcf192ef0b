// Package migrations holds outbox's database schema as plain SQL files and
// applies them.
//
// The files are named NNNN_name.up.sql and NNNN_name.down.sql, the layout
// golang-migrate reads, and use unqualified table names, so they land in the
// first schema of search_path. Applying every .up.sql in lexical order with
// psql works as-is. goose wants one annotated file per version: the goose/
// directory ([GooseFS]) holds them, generated from the same SQL.
//
// [Up], [Down] and [Status] apply them from Go. They record the applied
// versions in the table outbox_schema_migrations of the target schema and
// hold a transaction-scoped advisory lock per schema, so any number of
// processes may call Up at once: one applies, the others wait and find
// nothing left to do.
package migrations

import (
	"embed"
	"fmt"
	"io/fs"
	"sort"
	"strconv"
	"strings"

	"github.com/outboxrelay/outbox/internal/sqlname"
)

// FS holds the embedded SQL files, for migration tools that read an fs.FS
// in the .up.sql/.down.sql layout (golang-migrate's iofs source). goose
// reads GooseFS.
//
//go:embed *.sql
var FS embed.FS

// ErrInvalidSchema is wrapped by every error about an unusable schema name,
// from this package and from the Config of outbox.NewProducer and relay.New.
var ErrInvalidSchema = sqlname.ErrInvalidSchema

// Migration is one numbered step of the schema.
type Migration struct {
	// Version is the number that prefixes the file names.
	Version int
	// Name is the part of the file name between the version and ".up.sql".
	Name string
	// Up is the SQL that applies the step.
	Up string
	// Down is the SQL that reverts it.
	Down string
	// NoTransaction: Up is one statement that cannot run in a transaction
	// (CREATE INDEX CONCURRENTLY), marked by NoTransactionDirective on the
	// .up.sql's first line. Up runs it on a connection of its own, and
	// first drops an invalid index an interrupted run of it left behind.
	NoTransaction bool
}

// NoTransactionDirective, as the first line of an .up.sql, marks a
// migration that runs outside a transaction (goose's files get
// "-- +goose NO TRANSACTION"; golang-migrate and psql run a one-statement
// file outside one anyway).
const NoTransactionDirective = "-- outbox:no-transaction"

// All returns every embedded migration in version order.
func All() []Migration {
	all, err := load(FS)
	if err != nil {
		// The embedded files are checked by the tests; a failure here is a
		// build defect, not a runtime condition.
		panic(err)
	}
	return all
}

func load(fsys fs.FS) ([]Migration, error) {
	names, err := fs.Glob(fsys, "*.sql")
	if err != nil {
		return nil, err
	}
	byVersion := map[int]*Migration{}
	for _, name := range names {
		version, base, dir, err := parseName(name)
		if err != nil {
			return nil, err
		}
		body, err := fs.ReadFile(fsys, name)
		if err != nil {
			return nil, err
		}
		m := byVersion[version]
		if m == nil {
			m = &Migration{Version: version, Name: base}
			byVersion[version] = m
		}
		if dir == "up" {
			m.Up = string(body)
			m.NoTransaction = strings.HasPrefix(m.Up, NoTransactionDirective+"\n")
		} else {
			m.Down = string(body)
		}
	}
	all := make([]Migration, 0, len(byVersion))
	for _, m := range byVersion {
		if m.Up == "" || m.Down == "" {
			return nil, fmt.Errorf("migration %04d_%s: both .up.sql and .down.sql are required", m.Version, m.Name)
		}
		all = append(all, *m)
	}
	sort.Slice(all, func(i, j int) bool { return all[i].Version < all[j].Version })
	return all, nil
}

// parseName splits "0001_create_outbox.up.sql" into 1, "create_outbox", "up".
func parseName(name string) (version int, base, dir string, err error) {
	stem, ok := strings.CutSuffix(name, ".sql")
	if !ok {
		return 0, "", "", fmt.Errorf("migration file %q: want NNNN_name.up.sql or .down.sql", name)
	}
	switch {
	case strings.HasSuffix(stem, ".up"):
		stem, dir = strings.TrimSuffix(stem, ".up"), "up"
	case strings.HasSuffix(stem, ".down"):
		stem, dir = strings.TrimSuffix(stem, ".down"), "down"
	default:
		return 0, "", "", fmt.Errorf("migration file %q: want NNNN_name.up.sql or .down.sql", name)
	}
	num, base, ok := strings.Cut(stem, "_")
	if !ok {
		return 0, "", "", fmt.Errorf("migration file %q: want NNNN_name.up.sql or .down.sql", name)
	}
	version, err = strconv.Atoi(num)
	if err != nil || version <= 0 {
		return 0, "", "", fmt.Errorf("migration file %q: version must be a positive number", name)
	}
	return version, base, dir, nil
}
