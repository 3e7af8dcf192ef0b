package relay_test

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/outboxrelay/outbox"
	"github.com/outboxrelay/outbox/relay"
)

func TestStatus(t *testing.T) {
	t.Parallel()
	b := setup(t)
	admin, err := relay.NewAdmin(b.db.Pool, relay.AdminConfig{})
	require.NoError(t, err)

	st, err := admin.Status(b.ctx)
	require.NoError(t, err)
	require.Empty(t, st.Organizations)
	require.Equal(t, relay.OrganizationStatus{OrganizationID: "TOTAL"}, st.Totals)

	for i, org := range []string{"org_a", "org_a", "org_b"} {
		_, err := outbox.Append(b.ctx, b.db.Pool, outbox.AppendParams{OrganizationID: org, EventType: "x.y", Payload: map[string]any{"i": i}})
		require.NoError(t, err)
	}
	_, err = b.db.Pool.Exec(b.ctx, "UPDATE outbox_events SET next_attempt_at = now() + interval '1 hour', created_at = now() - interval '1 minute' WHERE organization_id = 'org_b'")
	require.NoError(t, err)
	b.insertDeadLetter(t, 9001, "org_c")
	b.insertDeadLetter(t, 9002, "org_a")

	st, err = admin.Status(b.ctx)
	require.NoError(t, err)
	require.Len(t, st.Organizations, 3)
	a, bb, c := st.Organizations[0], st.Organizations[1], st.Organizations[2]
	require.Equal(t, "org_a", a.OrganizationID, "most pending first")
	require.Equal(t, 2, a.Pending)
	require.Equal(t, 1, a.DeadLetters)
	require.Zero(t, a.WaitingRetry)
	require.Equal(t, "org_b", bb.OrganizationID)
	require.Equal(t, 1, bb.Pending)
	require.Equal(t, 1, bb.WaitingRetry)
	require.InDelta(t, 60, bb.OldestPendingAge, 5)
	require.Equal(t, relay.OrganizationStatus{OrganizationID: "org_c", DeadLetters: 1}, c)
	require.Equal(t, 3, st.Totals.Pending)
	require.Equal(t, 1, st.Totals.WaitingRetry)
	require.Equal(t, 2, st.Totals.DeadLetters)
	require.Equal(t, bb.OldestPendingAge, st.Totals.OldestPendingAge)
}
