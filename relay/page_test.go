package relay_test

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jonboulle/clockwork"
	"github.com/stretchr/testify/require"

	"github.com/outboxrelay/outbox"
	"github.com/outboxrelay/outbox/outboxtest/svixtest"
	"github.com/outboxrelay/outbox/relay"
)

// With pages (the default), a backlog of many organizations with one event each
// is sent in pages, mostly without a lane row, beside deep organizations
// (their lanes, in order) and failures in pages (503s retried, a 429
// paused, a 422 dead-lettered): every event once, and in order per
// organization.
func TestPagesDeliverABacklogOnceAndInOrder(t *testing.T) {
	t.Parallel()
	b := setup(t)
	// Every lane row ever inserted, by organization.
	for _, sql := range []string{
		`CREATE TABLE lane_inserts (organization_id text)`,
		`CREATE FUNCTION record_lane_insert() RETURNS trigger LANGUAGE plpgsql AS $$
		 BEGIN INSERT INTO lane_inserts VALUES (NEW.organization_id); RETURN NULL; END $$`,
		`CREATE TRIGGER record_lane_insert AFTER INSERT ON outbox_lanes FOR EACH ROW EXECUTE FUNCTION record_lane_insert()`,
	} {
		_, err := b.db.Pool.Exec(b.ctx, sql)
		require.NoError(t, err)
	}
	var singles []string
	for i := range 300 {
		singles = append(singles, fmt.Sprintf("single-%03d", i))
	}
	committed := b.appendCommitted(t, singles, 1)
	deep := []string{"deep-1", "deep-2", "deep-3"}
	deepCommitted := b.appendCommitted(t, deep, 5)
	committed = append(committed, deepCommitted...)
	failing := map[string]svixtest.Fault{
		"single-007": {Kind: svixtest.FaultStatus, Status: 503, Times: 2},
		"single-100": {Kind: svixtest.FaultStatus, Status: 503, Times: 1},
		"single-150": {Kind: svixtest.FaultRateLimit, RetryAfter: time.Second, Times: 1},
		"single-200": {Kind: svixtest.FaultStatus, Status: 422},
	}
	for org, f := range failing {
		f.Match = func(r *svixtest.Request) bool { return r.Method == "POST" && r.App == org }
		b.fake.InjectFault(f)
	}

	r, _ := b.start(t)
	b.waitSettled(t, 30*time.Second)
	var delivered []outbox.AppendResult
	for _, c := range committed {
		if c.OrganizationID != "single-200" {
			delivered = append(delivered, c)
		}
	}
	b.requireExactlyOnce(t, delivered)
	b.requireInOrder(t, deepCommitted)
	var dead int
	require.NoError(t, b.db.Pool.QueryRow(b.ctx, `SELECT count(*) FROM outbox_dead_letters WHERE organization_id = 'single-200'`).Scan(&dead))
	require.Equal(t, 1, dead)

	st := r.Stats()
	require.Positive(t, st.Pages)
	var withLane int
	require.NoError(t, b.db.Pool.QueryRow(b.ctx, `SELECT count(DISTINCT organization_id) FROM lane_inserts
		WHERE organization_id LIKE 'single-%' AND NOT organization_id = ANY($1)`, []string{"single-007", "single-100", "single-150", "single-200"}).Scan(&withLane))
	t.Logf("pages %d, single-event organizations with a lane row: %d", st.Pages, withLane)
	// Rounds of fewer than 16 organizations (the queue's tail) are lane
	// claims; the rest go to pages.
	require.Less(t, withLane, len(singles)/4, "most single-event organizations were sent without a lane row")
}

// A page whose session ends while its events are sent (its relay cut off
// from the database, or ended by the idle timeout) is rolled back by the
// server: none of its outcomes is recorded, its organizations are free at
// once, and its events are sent again and delivered once, with no attempt
// counted for the page that was lost.
func TestPageLostMidSendIsSentAgainOnce(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.cfg.LeaseDuration = 10 * time.Second // more than twice SendTimeout
	// The first creates hang until SendTimeout: long enough for the test to
	// find the page however loaded the machine, short of the lease's half.
	b.cfg.SendTimeout = 4 * time.Second
	var orgs []string
	for i := range 48 {
		orgs = append(orgs, fmt.Sprintf("org-%02d", i))
	}
	committed := b.appendCommitted(t, orgs, 1)
	b.fake.InjectFault(svixtest.Fault{Kind: svixtest.FaultHang, Times: len(orgs)})

	r, _ := b.start(t)
	// Once a create hangs, the page that sent it is open on the relay's
	// side too (a session that merely looks idle may still be opening).
	require.Eventually(t, func() bool {
		for _, q := range b.fake.Requests() {
			if q.Fault == "hang" {
				return true
			}
		}
		return false
	}, 10*time.Second, 5*time.Millisecond, "no create was sent")
	// A page is a session idle in its transaction that holds page locks of
	// this test's installation (keyed by its lanes table's oid and the hash
	// of an organization). The pages open now are ended, and their
	// organizations noted; a page opened later, or an organization sent in
	// a lane, has its hung attempt counted, as it should.
	var lost []string
	require.Eventually(t, func() bool {
		rows, err := b.db.Pool.Query(b.ctx, `
			WITH pages AS MATERIALIZED (
			    SELECT l.pid, l.objid FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
			    WHERE l.locktype = 'advisory' AND l.granted AND l.classid = $1::regclass::oid
			      AND a.state = 'idle in transaction'
			), ended AS MATERIALIZED (
			    SELECT pid FROM (SELECT DISTINCT pid FROM pages) p WHERE pg_terminate_backend(pid)
			)
			SELECT DISTINCT e.organization_id FROM pages p JOIN ended USING (pid)
			JOIN outbox_events e ON hashtext(e.organization_id)::oid = p.objid`, b.db.Schema+".outbox_lanes")
		if err != nil {
			return false
		}
		lost, err = pgx.CollectRows(rows, pgx.RowTo[string])
		return err == nil && len(lost) > 0
	}, 10*time.Second, 5*time.Millisecond, "no page was opened")
	t.Logf("%d organizations in the pages ended", len(lost))
	// No hang is left for their second sends: a lane of a page lost before
	// its call (its ping failed first) leaves its hang unused.
	b.fake.ClearFaults()

	b.waitSettled(t, 30*time.Second)
	b.requireExactlyOnce(t, committed)
	ds := b.deliveries(t)
	for _, res := range committed {
		if slices.Contains(lost, res.OrganizationID) {
			require.Equal(t, 1, ds[res.EventID.String()].attempts,
				"event %s of %s: the lost page's attempt was rolled back with it", res.EventID, res.OrganizationID)
		}
	}
	require.Positive(t, r.Stats().Pages)
}

// A claim that finds an organization held by a page which then dies
// (rolled back: no lane made due, nothing written) queues it again at the
// first sweep after PollInterval, rather than leaving it to the full pass
// every 30 seconds.
func TestOrganizationHeldByALostPageIsClaimedAgain(t *testing.T) {
	t.Parallel()
	b := setup(t)
	committed := b.appendCommitted(t, []string{"org-x"}, 1)
	// A page's lock, in a transaction the test ends without writing.
	page, err := b.db.Pool.Begin(b.ctx)
	require.NoError(t, err)
	defer func() { _ = page.Rollback(b.ctx) }()
	_, err = page.Exec(b.ctx, `SELECT pg_advisory_xact_lock('outbox_lanes'::regclass::oid::int, hashtext('org-x'))`)
	require.NoError(t, err)

	clock := clockwork.NewFakeClockAt(time.Now())
	relay.SetClock(&b.cfg, clock)
	r := b.newRelay(t)
	signals := relay.InitTestSignals(r)
	b.run(t, r)
	require.Equal(t, "org-x", signals.Rechecking.Wait(t), "the first sweep's full pass finds org-x, held")
	require.NoError(t, page.Rollback(b.ctx)) // the page dies
	signals.Swept.Drain()
	clock.Advance(b.cfg.PollInterval)
	signals.Swept.Wait(t)
	b.waitMessages(t, 1, 10*time.Second) // the fake clock is far from the next full pass
	b.requireExactlyOnce(t, committed)
}

// A relay that stops heartbeating may have held pages: the server rolled
// them back, and no row says which organizations they held, which that
// relay alone may have known (an in-process signal, a settlement that
// failed there). Finding it dead makes the next sweep look at every
// pending organization, not only at new events and, every 30 seconds, at
// all of them.
func TestDeadReplicaMakesTheNextSweepLookAtEveryOrganization(t *testing.T) {
	t.Parallel()
	b := setup(t)
	// An event with a low id, committed late and never signalled: the new
	// events' step, past its id, does not see it.
	late, lateRes := b.appendLate(t, "org-late")
	early := b.appendCommitted(t, []string{"org-early"}, 1)

	clock := clockwork.NewFakeClockAt(time.Now())
	relay.SetClock(&b.cfg, clock)
	r := b.newRelay(t)
	signals := relay.InitTestSignals(r)
	b.run(t, r)
	b.waitMessages(t, 1, 10*time.Second)
	for range 5 { // the new events' step reads from 3 sweeps back
		signals.Swept.Drain()
		clock.Advance(b.cfg.PollInterval)
		signals.Swept.Wait(t)
	}
	require.NoError(t, late.Commit(b.ctx))

	dead := b.relayRow(t, -time.Second)
	var mourned bool
	for try := 0; !mourned && try < 3; try++ { // a beat in flight before the row may signal first
		signals.Beat.Drain()
		clock.Advance(relay.DefaultHeartbeatInterval)
		signals.Beat.Wait(t)
		require.NoError(t, b.db.Pool.QueryRow(b.ctx, "SELECT mourned FROM outbox_relays WHERE instance = $1", dead).Scan(&mourned))
	}
	require.True(t, mourned, "a heartbeat finds the dead replica")
	// Sweeps, a poll interval apart on the fake clock (which also keeps the
	// relay's heartbeats fresh), until org-late is delivered: well before
	// the next periodic full pass, 30 s away.
	for sweeps := 0; b.fake.MessageCount() < 2; sweeps++ {
		require.Less(t, sweeps, 100, "org-late was not found before the next periodic full pass")
		signals.Swept.Drain()
		clock.Advance(b.cfg.PollInterval)
		signals.Swept.Wait(t)
		ctx, cancel := context.WithTimeout(b.ctx, 200*time.Millisecond)
		_ = b.fake.WaitForMessages(ctx, 2)
		cancel()
	}
	b.requireExactlyOnce(t, append(early, lateRes))
}
