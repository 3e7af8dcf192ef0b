package relay_test

import (
	"context"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/outboxrelay/outbox/outboxtest/svixtest"
	"github.com/outboxrelay/outbox/relay"
)

func TestAbandonedLeaseIsTakenOverAfterExpiry(t *testing.T) {
	t.Parallel()
	b := setup(t)
	committed := b.appendCommitted(t, []string{"org-held"}, 5)
	// A holder that died mid-lane: its lease runs for another 3 seconds.
	_, err := b.db.Pool.Exec(b.ctx, `INSERT INTO outbox_lanes (organization_id, lease_token, leased_until, leased_by)
		VALUES ('org-held', $1, now() + interval '3 seconds', 'dead-process')`, uuid.New())
	require.NoError(t, err)

	r, _ := b.start(t)
	res, err := r.DrainOrganization(b.ctx, "org-held", time.Second)
	require.NoError(t, err)
	require.True(t, res.Busy, "the lane was worked while another holder's lease was live")
	require.Zero(t, res.Delivered)
	require.Equal(t, len(committed), res.Remaining)
	require.Zero(t, b.fake.MessageCount())

	b.waitMessages(t, len(committed), 10*time.Second)
	b.requireExactlyOnce(t, committed)
	var holder *string
	require.NoError(t, b.db.Pool.QueryRow(b.ctx, "SELECT leased_by FROM outbox_lanes WHERE organization_id = 'org-held'").Scan(&holder))
	require.NotEqual(t, "dead-process", *holder)
}

func TestStaleHolderCannotSettle(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.cfg.SendTimeout = 2 * time.Second
	committed := b.appendCommitted(t, []string{"org-stale"}, 1)
	r := b.newRelay(t)

	// While the drain's call hangs in Svix, another holder takes the lane
	// over (as if our lease had expired).
	remove := b.fake.InjectFault(svixtest.Fault{Kind: svixtest.FaultHang, Match: func(req *svixtest.Request) bool {
		_, err := b.db.Pool.Exec(context.Background(), "UPDATE outbox_lanes SET lease_token = gen_random_uuid(), leased_until = now() + interval '1 minute' WHERE organization_id = 'org-stale'")
		return err == nil
	}, Times: 1})
	defer remove()
	res, err := r.DrainOrganization(b.ctx, "org-stale", 5*time.Second)
	require.NoError(t, err)
	require.Equal(t, 1, res.Remaining, "the stale holder must not settle the event")
	var attempts int
	var lastErr *string
	require.NoError(t, b.db.Pool.QueryRow(b.ctx, "SELECT attempts, last_error FROM outbox_events").Scan(&attempts, &lastErr))
	require.Equal(t, 1, attempts)
	require.Nil(t, lastErr, "a retry was recorded by a holder that lost its lease")
	_ = committed
}

func TestShutdownDuringResolveCostsNoAttempt(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.cfg.ShutdownTimeout = 100 * time.Millisecond
	resolving := make(chan struct{}, 1)
	b.cfg.Resolver = relay.ResolverFunc(func(ctx context.Context, org string) (relay.Destination, error) {
		select {
		case resolving <- struct{}{}:
		default:
		}
		<-ctx.Done() // a directory lookup that only ends when cancelled
		return relay.Destination{}, ctx.Err()
	})
	b.appendCommitted(t, []string{"org-r"}, 1)

	_, stop := b.start(t)
	select {
	case <-resolving:
	case <-time.After(10 * time.Second):
		t.Fatal("the resolver was never called")
	}
	stop()
	var attempts int
	var lastErr *string
	require.NoError(t, b.db.Pool.QueryRow(b.ctx, "SELECT attempts, last_error FROM outbox_events").Scan(&attempts, &lastErr))
	require.Zero(t, attempts, "an interrupted resolve is not an attempt")
	require.Nil(t, lastErr)
}
