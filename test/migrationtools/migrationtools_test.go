package migrationtools_test

import (
	"context"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/outboxrelay/outbox"
	"github.com/outboxrelay/outbox/internal/pgtest"
	"github.com/outboxrelay/outbox/migrations"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// outboxTables are the tables the migrations create.
var outboxTables = []string{"outbox_dead_letters", "outbox_deliveries", "outbox_events", "outbox_lanes", "outbox_relays"}

// latestVersion is the highest migration version shipped.
func latestVersion() int {
	all := migrations.All()
	return all[len(all)-1].Version
}

// tablesIn returns the names of the tables in db's schema, sorted.
func tablesIn(t *testing.T, db *pgtest.DB) []string {
	t.Helper()
	rows, err := db.Pool.Query(context.Background(),
		"SELECT table_name::text FROM information_schema.tables WHERE table_schema = $1 ORDER BY 1", db.Schema)
	require.NoError(t, err)
	names, err := pgx.CollectRows(rows, pgx.RowTo[string])
	require.NoError(t, err)
	return names
}

// requireApplied asserts that every migration is applied in db's schema: the
// four tables are there, and outbox.Append works through a pool whose
// search_path is the schema, including the unique event id of 0002.
func requireApplied(t *testing.T, db *pgtest.DB) {
	t.Helper()
	ctx := context.Background()
	require.Subset(t, tablesIn(t, db), outboxTables, "the outbox tables are in schema %s", db.Schema)

	p := outbox.AppendParams{
		OrganizationID: "org_migrationtools",
		EventType:      "migration.applied",
		Payload:        map[string]any{"schema": db.Schema},
	}
	res, err := outbox.Append(ctx, db.Pool, p)
	require.NoError(t, err)
	var org string
	err = db.Pool.QueryRow(ctx, "SELECT organization_id FROM "+pgx.Identifier{db.Schema, "outbox_events"}.Sanitize()+" WHERE id = $1", res.ID).Scan(&org)
	require.NoError(t, err, "the event is in %s.outbox_events", db.Schema)
	require.Equal(t, p.OrganizationID, org)

	p.EventID = res.EventID
	_, err = outbox.Append(ctx, db.Pool, p)
	require.ErrorIs(t, err, outbox.ErrDuplicateEventID, "0002_unique_event_id is applied")
}

// requireReverted asserts that no outbox table is left in db's schema: only
// the tool's own version table, if it keeps one.
func requireReverted(t *testing.T, db *pgtest.DB, versionTable ...string) {
	t.Helper()
	require.ElementsMatch(t, versionTable, tablesIn(t, db), "tables left in schema %s after down", db.Schema)
}
