package relay_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/outboxrelay/outbox"
	"github.com/outboxrelay/outbox/outboxtest/svixtest"
	"github.com/outboxrelay/outbox/relay"
)

// An event's channels and tags reach Svix with its message, also after it
// was dead-lettered and requeued; an event without them sends none.
func TestChannelsAndTagsReachSvix(t *testing.T) {
	t.Parallel()
	b := setup(t)
	routed := outbox.AppendParams{OrganizationID: "org-routed", EventType: "invoice.paid", Payload: map[string]any{"n": 1},
		Channels: []string{"project_1", "org:42"}, Tags: []string{"billing/v2"}}
	_, err := outbox.Append(b.ctx, b.db.Pool, routed)
	require.NoError(t, err)
	_, err = outbox.AppendBatch(b.ctx, b.db.Pool, []outbox.AppendParams{routed, {OrganizationID: "org-plain", EventType: "invoice.paid", Payload: map[string]any{"n": 2}}})
	require.NoError(t, err)
	_, stop := b.start(t)
	b.waitMessages(t, 3, 10*time.Second)
	stop()
	require.Len(t, b.fake.MessagesFor("org-routed"), 2)
	for _, m := range b.fake.MessagesFor("org-routed") {
		require.Equal(t, routed.Channels, m.Channels)
		require.Equal(t, routed.Tags, m.Tags)
	}
	plain := b.fake.MessagesFor("org-plain")
	require.Len(t, plain, 1)
	require.Empty(t, plain[0].Channels)
	require.Empty(t, plain[0].Tags)

	// Refused once for good, requeued, sent again with the same routing.
	b.fake.InjectFault(svixtest.Fault{Status: 400, Times: 1})
	routed.Payload = map[string]any{"n": 3}
	_, err = outbox.Append(b.ctx, b.db.Pool, routed)
	require.NoError(t, err)
	r, stop := b.start(t)
	admin := r.Admin()
	require.Eventually(t, func() bool {
		st, err := admin.Status(b.ctx)
		require.NoError(t, err)
		return st.Totals.DeadLetters == 1
	}, 10*time.Second, 10*time.Millisecond)
	n, err := admin.RequeueDeadLetters(b.ctx, relay.DeadLetterSelection{DeadLetterFilter: relay.DeadLetterFilter{OrganizationID: "org-routed"}})
	require.NoError(t, err)
	require.Equal(t, 1, n)
	b.waitMessages(t, 4, 10*time.Second)
	stop()
	msgs := b.fake.MessagesFor("org-routed")
	require.Len(t, msgs, 3)
	require.Equal(t, routed.Channels, msgs[2].Channels, "a requeued event keeps its channels")
	require.Equal(t, routed.Tags, msgs[2].Tags)
}
