package relay_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/outboxrelay/outbox"
	"github.com/outboxrelay/outbox/outboxtest/svixtest"
	"github.com/outboxrelay/outbox/relay"
)

func TestAbandonedLeaseIsTakenOverAfterExpiry(t *testing.T) {
	t.Parallel()
	b := setup(t)
	committed := b.appendCommitted(t, []string{"org-held"}, 5)
	// A holder that died mid-lane: its lease runs for another 3 seconds.
	_, err := b.db.Pool.Exec(b.ctx, `INSERT INTO outbox_lanes (organization_id, lease_token, leased_until, leased_by, due_at)
		VALUES ('org-held', $1, now() + interval '3 seconds', 'dead-process', now())`, uuid.New())
	require.NoError(t, err)

	r, _ := b.start(t)
	require.Eventually(t, r.Ready, 10*time.Second, 5*time.Millisecond, "heartbeating: not fenced")
	res, err := r.DrainOrganization(b.ctx, "org-held", time.Second)
	require.NoError(t, err)
	require.True(t, res.Busy, "the lane was worked while another holder's lease was live")
	require.Zero(t, res.Delivered)
	require.Equal(t, len(committed), res.Remaining)
	require.Zero(t, b.fake.MessageCount())

	b.waitMessages(t, len(committed), 10*time.Second)
	b.requireExactlyOnce(t, committed)
	b.waitSettled(t, 10*time.Second)
	var lanes int
	require.NoError(t, b.db.Pool.QueryRow(b.ctx, "SELECT count(*) FROM outbox_lanes WHERE organization_id = 'org-held'").Scan(&lanes))
	require.Zero(t, lanes, "the relay that took the lane over released it, and, with nothing left, deleted it")
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
	require.Zero(t, attempts, "an attempt was recorded by a holder that lost its lease")
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

// Rows written before the producer refused "." and ".." (or by hand) never
// reach a URL: the SDK would splice them unescaped into
// /api/v1/app/../msg, another route. They are dead-lettered without a call.
func TestDotOrganizationsNeverReachAURL(t *testing.T) {
	t.Parallel()
	b := setup(t)
	for _, org := range []string{".", ".."} {
		_, err := b.db.Pool.Exec(b.ctx, `INSERT INTO outbox_events (event_id, organization_id, event_type, payload)
			VALUES (gen_random_uuid(), $1, 'test.event', '{}')`, org)
		require.NoError(t, err)
	}
	fine := b.appendCommitted(t, []string{"org-fine"}, 1)

	r, _ := b.start(t)
	b.waitSettled(t, 10*time.Second)
	waitStats(t, func(st relay.Stats) bool { return st.DeadLettered == 2 && st.Delivered == 1 }, r)
	b.requireExactlyOnce(t, fine)
	for _, req := range b.fake.Requests() {
		require.NotContains(t, []string{".", ".."}, req.App, "a request for app %q: %s %s", req.App, req.Method, req.Path)
		require.NotContains(t, req.Path, "/app/..")
		require.NotContains(t, req.Path, "/app/./")
	}
	dead, err := r.Admin().DeadLetters(b.ctx, relay.DeadLetterListParams{})
	require.NoError(t, err)
	require.Len(t, dead, 2)
	for _, d := range dead {
		require.Contains(t, d.LastError, `must not be "." or ".."`)
		require.Zero(t, d.StatusCode, "Svix was never asked")
	}
}

// A NOTIFY is anyone's to send: a signal for an organization with no
// events writes no lane, a lane left with nothing is deleted at its
// release, and one left idle otherwise (an operator's pause that ended
// with nothing pending) is pruned.
func TestLanesExistOnlyForOrganizationsWithEvents(t *testing.T) {
	t.Parallel()
	b := setup(t)
	r, _ := b.start(t)
	sig, err := outbox.NewNotifySignaler(b.db.Pool, b.cfg.Channel)
	require.NoError(t, err)
	for i := range 20 {
		require.NoError(t, sig.SignalRelay(b.ctx, fmt.Sprintf("nobody-%d", i)))
		require.NoError(t, r.SignalRelay(b.ctx, fmt.Sprintf("nobody-else-%d", i)))
	}
	res, err := r.DrainOrganization(b.ctx, "nobody-0", time.Second)
	require.NoError(t, err)
	require.False(t, res.Busy, "an organization without events is not busy")
	require.Zero(t, res.Remaining)
	committed := b.appendCommitted(t, []string{"org-real"}, 1)
	b.waitMessages(t, 1, 10*time.Second)
	b.requireExactlyOnce(t, committed)
	b.waitSettled(t, 10*time.Second)
	lanes := func() []string {
		rows, err := b.db.Pool.Query(b.ctx, "SELECT organization_id FROM outbox_lanes ORDER BY 1")
		require.NoError(t, err)
		names, err := pgx.CollectRows(rows, pgx.RowTo[string])
		require.NoError(t, err)
		return names
	}
	require.Empty(t, lanes(), "signals wrote no lanes, and the delivered organization's was deleted at its release")

	// Idle for longer than an hour, and free: pruned with the history.
	_, err = b.db.Pool.Exec(b.ctx, `INSERT INTO outbox_lanes (organization_id, suspended_at, suspended_until, suspend_reason, updated_at)
		VALUES ('org-paused-once', now() - interval '3 hours', now() - interval '90 minutes', 'hold', now() - interval '2 hours')`)
	require.NoError(t, err)
	require.Equal(t, []string{"org-paused-once"}, lanes())
	b.cfg.DeliveredRetention = 100 * time.Millisecond // prunes every PollInterval
	b.start(t)
	require.Eventually(t, func() bool { return len(lanes()) == 0 }, 10*time.Second, 20*time.Millisecond)
}

// A head event larger than BatchMaxBytes alone is claimed alone, and the
// turn still knows that more are due: the next turn follows at once, so a
// drain does not stop after it with events left.
func TestOversizedHeadIsFollowedAtOnce(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.cfg.BatchMaxBytes = 2500
	var committed []outbox.AppendResult
	for i, pad := range []string{strings.Repeat("y", 5000), "a", "b"} { // over the bound alone, then two small
		res, err := outbox.Append(b.ctx, b.db.Pool, outbox.AppendParams{OrganizationID: "org-big", EventType: "test.event",
			Payload: map[string]any{"seq": i, "pad": pad}})
		require.NoError(t, err)
		committed = append(committed, res)
	}

	r := b.newRelay(t)
	res, err := r.DrainOrganization(b.ctx, "org-big", 10*time.Second)
	require.NoError(t, err)
	require.Equal(t, len(committed), res.Delivered, "one drain delivers the oversized head and the events behind it")
	require.Zero(t, res.Remaining)
	require.EqualValues(t, 2, r.Stats().Turns, "the 5 kB event alone, then the two small ones")
	b.requireExactlyOnce(t, committed)
}

// A claim is bounded by payload bytes as well as by count, taking the head
// event whatever its size, so memory stays bounded whatever the payloads.
func TestClaimIsBoundedByBytes(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.cfg.BatchMaxBytes = 2500
	big := strings.Repeat("x", 1000) // ~1 kB payloads: two per claim
	var committed []outbox.AppendResult
	for i := range 10 {
		res, err := outbox.Append(b.ctx, b.db.Pool, outbox.AppendParams{OrganizationID: "org-big", EventType: "test.event",
			Payload: map[string]any{"seq": i, "pad": big}})
		require.NoError(t, err)
		committed = append(committed, res)
	}
	huge, err := outbox.Append(b.ctx, b.db.Pool, outbox.AppendParams{OrganizationID: "org-big", EventType: "test.event",
		Payload: map[string]any{"seq": 10, "pad": strings.Repeat("y", 5000)}}) // over the bound alone
	require.NoError(t, err)
	committed = append(committed, huge)

	r := b.newRelay(t)
	res, err := r.DrainOrganization(b.ctx, "org-big", 10*time.Second)
	require.NoError(t, err)
	require.Equal(t, len(committed), res.Delivered)
	require.Zero(t, res.Remaining)
	b.requireExactlyOnce(t, committed)
	require.EqualValues(t, 6, r.Stats().Turns, "ten 1 kB events two a turn, then the 5 kB one alone")
	for i, m := range b.fake.Messages() {
		require.Equal(t, committed[i].EventID.String(), m.EventID, "in order")
	}
}
