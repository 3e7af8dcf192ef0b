package migrations_test

import (
	"io/fs"
	"slices"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/outboxrelay/outbox/internal/migrationlint"
	"github.com/outboxrelay/outbox/migrations"
)

// released are the findings of migrations already released: they have run
// on installations, so changing them protects nobody; docs/migrations.md
// lists the locks each takes and how to run it on a live database. Every
// migration after them must pass the check.
var released = map[string][]migrationlint.Rule{
	// SHARE lock on outbox_events for the index build: producers wait.
	"0002_unique_event_id.up.sql": {migrationlint.IndexNotConcurrent},
	// SHARE lock on outbox_lanes for the index build, and an UPDATE of
	// every lane with events (the relay's table, one row per organization);
	// the history is swapped for a partitioned table of the same name (a
	// rename, then CREATE TABLE: the previous release sees the same names).
	"0004_lane_due_and_history_partitions.up.sql": {migrationlint.IndexNotConcurrent, migrationlint.UnbatchedWrite, migrationlint.Rename},
	// SHARE lock on outbox_dead_letters for the index build: only dead
	// letters wait, not producers.
	"0006_channels_and_tags.up.sql": {migrationlint.IndexNotConcurrent},
}

// Every .up.sql passes the blocking-statement check (internal/migrationlint),
// but for the released findings listed above; a .down.sql undoes, and may
// drop what its migration added.
func TestMigrationsDoNotBlockALiveInstallation(t *testing.T) {
	t.Parallel()
	require.Equal(t, migrations.NoTransactionDirective, migrationlint.NoTransactionDirective, "the runner and the check read one directive")
	names, err := fs.Glob(migrations.FS, "*.up.sql")
	require.NoError(t, err)
	require.NotEmpty(t, names)
	for _, name := range names {
		sql, err := fs.ReadFile(migrations.FS, name)
		require.NoError(t, err)
		var got []migrationlint.Rule
		for _, f := range migrationlint.Check(string(sql)) {
			got = append(got, f.Rule)
			if !slices.Contains(released[name], f.Rule) {
				t.Errorf("%s: %s", name, f)
			}
		}
		for _, r := range released[name] {
			require.Contains(t, got, r, "%s no longer has the released finding %s: drop it from the list", name, r)
		}
	}
}
