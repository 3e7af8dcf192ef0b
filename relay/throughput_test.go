package relay_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/outboxrelay/outbox/relay"
)

func TestDeliveryRateCountsSettledEventsPerMinute(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.appendCommitted(t, []string{"org-rate-a", "org-rate-b"}, 3)
	r, _ := b.start(t)
	b.waitMessages(t, 6, 30*time.Second)
	b.waitSettled(t, 30*time.Second)
	admin := r.Admin()

	rate, err := admin.DeliveryRate(b.ctx, 5)
	require.NoError(t, err)
	require.Len(t, rate, 5, "one entry per minute, the empty ones too")
	var total int64
	for i, m := range rate {
		total += m.Settled
		require.Zero(t, m.Minute.Second(), "minutes start on the minute")
		if i > 0 {
			require.Equal(t, time.Minute, m.Minute.Sub(rate[i-1].Minute), "oldest first, a minute apart")
		}
	}
	require.EqualValues(t, 6, total, "every settled event counted once")

	for _, bad := range []int{0, -1, 1441} {
		_, err := admin.DeliveryRate(b.ctx, bad)
		require.ErrorIs(t, err, relay.ErrInvalidWindow, "minutes %d", bad)
	}
}

func TestCountDeadLettersMatchesTheFilter(t *testing.T) {
	t.Parallel()
	b := setup(t)
	admin, err := relay.NewAdmin(b.db.Pool, relay.AdminConfig{})
	require.NoError(t, err)
	b.insertDeadLetter(t, 9001, "org-count-a")
	b.insertDeadLetter(t, 9002, "org-count-a")
	b.insertDeadLetter(t, 9003, "org-count-b")
	_, err = b.db.Pool.Exec(b.ctx, `UPDATE outbox_dead_letters SET status_code = NULL WHERE id = 9003`)
	require.NoError(t, err)

	for _, tc := range []struct {
		name   string
		filter relay.DeadLetterFilter
		want   int
	}{
		{"all", relay.DeadLetterFilter{}, 3},
		{"organization", relay.DeadLetterFilter{OrganizationID: "org-count-a"}, 2},
		{"status", relay.DeadLetterFilter{StatusCode: 422}, 2},
		{"never answered", relay.DeadLetterFilter{StatusCode: -1}, 1},
		{"before", relay.DeadLetterFilter{Before: time.Now().Add(-time.Hour)}, 0},
	} {
		n, err := admin.CountDeadLetters(b.ctx, tc.filter)
		require.NoError(t, err, tc.name)
		require.Equal(t, tc.want, n, tc.name)
		listed, err := admin.DeadLetters(b.ctx, relay.DeadLetterListParams{DeadLetterFilter: tc.filter})
		require.NoError(t, err, tc.name)
		require.Len(t, listed, tc.want, "the list matches what the count counts: %s", tc.name)
	}
}
