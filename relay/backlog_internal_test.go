package relay

import (
	"context"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"
	"github.com/stretchr/testify/require"

	"github.com/outboxrelay/outbox/internal/pgtest"
)

// backlogSetup returns a backlog sampler alone (no relay) naming the top
// organization, on a fake clock, and a function appending n events of org.
func backlogSetup(t *testing.T) (*backlogSampler, *clockwork.FakeClock, func(org string, n int)) {
	t.Helper()
	db := pgtest.New(t)
	clock := clockwork.NewFakeClock()
	cfg := Config{SvixToken: "t", BacklogTopOrganizations: 1}.withDefaults()
	cfg.clock = clock
	add := func(org string, n int) {
		_, err := db.Pool.Exec(context.Background(), `INSERT INTO outbox_events (event_id, organization_id, event_type, payload, created_at)
			SELECT gen_random_uuid(), $1, 'test.event', '{}', now() - interval '1 minute' FROM generate_series(1, $2)`, org, n)
		require.NoError(t, err)
	}
	return newBacklogSampler(db.Pool, newQueries(cfg.Schema), cfg), clock, add
}

// totals sums a reading by organization.
func totals(rows []backlogRow) map[string]int64 {
	out := map[string]int64{}
	for _, r := range rows {
		out[r.org] += r.events
	}
	return out
}

// One reading answers every collection for backlogCacheTTL on the relay's
// clock; the next collection after it reads the table again.
func TestBacklogReadingIsCachedForItsTTL(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s, clock, add := backlogSetup(t)

	rows, err := s.read(ctx)
	require.NoError(t, err)
	require.Equal(t, []backlogRow{{org: OtherOrganizations}}, rows, "nothing pending reads as one zero series")

	add("org-a", 2)
	clock.Advance(backlogCacheTTL - time.Millisecond)
	rows, err = s.read(ctx)
	require.NoError(t, err)
	require.Equal(t, map[string]int64{OtherOrganizations: 0}, totals(rows), "within the TTL: the cached reading")

	clock.Advance(time.Millisecond)
	add("org-b", 3)
	rows, err = s.read(ctx)
	require.NoError(t, err)
	require.Equal(t, map[string]int64{"org-a": 2, OtherOrganizations: 3}, totals(rows),
		"after the TTL: read again, the oldest organization by name (both are a minute old: the first id), the rest together")
}

// A slow reading (a deep backlog) answers for backlogCostFactor times its
// duration, so the gauges never take more than 1/backlogCostFactor of one
// connection's time.
func TestSlowBacklogReadingIsCachedLonger(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s, clock, add := backlogSetup(t)
	add("org-a", 1)
	_, err := s.read(ctx)
	require.NoError(t, err)
	s.took = time.Second // as if the query had taken a second

	add("org-a", 1)
	clock.Advance(backlogCostFactor*time.Second - time.Millisecond)
	rows, err := s.read(ctx)
	require.NoError(t, err)
	require.Equal(t, map[string]int64{"org-a": 1}, totals(rows), "past the TTL, within 20 times the reading's duration: cached")

	clock.Advance(time.Millisecond)
	rows, err = s.read(ctx)
	require.NoError(t, err)
	require.Equal(t, map[string]int64{"org-a": 2}, totals(rows), "read again")
}
