package migrations_test

import (
	"io/fs"
	"os"
	"path"
	"sort"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/outboxrelay/outbox/migrations"
	"github.com/outboxrelay/outbox/migrations/internal/goosefmt"
)

// TestGooseFilesCurrent fails when migrations/goose is not what the generator
// writes from the .up.sql / .down.sql files: a file missing, stale, edited by
// hand or left over.
func TestGooseFilesCurrent(t *testing.T) {
	t.Parallel()
	want, err := goosefmt.Files(migrations.FS)
	require.NoError(t, err)
	require.Len(t, want, len(migrations.All()), "one goose file per migration")

	onDisk := readDir(t, os.DirFS("goose"), ".")
	embedded := readDir(t, migrations.GooseFS, "goose")
	require.Equal(t, onDisk, embedded, "GooseFS embeds every file of migrations/goose")

	var problems []string
	for _, name := range sortedKeys(want) {
		got, ok := onDisk[name]
		switch {
		case !ok:
			problems = append(problems, "migrations/goose/"+name+" is missing")
		case got != string(want[name]):
			problems = append(problems, "migrations/goose/"+name+" differs from what the generator writes")
		}
	}
	for _, name := range sortedKeys(onDisk) {
		if _, ok := want[name]; !ok {
			problems = append(problems, "migrations/goose/"+name+" comes from no migration")
		}
	}
	require.Empty(t, problems, "the goose files are out of date: run `go generate ./migrations` (never edit them by hand)")
}

// readDir returns the files of dir in fsys by name.
func readDir(t *testing.T, fsys fs.FS, dir string) map[string]string {
	t.Helper()
	entries, err := fs.ReadDir(fsys, dir)
	require.NoError(t, err, "run `go generate ./migrations`")
	files := map[string]string{}
	for _, e := range entries {
		body, err := fs.ReadFile(fsys, path.Join(dir, e.Name()))
		require.NoError(t, err)
		files[e.Name()] = string(body)
	}
	return files
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
