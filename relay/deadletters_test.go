package relay_test

import (
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/outboxrelay/outbox"
	"github.com/outboxrelay/outbox/outboxtest/svixtest"
	"github.com/outboxrelay/outbox/relay"
)

func TestRequeueDelivers(t *testing.T) {
	t.Parallel()
	b := setup(t)
	committed := b.appendCommitted(t, []string{"org-rq", "org-other"}, 2)
	remove := b.fake.InjectFault(svixtest.Fault{Kind: svixtest.FaultStatus, Status: 422,
		Match: func(r *svixtest.Request) bool { return r.App == "org-rq" }})

	r, _ := b.start(t)
	b.waitMessages(t, 2, 10*time.Second)
	b.waitSettled(t, 10*time.Second)
	admin := r.Admin()
	dead, err := admin.DeadLetters(b.ctx, relay.DeadLetterListParams{DeadLetterFilter: relay.DeadLetterFilter{OrganizationID: "org-rq"}})
	require.NoError(t, err)
	require.Len(t, dead, 2)

	_, err = admin.RequeueDeadLetters(b.ctx, relay.DeadLetterSelection{})
	require.ErrorIs(t, err, relay.ErrNoFilter)
	remove()
	n, err := admin.RequeueDeadLetters(b.ctx, relay.DeadLetterSelection{DeadLetterFilter: relay.DeadLetterFilter{OrganizationID: "org-rq", IDs: []int64{dead[0].ID}}})
	require.NoError(t, err)
	require.Equal(t, 1, n)
	b.waitMessages(t, 3, 10*time.Second)
	n, err = admin.RequeueDeadLetters(b.ctx, relay.DeadLetterSelection{All: true})
	require.NoError(t, err)
	require.Equal(t, 1, n)
	b.waitMessages(t, 4, 10*time.Second)
	b.waitSettled(t, 10*time.Second)
	b.requireExactlyOnce(t, committed)

	left, err := admin.DeadLetters(b.ctx, relay.DeadLetterListParams{})
	require.NoError(t, err)
	require.Empty(t, left)
}

func TestPurgeDeadLetters(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.fake.InjectFault(svixtest.Fault{Kind: svixtest.FaultStatus, Status: 400})
	b.appendCommitted(t, []string{"org-x", "org-y"}, 2)

	r, _ := b.start(t)
	admin := r.Admin()
	require.Eventually(t, func() bool {
		d, err := admin.DeadLetters(b.ctx, relay.DeadLetterListParams{})
		return err == nil && len(d) == 4
	}, 10*time.Second, 10*time.Millisecond)

	n, err := admin.PurgeDeadLetters(b.ctx, relay.DeadLetterSelection{DeadLetterFilter: relay.DeadLetterFilter{OrganizationID: "org-x", EventType: "test.event"}})
	require.NoError(t, err)
	require.Equal(t, 2, n)
	_, err = admin.PurgeDeadLetters(b.ctx, relay.DeadLetterSelection{})
	require.ErrorIs(t, err, relay.ErrNoFilter)
	n, err = admin.PurgeDeadLetters(b.ctx, relay.DeadLetterSelection{DeadLetterFilter: relay.DeadLetterFilter{Since: time.Now().Add(-time.Hour)}})
	require.NoError(t, err)
	require.Equal(t, 2, n)
	d, err := admin.DeadLetters(b.ctx, relay.DeadLetterListParams{})
	require.NoError(t, err)
	require.Empty(t, d)
}

// A dead letter whose event id is pending again (a producer appended it
// anew) stays a dead letter on requeue: the pending row is that event, and
// a requeue must never lose a row to the unique event id.
func TestRequeueSkipsADeadLetterPendingAgain(t *testing.T) {
	t.Parallel()
	b := setup(t)
	id := uuid.New()
	_, err := b.db.Pool.Exec(b.ctx, `INSERT INTO outbox_dead_letters
		(id, event_id, organization_id, event_type, payload, created_at, attempts, last_error)
		VALUES (1000000, $1, 'org-d', 'x.y', '{}', now(), 1, 'refused')`, id)
	require.NoError(t, err)
	_, err = outbox.Append(b.ctx, b.db.Pool, outbox.AppendParams{OrganizationID: "org-d", EventType: "x.y", Payload: map[string]any{}, EventID: id})
	require.NoError(t, err)
	admin, err := relay.NewAdmin(b.db.Pool, relay.AdminConfig{})
	require.NoError(t, err)
	n, err := admin.RequeueDeadLetters(b.ctx, relay.DeadLetterSelection{All: true})
	require.NoError(t, err)
	require.Zero(t, n)
	dead, err := admin.DeadLetters(b.ctx, relay.DeadLetterListParams{})
	require.NoError(t, err)
	require.Len(t, dead, 1, "still a dead letter")
	require.Equal(t, 1, b.pending(t))
}
