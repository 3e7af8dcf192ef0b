package migrations

import (
	"testing"

	"github.com/stretchr/testify/require"
)

// The index a no-transaction migration builds is found by its pg_class
// name, however the statement writes it.
func TestIndexRelname(t *testing.T) {
	t.Parallel()
	for stmt, want := range map[string]string{
		"CREATE INDEX CONCURRENTLY IF NOT EXISTS events_x ON outbox_events (x)": "events_x",
		"create unique index concurrently Foo_Idx on outbox_events (x)":         "foo_idx",
		`CREATE INDEX CONCURRENTLY "Mixed.Name" ON outbox_events (x)`:           "Mixed.Name",
		`CREATE INDEX CONCURRENTLY IF NOT EXISTS s."Q" ON s.outbox_events (x)`:  "Q",
		"CREATE INDEX CONCURRENTLY myschema.idx ON myschema.outbox_events (x)":  "idx",
	} {
		m := createConcurrently.FindStringSubmatch(stmt)
		require.NotNil(t, m, stmt)
		require.Equal(t, want, indexRelname(m[1]), stmt)
	}
	require.Nil(t, createConcurrently.FindStringSubmatch("CREATE INDEX CONCURRENTLY ON outbox_events (x)"), "no name: nothing to look for")
}
