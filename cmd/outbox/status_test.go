package main_test

import (
	"encoding/json"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/outboxrelay/outbox"
	"github.com/outboxrelay/outbox/relay"
)

func TestStatus(t *testing.T) {
	t.Parallel()
	b := setup(t)
	for i, org := range []string{"org_a", "org_a", "org_b"} {
		_, err := outbox.Append(b.ctx, b.db.Pool, outbox.AppendParams{OrganizationID: org, EventType: "x.y", Payload: map[string]any{"i": i}})
		require.NoError(t, err)
	}
	_, err := b.db.Pool.Exec(b.ctx, "UPDATE outbox_events SET next_attempt_at = now() + interval '1 hour' WHERE organization_id = 'org_b'")
	require.NoError(t, err)
	b.insertDeadLetter(t, 9001, "org_c", "x.y")

	// The numbers are relay.Admin.Status's (tested in the library); the
	// command prints them as JSON and as a table.
	r := runOutbox(t, b.env, "", "status", "--schema", b.schema, "--json")
	require.Equal(t, 0, r.code, r.stderr)
	var st relay.Status
	require.NoError(t, json.Unmarshal([]byte(r.stdout), &st))
	require.Len(t, st.Organizations, 3)
	require.Equal(t, "org_a", st.Organizations[0].OrganizationID)
	require.Equal(t, 2, st.Organizations[0].Pending)
	require.Equal(t, 3, st.Totals.Pending)
	require.Equal(t, 1, st.Totals.WaitingRetry)
	require.Equal(t, 1, st.Totals.DeadLetters)

	r = runOutbox(t, b.env, "", "status", "--schema", b.schema)
	require.Equal(t, 0, r.code, r.stderr)
	require.Contains(t, r.stdout, "ORGANIZATION")
	require.Contains(t, r.stdout, "TOTAL")
}
