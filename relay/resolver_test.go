package relay_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/outboxrelay/outbox/relay"
)

func TestResolver(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.cfg.Resolver = relay.ResolverFunc(func(_ context.Context, org string) (relay.Destination, error) {
		switch org {
		case "org-none":
			return relay.Destination{Skip: true}, nil
		case "org-flaky":
			return relay.Destination{}, errors.New("directory down")
		case "org-missing-app":
			return relay.Destination{App: "app-that-does-not-exist"}, nil
		}
		return relay.Destination{App: "shared-" + org, CreateName: "Shared " + org}, nil
	})
	b.appendCommitted(t, []string{"org-none", "org-flaky", "org-missing-app", "org-ok"}, 2)

	r, _ := b.start(t)
	b.waitMessages(t, 2, 10*time.Second)
	require.Eventually(t, func() bool {
		st := r.Stats()
		return st.Skipped == 2 && st.DeadLettered == 2 && st.Retried > 0
	}, 10*time.Second, 10*time.Millisecond)
	require.Len(t, b.fake.MessagesFor("shared-org-ok"), 2)
	skipped := 0
	for _, d := range b.deliveries(t) {
		if d.outcome == "skipped" {
			skipped++
			require.Empty(t, d.messageID)
		}
	}
	require.Equal(t, 2, skipped)
	var flaky int
	require.NoError(t, b.db.Pool.QueryRow(b.ctx, "SELECT count(*) FROM outbox_events WHERE organization_id = 'org-flaky' AND last_error LIKE '%directory down%'").Scan(&flaky))
	require.Equal(t, 1, flaky, "a resolver error retries the head event")
	dead, err := r.Admin().DeadLetters(b.ctx, relay.DeadLetterListParams{DeadLetterFilter: relay.DeadLetterFilter{OrganizationID: "org-missing-app"}})
	require.NoError(t, err)
	require.Len(t, dead, 2)
	require.Equal(t, 404, dead[0].StatusCode)
}

// A Resolver that panics for one organization holds that lane, with
// backoff, and nothing else: the process and the other lanes go on.
func TestPanickingResolverHoldsOnlyItsLane(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.cfg.Resolver = relay.ResolverFunc(func(ctx context.Context, org string) (relay.Destination, error) {
		if org == "org-panics" {
			panic("resolver bug")
		}
		return relay.DefaultResolver.Resolve(ctx, org)
	})
	fine := b.appendCommitted(t, []string{"org-fine-1", "org-fine-2"}, 3)
	b.appendCommitted(t, []string{"org-panics"}, 2)

	r, _ := b.start(t)
	b.waitMessages(t, len(fine), 10*time.Second)
	require.Eventually(t, func() bool { return r.Stats().Retried >= 1 }, 10*time.Second, 10*time.Millisecond)
	b.requireExactlyOnce(t, fine)
	var attempts int
	var next *time.Time
	var lastErr string
	require.NoError(t, b.db.Pool.QueryRow(b.ctx, `SELECT attempts, next_attempt_at, last_error FROM outbox_events
		WHERE organization_id = 'org-panics' ORDER BY id LIMIT 1`).Scan(&attempts, &next, &lastErr))
	require.Positive(t, attempts)
	require.NotNil(t, next, "the head waits for a retry: the lane is held with backoff")
	require.Contains(t, lastErr, "resolver panicked: resolver bug")
	require.Contains(t, b.logs.String(), "Resolver panicked")
	require.Contains(t, b.logs.String(), "organization_id=org-panics")
}
