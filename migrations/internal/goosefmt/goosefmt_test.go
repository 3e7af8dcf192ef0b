package goosefmt_test

import (
	"testing"
	"testing/fstest"

	"github.com/stretchr/testify/require"

	"github.com/outboxrelay/outbox/migrations/internal/goosefmt"
)

func TestRender(t *testing.T) {
	t.Parallel()
	got := string(goosefmt.Render("0001_x", "CREATE TABLE a (id int);\n\n", "DROP TABLE a;"))
	require.Equal(t, "-- Code generated from ../0001_x.{up,down}.sql by `go generate ./migrations`. DO NOT EDIT.\n"+
		"-- Edit those files and re-run go generate: migrations/goose_test.go checks this file is current.\n"+
		"\n-- +goose Up\nCREATE TABLE a (id int);\n"+
		"\n-- +goose Down\nDROP TABLE a;\n", got)
}

func TestRenderWrapsBodiesWithSemicolons(t *testing.T) {
	t.Parallel()
	for _, up := range []string{
		"CREATE FUNCTION f() RETURNS int AS $$ BEGIN RETURN 1; END $$ LANGUAGE plpgsql;\n",
		"DO $body$ BEGIN PERFORM 1; END $body$;\n",
		"CREATE FUNCTION f() RETURNS int LANGUAGE sql BEGIN ATOMIC SELECT 1; END;\n",
	} {
		got := string(goosefmt.Render("0001_x", up, "DROP FUNCTION f;\n"))
		require.Contains(t, got, "-- +goose Up\n-- +goose StatementBegin\n"+up+"-- +goose StatementEnd\n")
		require.Contains(t, got, "-- +goose Down\nDROP FUNCTION f;\n", "a plain section stays unwrapped")
	}
}

func TestFiles(t *testing.T) {
	t.Parallel()
	files, err := goosefmt.Files(fstest.MapFS{
		"0001_a.up.sql":   {Data: []byte("CREATE TABLE a (id int);\n")},
		"0001_a.down.sql": {Data: []byte("DROP TABLE a;\n")},
		"0002_b.up.sql":   {Data: []byte("CREATE TABLE b (id int);\n")},
		"0002_b.down.sql": {Data: []byte("DROP TABLE b;\n")},
		"README.md":       {Data: []byte("not a migration")},
	})
	require.NoError(t, err)
	require.Equal(t, map[string][]byte{
		"0001_a.sql": goosefmt.Render("0001_a", "CREATE TABLE a (id int);\n", "DROP TABLE a;\n"),
		"0002_b.sql": goosefmt.Render("0002_b", "CREATE TABLE b (id int);\n", "DROP TABLE b;\n"),
	}, files)

	for name, fsys := range map[string]fstest.MapFS{
		"no down":     {"0001_a.up.sql": {Data: []byte("SELECT 1;\n")}},
		"bad name":    {"a.up.sql": {Data: []byte("SELECT 1;\n")}, "a.down.sql": {Data: []byte("SELECT 1;\n")}},
		"annotation":  {"0001_a.up.sql": {Data: []byte("-- +goose Down\nSELECT 1;\n")}, "0001_a.down.sql": {Data: []byte("SELECT 1;\n")}},
		"empty up":    {"0001_a.up.sql": {Data: []byte("\n")}, "0001_a.down.sql": {Data: []byte("SELECT 1;\n")}},
		"not up/down": {"0001_a.sql": {Data: []byte("SELECT 1;\n")}},
	} {
		_, err := goosefmt.Files(fsys)
		require.Error(t, err, name)
	}
}

// A migration marked to run outside a transaction is marked so for goose.
func TestRenderNoTransaction(t *testing.T) {
	t.Parallel()
	up := "-- outbox:no-transaction\nCREATE INDEX CONCURRENTLY IF NOT EXISTS i ON a (id);\n"
	got := string(goosefmt.Render("0007_i", up, "DROP INDEX i;"))
	require.Equal(t, "-- Code generated from ../0007_i.{up,down}.sql by `go generate ./migrations`. DO NOT EDIT.\n"+
		"-- Edit those files and re-run go generate: migrations/goose_test.go checks this file is current.\n"+
		"-- +goose NO TRANSACTION\n"+
		"\n-- +goose Up\n"+up+
		"\n-- +goose Down\nDROP INDEX i;\n", got)
}
