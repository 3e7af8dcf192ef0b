package relay_test

import (
	"net/http"
	"net/url"
	"slices"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/outboxrelay/outbox/internal/testnet"
	"github.com/outboxrelay/outbox/outboxtest/svixtest"
	"github.com/outboxrelay/outbox/relay"
)

// holdLane makes org's lane look held, for a long lease, by the relay
// instance holder (nil: a holder that does not heartbeat).
func (b *bundle) holdLane(t *testing.T, org string, holder *uuid.UUID) {
	t.Helper()
	_, err := b.db.Pool.Exec(b.ctx, `INSERT INTO outbox_lanes (organization_id, lease_token, leased_until, leased_by, holder, due_at)
		VALUES ($1, gen_random_uuid(), now() + interval '1 hour', 'another-replica', $2, now())`, org, holder)
	require.NoError(t, err)
}

// relayRow writes a relay's heartbeat row, alive until now + d (d < 0:
// stale).
func (b *bundle) relayRow(t *testing.T, d time.Duration) uuid.UUID {
	t.Helper()
	id := uuid.New()
	_, err := b.db.Pool.Exec(b.ctx, `INSERT INTO outbox_relays (instance, name, alive_until)
		VALUES ($1, 'another-replica', now() + $2 * interval '1 millisecond')`, id, d.Milliseconds())
	require.NoError(t, err)
	return id
}

// A lane whose holder stopped heartbeating is taken over at once, not when
// its hour-long lease runs out; one whose holder is alive, or has no
// holder (a DrainOrganization alone), is not.
func TestLanesOfADeadReplicaAreTakenOver(t *testing.T) {
	t.Parallel()
	b := setup(t)
	dead := b.relayRow(t, -time.Second)
	live := b.relayRow(t, time.Hour)
	orphaned := b.appendCommitted(t, []string{"org-of-dead"}, 3)
	b.appendCommitted(t, []string{"org-of-live", "org-of-none"}, 1)
	b.holdLane(t, "org-of-dead", &dead)
	b.holdLane(t, "org-of-live", &live)
	b.holdLane(t, "org-of-none", nil)

	r := b.newRelay(t)
	signals := relay.InitTestSignals(r)
	b.run(t, r)
	b.waitMessages(t, len(orphaned), 10*time.Second)
	b.requireExactlyOnce(t, orphaned)
	// The claim takes a stale holder's lane by itself; the heartbeat that
	// got through (its beat ends after it has marked the stale relays) may
	// come after the deliveries, since the sweep no longer waits for it.
	for signals.Beat.Wait(t) != nil { // a loaded server may time one out
	}
	var mourned bool
	require.NoError(t, b.db.Pool.QueryRow(b.ctx, "SELECT mourned FROM outbox_relays WHERE instance = $1", dead).Scan(&mourned))
	require.True(t, mourned, "the dead replica was found by a heartbeat")
	for _, org := range []string{"org-of-live", "org-of-none"} {
		res, err := r.DrainOrganization(b.ctx, org, time.Second)
		require.NoError(t, err)
		require.True(t, res.Busy, "%s is held by a live or holderless lease", org)
	}
	require.Empty(t, b.fake.MessagesFor("org-of-live"))
	require.Empty(t, b.fake.MessagesFor("org-of-none"))
}

// A running relay's lanes name it as holder, its row stays fresh while it
// runs, and it leaves no row behind when it stops.
func TestRelayHeartbeats(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.cfg.HeartbeatInterval, b.cfg.LivenessTimeout = 100*time.Millisecond, time.Second
	r := b.newRelay(t)
	signals := relay.InitTestSignals(r)
	stop := b.run(t, r)
	waitHeartbeat(t, signals)
	var firstUntil time.Time
	require.NoError(t, b.db.Pool.QueryRow(b.ctx, "SELECT alive_until FROM outbox_relays").Scan(&firstUntil))
	for past := false; !past; { // the database's clock passes the first heartbeat's lease
		waitHeartbeat(t, signals)
		require.NoError(t, b.db.Pool.QueryRow(b.ctx, "SELECT now() > $1", firstUntil).Scan(&past))
	}
	waitHeartbeat(t, signals) // one sent after the first lease ran out
	var rows int
	var until time.Time
	require.NoError(t, b.db.Pool.QueryRow(b.ctx, "SELECT count(*), max(alive_until) FROM outbox_relays").Scan(&rows, &until))
	require.Equal(t, 1, rows)
	require.True(t, until.After(firstUntil.Add(b.cfg.HeartbeatInterval)), "heartbeats renew the row past the first lease")
	stop()
	require.NoError(t, b.db.Pool.QueryRow(b.ctx, "SELECT count(*) FROM outbox_relays").Scan(&rows))
	require.Zero(t, rows, "a clean stop leaves no row")
}

// waitHeartbeat waits for a heartbeat that succeeded. On a loaded machine
// one may miss its deadline (LivenessTimeout, dial included), and the relay
// tries again on the next tick; a few in a row may, not a run of 20.
func waitHeartbeat(t *testing.T, signals *relay.TestSignals) {
	t.Helper()
	var failed []error
	for len(failed) < 20 {
		err := signals.Beat.Wait(t)
		if err == nil {
			return
		}
		failed = append(failed, err)
	}
	t.Fatalf("20 heartbeats in a row failed, the last with: %v", failed[len(failed)-1])
}

// taggingTransport marks a relay's calls so the fake's log tells relays apart.
type taggingTransport struct{ tag string }

func (t taggingTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	req = req.Clone(req.Context())
	req.Header.Set("X-Test-Relay", t.tag)
	return http.DefaultTransport.RoundTrip(req)
}

// A relay cut off from its database (a partition, a vanished host: no FIN,
// the connection just goes silent) stops starting Svix calls before its
// heartbeat goes stale, and another relay takes its organizations over
// once it is, long before their leases run out.
func TestCutOffRelayFencesItselfAndIsTakenOver(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.fake.SetLatency(100 * time.Millisecond) // a lane of 30 events takes 3 s: A is mid-turn when cut
	b.cfg.LeaseDuration = time.Hour           // only liveness can hand the lanes over
	// The default: A fences itself 1.1 s after its last heartbeat through,
	// well before its 3 s of calls end (setup's 5 s would let them end first).
	b.cfg.LivenessTimeout = relay.DefaultLivenessTimeout
	b.cfg.SendTimeout = 5 * time.Second
	b.cfg.PollInterval = 200 * time.Millisecond
	var orgs []string
	for i := range 8 {
		orgs = append(orgs, "org-cut-"+string(rune('a'+i)))
	}
	committed := b.appendCommitted(t, orgs, 30)

	proxy := testnet.NewProxy(t, b.db.URL)
	cutURL, err := url.Parse(b.db.URL)
	require.NoError(t, err)
	cutURL.Host = proxy.Addr()
	cutPool, err := pgxpool.New(b.ctx, cutURL.String())
	require.NoError(t, err)
	t.Cleanup(cutPool.Close)
	cfgA := b.cfg
	cfgA.HTTPClient = &http.Client{Transport: taggingTransport{"A"}}
	cfgA.PollOnly = true // no LISTEN connection to notice the cut either
	cfgA.ID = "relay-a"
	a, err := relay.New(cutPool, cfgA)
	require.NoError(t, err)
	defer b.run(t, a)()
	defer proxy.Thaw() // before A stops: its settlements need the database
	require.Eventually(t, func() bool { return b.fake.MessageCount() >= len(orgs) }, 10*time.Second, 5*time.Millisecond, "A is mid-flow")

	proxy.Freeze()
	frozenAt := time.Now()
	// From A's alive_until, which it can no longer move, B may take its
	// lanes: A must have fenced itself by then.
	var staleAt time.Time
	require.NoError(t, b.db.Pool.QueryRow(b.ctx, "SELECT max(alive_until) FROM outbox_relays WHERE name = 'relay-a'").Scan(&staleAt))
	rows, err := b.db.Pool.Query(b.ctx, "SELECT organization_id FROM outbox_lanes WHERE leased_by = 'relay-a' AND lease_token IS NOT NULL")
	require.NoError(t, err)
	heldByA, err := pgx.CollectRows(rows, pgx.RowTo[string])
	require.NoError(t, err)
	require.NotEmpty(t, heldByA, "A held lanes when it was cut off")
	cfgB := b.cfg
	cfgB.HTTPClient = &http.Client{Transport: taggingTransport{"B"}}
	bRelay, err := relay.New(b.db.Pool, cfgB)
	require.NoError(t, err)
	defer b.run(t, bRelay)()

	b.waitSettled(t, 30*time.Second) // B settles everything: A can reach nothing
	var lastA, firstB time.Time
	for _, req := range b.fake.Requests() {
		if req.Method != http.MethodPost {
			continue
		}
		switch req.Header.Get("X-Test-Relay") {
		case "A":
			if req.Time.After(lastA) {
				lastA = req.Time
			}
		case "B":
			if slices.Contains(heldByA, req.App) && (firstB.IsZero() || req.Time.Before(firstB)) {
				firstB = req.Time
			}
		}
	}
	require.True(t, lastA.Before(staleAt), "A started a call %s after its heartbeat went stale", lastA.Sub(staleAt))
	require.False(t, firstB.IsZero())
	takeover := firstB.Sub(frozenAt)
	t.Logf("A fenced %s after the cut (last call); B resumed A's organizations %s after it", lastA.Sub(frozenAt), takeover)
	require.True(t, firstB.After(staleAt), "B waited for A's heartbeat to go stale (it resumed %s before)", staleAt.Sub(firstB))
	// B sees A stale at its next heartbeat (every 500 ms): about a second
	// on a quiet machine (the fault suite measures it). The bound only has
	// to tell liveness from the hour's lease, on however busy a machine.
	require.Less(t, firstB.Sub(staleAt), 30*time.Second, "failover by liveness, not by the lease")
	require.Eventually(t, func() bool { return !a.Ready() }, 5*time.Second, 10*time.Millisecond, "a fenced relay is not ready")
	b.requireExactlyOnce(t, committed)
	b.requireInOrder(t, committed)
}

// A relay stopping gracefully waits up to ShutdownTimeout for its calls in
// flight. It used to stop heartbeating as soon as Run's context ended, so
// after LivenessTimeout another replica took its lanes, its settlements
// wrote nothing, and every event it had sent was sent again. It heartbeats
// until its last settlement is done.
func TestGracefulStopKeepsItsLanes(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.cfg.HeartbeatInterval = 100 * time.Millisecond
	b.cfg.LivenessTimeout = time.Second // a heartbeat may be slow on a loaded machine, not 1 s slow
	b.cfg.SendTimeout = 10 * time.Second
	b.cfg.LeaseDuration = 30 * time.Second
	b.cfg.ShutdownTimeout = 20 * time.Second
	release := make(chan struct{})
	b.fake.InjectFault(svixtest.Fault{Match: func(r *svixtest.Request) bool { // a slow create, then a success
		if r.Method == http.MethodPost {
			<-release
		}
		return false
	}})
	committed := b.appendCommitted(t, []string{"org-slow"}, 1)

	stopping, stop := b.start(t)
	require.Eventually(t, func() bool { return b.fake.CreateAttempts() == 1 }, 10*time.Second, 5*time.Millisecond)
	stopped := make(chan struct{})
	go func() { defer close(stopped); stop() }()
	// The stopping relay's row must stay alive past LivenessTimeout after
	// the stop began, while the call hangs.
	var began time.Time
	require.NoError(t, b.db.Pool.QueryRow(b.ctx, "SELECT now()").Scan(&began))
	require.Eventually(t, func() bool {
		var alive bool
		err := b.db.Pool.QueryRow(b.ctx, `SELECT EXISTS (SELECT 1 FROM outbox_relays
			WHERE alive_until > $1::timestamptz + $2 * interval '1 millisecond')`, began, 2*b.cfg.LivenessTimeout.Milliseconds()).Scan(&alive)
		return err == nil && alive
	}, 20*time.Second, 10*time.Millisecond, "the stopping relay stopped heartbeating")
	survivor, stopSurvivor := b.start(t)
	defer stopSurvivor()
	close(release)
	<-stopped
	b.waitSettled(t, 10*time.Second)
	b.requireExactlyOnce(t, committed)
	require.Equal(t, 1, b.fake.CreateAttempts(), "the event was sent once: the survivor never took the lane")
	require.Zero(t, survivor.Stats().Delivered)
	require.EqualValues(t, 1, stopping.Stats().Delivered, "the stopping relay settled what it sent")
}

// A relay fenced when a signal comes (its heartbeats are not getting
// through) keeps the organization queued, and claims it as soon as a
// heartbeat gets through again, without waiting for a sweep (here an hour
// away): the heartbeat that ends the fence wakes the dispatcher.
func TestSignalWhileFencedIsClaimedOnceAHeartbeatGetsThrough(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.cfg.PollInterval = time.Hour
	b.cfg.PollOnly = true
	b.cfg.HeartbeatInterval, b.cfg.LivenessTimeout = 100*time.Millisecond, time.Second
	r := b.newRelay(t)
	signals := relay.InitTestSignals(r)
	b.run(t, r)
	for signals.Beat.Wait(t) != nil { // until one gets through (a loaded server may time some out)
	}

	// A transaction holds the relay's row: a heartbeat waits for it until
	// its timeout, LivenessTimeout, and fails. The relay is then fenced (it
	// is after 3/4 of it), and stays so while the row is held.
	blocker, err := b.db.Pool.Begin(b.ctx)
	require.NoError(t, err)
	defer func() { _ = blocker.Rollback(b.ctx) }()
	_, err = blocker.Exec(b.ctx, `SELECT 1 FROM outbox_relays FOR UPDATE`)
	require.NoError(t, err)
	for signals.Beat.Wait(t) == nil {
	}
	committed := b.appendCommitted(t, []string{"org-fenced"}, 1)
	require.NoError(t, r.SignalRelay(b.ctx, "org-fenced"))

	require.NoError(t, blocker.Rollback(b.ctx)) // the next heartbeat gets through
	b.waitMessages(t, 1, 10*time.Second)
	b.requireExactlyOnce(t, committed)
}
