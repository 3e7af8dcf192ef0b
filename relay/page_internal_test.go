package relay

import (
	"context"
	"maps"
	"slices"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"
	"github.com/stretchr/testify/require"

	"github.com/outboxrelay/outbox/internal/pgtest"
)

// pageSetup makes a relay with pages on over a fresh schema. Nothing here
// reaches Svix: each test opens pages and settles them itself.
func pageSetup(t *testing.T) (*Relay, *pgtest.DB) {
	t.Helper()
	return pageSetupWith(t, Config{})
}

// pageSetupWith is pageSetup with cfg's liveness and lease settings.
func pageSetupWith(t *testing.T, cfg Config) (*Relay, *pgtest.DB) {
	t.Helper()
	db := pgtest.New(t)
	r, err := New(db.Pool, Config{SvixToken: "t", SvixServerURL: "http://127.0.0.1:1", ID: "relay-p",
		HeartbeatInterval: cfg.HeartbeatInterval, LivenessTimeout: cfg.LivenessTimeout,
		LeaseDuration: cfg.LeaseDuration, SendTimeout: cfg.SendTimeout})
	require.NoError(t, err)
	require.NotNil(t, r.pageSlots, "a pool of %d connections has room for pages", db.Pool.Config().MaxConns)
	return r, db
}

// addEvent commits an event of org and returns its id.
func addEvent(t *testing.T, db *pgtest.DB, org string) int64 {
	t.Helper()
	var id int64
	require.NoError(t, db.Pool.QueryRow(context.Background(), `INSERT INTO outbox_events (event_id, organization_id, event_type, payload)
		VALUES (gen_random_uuid(), $1, 'x.y', '{"a": 1}') RETURNING id`, org).Scan(&id))
	return id
}

// exec runs one statement on the test's pool.
func exec(t *testing.T, db *pgtest.DB, sql string, args ...any) {
	t.Helper()
	_, err := db.Pool.Exec(context.Background(), sql, args...)
	require.NoError(t, err)
}

// openTestPage opens a page for orgs with a page slot, as a claim round
// does. The page, if any, must be settled (which gives the slot back).
func openTestPage(t *testing.T, r *Relay, orgs ...string) *page {
	t.Helper()
	r.pageSlots <- struct{}{}
	pg, err := r.openPage(context.Background(), orgs)
	require.NoError(t, err)
	if pg == nil {
		<-r.pageSlots
		return nil
	}
	t.Cleanup(func() {
		if len(r.pageSlots) != 0 { // a test that failed half way: end its page, or the pool's close waits for it
			t.Error("a test left a page open")
			pg.stopKeepAlive()
			endPage(pg.conn)
			<-r.pageSlots
		}
	})
	return pg
}

// pageOrgs lists the organizations a page holds, and those it will send
// (those with an event).
func pageOrgs(pg *page) (held, sent []string) {
	if pg == nil {
		return nil, nil
	}
	for _, ln := range pg.lanes {
		held = append(held, ln.org)
		if len(ln.events) > 0 {
			sent = append(sent, ln.org)
		}
	}
	slices.Sort(held)
	slices.Sort(sent)
	return held, sent
}

// settleUnsent settles a page whose events were not sent, which commits it
// and leaves every event as it was (a lane due now for each).
func settleUnsent(t *testing.T, r *Relay, pg *page) map[string]time.Time {
	t.Helper()
	for _, ln := range pg.lanes {
		ln.results = make([]result, len(ln.events))
	}
	due, err := r.settlePage(pg)
	require.NoError(t, err)
	return due
}

// A page takes an organization only when its event is the only one, has
// never been attempted, and no lane holder, stale or not, can be sending
// it; paused and suspended organizations stay with their lanes.
func TestPageTakesOnlyEligibleOrganizations(t *testing.T) {
	t.Parallel()
	r, db := pageSetup(t)
	cases := []struct {
		org     string
		prepare string // run with $1 = org, after one event was added
		want    bool
	}{
		{"one-event", ``, true},
		{"two-events", `INSERT INTO outbox_events (event_id, organization_id, event_type, payload) VALUES (gen_random_uuid(), $1, 'x.y', '{}')`, false},
		{"attempted", `UPDATE outbox_events SET attempts = 1 WHERE organization_id = $1`, false},
		{"retry-waiting", `UPDATE outbox_events SET next_attempt_at = now() + interval '1 hour' WHERE organization_id = $1`, false},
		{"retry-due", `UPDATE outbox_events SET next_attempt_at = now() - interval '1 second' WHERE organization_id = $1`, false},
		{"lane-released", `INSERT INTO outbox_lanes (organization_id, due_at) VALUES ($1, now())`, true},
		{"lane-leased", `INSERT INTO outbox_lanes (organization_id, lease_token, leased_until, leased_by) VALUES ($1, gen_random_uuid(), now() + interval '30 seconds', 'x')`, false},
		{"lane-lease-expired", `INSERT INTO outbox_lanes (organization_id, lease_token, leased_until, leased_by) VALUES ($1, gen_random_uuid(), now() - interval '1 second', 'x')`, false},
		{"lane-paused-429", `INSERT INTO outbox_lanes (organization_id, paused_until, due_at) VALUES ($1, now() + interval '1 minute', now() + interval '1 minute')`, false},
		{"lane-pause-over", `INSERT INTO outbox_lanes (organization_id, paused_until, due_at) VALUES ($1, now() - interval '1 second', now())`, true},
		{"lane-suspended", `INSERT INTO outbox_lanes (organization_id, suspended_at, suspend_reason) VALUES ($1, now(), 'hold')`, false},
		{"lane-suspension-over", `INSERT INTO outbox_lanes (organization_id, suspended_at, suspended_until, suspend_reason) VALUES ($1, now() - interval '2 minutes', now() - interval '1 minute', 'hold')`, true},
	}
	var orgs, want []string
	for _, c := range cases {
		addEvent(t, db, c.org)
		if c.prepare != "" {
			exec(t, db, c.prepare, c.org)
		}
		orgs = append(orgs, c.org)
		if c.want {
			want = append(want, c.org)
		}
	}
	orgs = append(orgs, "no-events")
	slices.Sort(want)

	pg := openTestPage(t, r, orgs...)
	held, sent := pageOrgs(pg)
	require.Equal(t, want, held)
	require.Equal(t, want, sent)
	for _, ln := range pg.lanes {
		require.Len(t, ln.events, 1)
		require.Equal(t, 1, ln.events[0].attempts, "the attempt about to be made")
		require.JSONEq(t, `{"a": 1}`, string(ln.events[0].payload))
		require.False(t, ln.token.Valid, "a page's lane has no lease token")
	}
	settleUnsent(t, r, pg)
}

// newAndIdleSetup makes a relay with pages on and two organizations with
// one event each: org-new without a lane row, org-idle with a released one.
func newAndIdleSetup(t *testing.T) (*Relay, *pgtest.DB) {
	t.Helper()
	r, db := pageSetup(t)
	addEvent(t, db, "org-new")
	addEvent(t, db, "org-idle")
	exec(t, db, `INSERT INTO outbox_lanes (organization_id, due_at) VALUES ('org-idle', now())`)
	return r, db
}

// A page and a lane claim never both take one organization's head:
// whichever locks it second skips it, the lane claim whether it would
// insert the lane or lease an existing one, and a lane claim that finds
// the organization in a page reports it waiting, not "events and no lane"
// (which would claim it again at once, over and over, while the page
// lasts).
func TestPageAndLaneClaimExcludeEachOther(t *testing.T) {
	t.Parallel()
	ctx := context.Background()

	t.Run("page first", func(t *testing.T) {
		t.Parallel()
		r, db := newAndIdleSetup(t)
		pg := openTestPage(t, r, "org-new", "org-idle")
		held, _ := pageOrgs(pg)
		require.Equal(t, []string{"org-idle", "org-new"}, held)

		rd, err := r.claim(ctx, []string{"org-new", "org-idle"})
		require.NoError(t, err)
		require.Empty(t, rd.lanes)
		require.Empty(t, rd.again, "an organization in a page is not claimed again at once")
		require.Empty(t, rd.empty)
		require.Contains(t, rd.waiting, "org-new")
		require.Contains(t, rd.waiting, "org-idle")
		var lanes, leased int
		require.NoError(t, db.Pool.QueryRow(ctx, `SELECT count(*), count(lease_token) FROM outbox_lanes`).Scan(&lanes, &leased))
		require.Equal(t, 1, lanes, "the claim inserted no lane for the page's new organization")
		require.Zero(t, leased, "nor leased the idle one")
		settleUnsent(t, r, pg)
	})

	t.Run("lane claim first", func(t *testing.T) {
		t.Parallel()
		r, db := newAndIdleSetup(t)
		// A lane claim in flight: its statements ran, it has not committed.
		claim, err := db.Pool.Begin(ctx)
		require.NoError(t, err)
		defer func() { _ = claim.Rollback(ctx) }()
		token := pgtype.UUID{Bytes: [16]byte{1}, Valid: true}
		_, err = claim.Exec(ctx, r.q.createLanes, []string{"org-new", "org-idle"}, token, int64(30_000), "other", nil)
		require.NoError(t, err)
		_, err = claim.Exec(ctx, r.q.lease, []string{"org-new", "org-idle"}, token, int64(30_000), "other", nil)
		require.NoError(t, err)

		require.Nil(t, openTestPage(t, r, "org-new", "org-idle"), "the page skips what a lane claim holds, without waiting")
		require.NoError(t, claim.Commit(ctx))
		require.Nil(t, openTestPage(t, r, "org-new", "org-idle"), "and leased lanes once it committed")
	})
}

// The page reads its events again after taking their locks: a lane claim
// that committed after the lock statement's snapshot, but before its lock
// (here, a lane leased without the lock), is seen, and its organization is
// left unsent. The page's settlement leaves that leased lane alone.
func TestPageReadsItsEventsAgainAfterItsLocks(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	r, db := pageSetup(t)
	addEvent(t, db, "org-a")
	addEvent(t, db, "org-b")

	conn, err := db.Pool.Acquire(ctx)
	require.NoError(t, err)
	locked, err := r.lockPage(ctx, conn, []string{"org-a", "org-b"})
	require.NoError(t, err)
	require.ElementsMatch(t, []string{"org-a", "org-b"}, locked)
	exec(t, db, `INSERT INTO outbox_lanes (organization_id, lease_token, leased_until, leased_by)
		VALUES ('org-a', gen_random_uuid(), now() + interval '30 seconds', 'other')`)
	events, err := r.readPage(ctx, conn, locked)
	require.NoError(t, err)
	require.NotContains(t, events, "org-a", "org-a's lane was leased after the lock statement's snapshot")
	require.Contains(t, events, "org-b")

	pg := &page{conn: conn, left: 2, done: make(chan struct{})}
	for _, org := range locked {
		ln := &lane{org: org, page: pg}
		if ev, ok := events[org]; ok {
			ln.events = []pendingEvent{ev}
		}
		pg.lanes = append(pg.lanes, ln)
	}
	r.pageSlots <- struct{}{}
	settleUnsent(t, r, pg)
	var (
		token pgtype.UUID
		by    string
		due   *time.Time
	)
	require.NoError(t, db.Pool.QueryRow(ctx, `SELECT lease_token, leased_by, due_at FROM outbox_lanes WHERE organization_id = 'org-a'`).Scan(&token, &by, &due))
	require.True(t, token.Valid, "the other relay's lease is untouched")
	require.Equal(t, "other", by)
	require.Nil(t, due, "and so is its due time: its holder's release sets it")
}

// While its events are sent, a page's transaction holds no snapshot (which
// would hold back vacuum's horizon for the page's length) and no
// transaction id, and the server ends it once it has been idle for
// LivenessTimeout (its relay pings it meanwhile: keepAlive).
func TestOpenPageHoldsNoSnapshot(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	r, db := pageSetup(t)
	addEvent(t, db, "org-a")
	pg := openTestPage(t, r, "org-a")
	require.NotNil(t, pg)
	pg.stopKeepAlive() // a ping would make the session active for a moment, and the test's query may not run beside one

	pid := pg.conn.Conn().PgConn().PID()
	var (
		state     string
		xmin, xid *string
	)
	require.NoError(t, db.Pool.QueryRow(ctx, `SELECT state, backend_xmin::text, backend_xid::text FROM pg_stat_activity WHERE pid = $1`, pid).Scan(&state, &xmin, &xid))
	require.Equal(t, "idle in transaction", state)
	require.Nil(t, xmin, "an open page holds no snapshot")
	require.Nil(t, xid, "nor a transaction id before its settlement")

	var timeout string
	require.NoError(t, pg.conn.QueryRow(ctx, `SHOW idle_in_transaction_session_timeout`).Scan(&timeout))
	require.Equal(t, "1500ms", timeout, "LivenessTimeout")
	settleUnsent(t, r, pg)
}

// A page's settlement records every outcome as a lane's would, in the
// page's transaction, and makes a lane row only for an organization with
// something left: a retry (due at its time), a 429 (paused), an event not
// sent, an event appended meanwhile.
func TestPageSettlesEveryOutcome(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	r, db := pageSetup(t)
	results := map[string]result{
		"delivered": {outcome: outcomeDelivered, messageID: "msg_1"},
		"skipped":   {outcome: outcomeSkipped},
		"retry":     {outcome: outcomeRetry, err: "503"},
		"dead":      {outcome: outcomeDeadLetter, err: "422", status: 422, body: `{"code":"bad"}`},
		"limited":   {outcome: outcomeRateLimited, err: "429", retryAfter: time.Minute},
		"unsent":    {outcome: outcomeUnsent},
		"appended":  {outcome: outcomeDelivered, messageID: "msg_2"},
		"idle-lane": {outcome: outcomeDelivered, messageID: "msg_3"},
	}
	var orgs []string
	ids := map[string]int64{}
	for org := range results {
		ids[org] = addEvent(t, db, org)
		orgs = append(orgs, org)
	}
	// A released lane row, left from an earlier turn: deleted with nothing left.
	exec(t, db, `INSERT INTO outbox_lanes (organization_id, due_at) VALUES ('idle-lane', now())`)
	pg := openTestPage(t, r, orgs...)
	_, sent := pageOrgs(pg)
	require.Len(t, sent, len(results))
	later := addEvent(t, db, "appended") // committed while the page is sent
	for _, ln := range pg.lanes {
		ln.results = []result{results[ln.org]}
	}
	due, err := r.settlePage(pg)
	require.NoError(t, err)

	type laneRow struct {
		due, paused *time.Time
		leased      bool
	}
	lanes := map[string]laneRow{}
	rows, err := db.Pool.Query(ctx, `SELECT organization_id, due_at, paused_until, lease_token IS NOT NULL FROM outbox_lanes`)
	require.NoError(t, err)
	for rows.Next() {
		var (
			org string
			l   laneRow
		)
		require.NoError(t, rows.Scan(&org, &l.due, &l.paused, &l.leased))
		lanes[org] = l
	}
	require.NoError(t, rows.Err())
	require.ElementsMatch(t, []string{"retry", "limited", "unsent", "appended"}, slices.Collect(maps.Keys(lanes)), "a lane row only where something is left, and none idle")
	for org, l := range lanes {
		require.False(t, l.leased, org)
		require.NotNil(t, l.due, org)
		require.Equal(t, *l.due, due[org], "%s: the due time returned is the lane's", org)
	}
	require.NotNil(t, lanes["limited"].paused)
	require.Equal(t, *lanes["limited"].paused, *lanes["limited"].due, "paused for the Retry-After")

	var attempts int
	var next *time.Time
	require.NoError(t, db.Pool.QueryRow(ctx, `SELECT attempts, next_attempt_at FROM outbox_events WHERE id = $1`, ids["retry"]).Scan(&attempts, &next))
	require.Equal(t, 1, attempts)
	require.NotNil(t, next)
	require.Equal(t, *next, *lanes["retry"].due, "the lane is due at the retry's time")
	for _, org := range []string{"limited", "unsent"} {
		require.NoError(t, db.Pool.QueryRow(ctx, `SELECT attempts FROM outbox_events WHERE id = $1`, ids[org]).Scan(&attempts))
		require.Zero(t, attempts, "%s: no attempt counted", org)
	}
	rows, err = db.Pool.Query(ctx, `SELECT id FROM outbox_events ORDER BY id`)
	require.NoError(t, err)
	pending, err := pgx.CollectRows(rows, pgx.RowTo[int64])
	require.NoError(t, err)
	require.ElementsMatch(t, []int64{ids["retry"], ids["limited"], ids["unsent"], later}, pending)

	outcomes := map[string]string{}
	rows, err = db.Pool.Query(ctx, `SELECT organization_id, outcome || ':' || coalesce(svix_message_id, '') || ':' || attempts FROM outbox_deliveries`)
	require.NoError(t, err)
	for rows.Next() {
		var org, o string
		require.NoError(t, rows.Scan(&org, &o))
		outcomes[org] = o
	}
	require.NoError(t, rows.Err())
	require.Equal(t, map[string]string{"delivered": "delivered:msg_1:1", "skipped": "skipped::1", "appended": "delivered:msg_2:1", "idle-lane": "delivered:msg_3:1"}, outcomes)
	var status int
	require.NoError(t, db.Pool.QueryRow(ctx, `SELECT status_code FROM outbox_dead_letters WHERE id = $1`, ids["dead"]).Scan(&status))
	require.Equal(t, 422, status)
	require.Len(t, r.pageSlots, 0, "the settlement gave its page slot back")
}

// A page whose connection dies before its settlement (a relay cut off, or
// its session ended by the idle timeout) writes nothing: the server rolled
// it back, and its events are free at once, not after a lease.
func TestPageRolledBackWhenItsSessionEnds(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	r, db := pageSetup(t)
	id := addEvent(t, db, "org-a")
	pg := openTestPage(t, r, "org-a")
	require.NotNil(t, pg)
	exec(t, db, `SELECT pg_terminate_backend($1)`, pg.conn.Conn().PgConn().PID())
	pg.lanes[0].results = []result{{outcome: outcomeDelivered, messageID: "msg_1"}}
	_, err := r.settlePage(pg)
	require.Error(t, err)

	var attempts, deliveries int
	require.NoError(t, db.Pool.QueryRow(ctx, `SELECT attempts FROM outbox_events WHERE id = $1`, id).Scan(&attempts))
	require.Zero(t, attempts)
	require.NoError(t, db.Pool.QueryRow(ctx, `SELECT count(*) FROM outbox_deliveries`).Scan(&deliveries))
	require.Zero(t, deliveries)
	again := openTestPage(t, r, "org-a")
	_, sent := pageOrgs(again)
	require.Equal(t, []string{"org-a"}, sent, "free again at once")
	settleUnsent(t, r, again)
}

// A page whose events take longer to send than LivenessTimeout, the idle
// time after which the server ends a page, is kept alive by its pings, one
// every HeartbeatInterval, and settles.
func TestPageKeptAliveByItsPings(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	// A ping may come 1.9 s late, on a loaded machine, before the server
	// ends the page.
	r, db := pageSetupWith(t, Config{HeartbeatInterval: 100 * time.Millisecond, LivenessTimeout: 2 * time.Second})
	signals := InitTestSignals(r)
	id := addEvent(t, db, "org-a")
	pg := openTestPage(t, r, "org-a")
	_, sent := pageOrgs(pg)
	require.Equal(t, []string{"org-a"}, sent)
	// 25 pings, 100 ms apart at the least: the page has been idle for
	// longer than LivenessTimeout, but for its pings.
	for range 25 {
		require.NoError(t, signals.PagePinged.Wait(t))
	}
	pg.lanes[0].results = []result{{outcome: outcomeDelivered, messageID: "msg_1"}}
	_, err := r.settlePage(pg)
	require.NoError(t, err, "the page's session is still there")
	var delivered int64
	require.NoError(t, db.Pool.QueryRow(ctx, `SELECT id FROM outbox_deliveries`).Scan(&delivered))
	require.Equal(t, id, delivered)
}

// A page one of whose lanes never finishes (a Resolver or an HTTP client
// that ignores its context) is pinged for LeaseDuration at the most: the
// server then ends it, as a lane's lease would run out, and its
// organizations are free again.
func TestPageOutlivingItsLeaseIsEndedByTheServer(t *testing.T) {
	t.Parallel()
	r, db := pageSetupWith(t, Config{HeartbeatInterval: 100 * time.Millisecond, LivenessTimeout: 500 * time.Millisecond,
		LeaseDuration: 2 * time.Second, SendTimeout: 500 * time.Millisecond})
	signals := InitTestSignals(r)
	addEvent(t, db, "org-a")
	pg := openTestPage(t, r, "org-a")
	require.NotNil(t, pg)
	require.NoError(t, signals.PagePinged.Wait(t), "pinged while within its lease")
	pid := pg.conn.Conn().PgConn().PID()
	requireSessionEnded(t, db, pid, "the server ends the page's session")
	settleUnsentLost(t, r, pg)
	again := openTestPage(t, r, "org-a")
	_, sent := pageOrgs(again)
	require.Equal(t, []string{"org-a"}, sent, "org-a is free again")
	settleUnsent(t, r, again)
}

// A page lane whose page's session is lost (a ping failed) starts no call:
// the page will be rolled back, and whatever it sent sent again.
func TestLostPageStartsNoCall(t *testing.T) {
	t.Parallel()
	r, db := pageSetup(t)
	addEvent(t, db, "org-a")
	pg := openTestPage(t, r, "org-a")
	require.NotNil(t, pg)
	pg.lost.Store(true)
	ln := pg.lanes[0]
	r.work(context.Background(), context.Background(), ln, time.Time{})
	require.Equal(t, []result{{outcome: outcomeUnsent}}, ln.results, "not sent (Svix here is unreachable: a call would be a retry)")
	settleUnsent(t, r, pg)
}

// settleUnsentLost settles a page whose session the server ended: the
// settlement fails, and nothing of the page is written.
func settleUnsentLost(t *testing.T, r *Relay, pg *page) {
	t.Helper()
	for _, ln := range pg.lanes {
		ln.results = make([]result, len(ln.events))
	}
	_, err := r.settlePage(pg)
	require.Error(t, err)
}

// A relay cut off between a page's two round trips (its locks taken, its
// events not read yet) leaves a session that holds the locks: the server
// ends it after LivenessTimeout too, since the lock round trip sets the
// idle timeout before it takes them.
func TestPageCutOffAfterItsLocksIsEndedByTheServer(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	r, db := pageSetupWith(t, Config{HeartbeatInterval: 100 * time.Millisecond, LivenessTimeout: 500 * time.Millisecond})
	addEvent(t, db, "org-a")
	conn, err := db.Pool.Acquire(ctx)
	require.NoError(t, err)
	defer conn.Release()
	locked, err := r.lockPage(ctx, conn, []string{"org-a"})
	require.NoError(t, err)
	require.Equal(t, []string{"org-a"}, locked)
	pid := conn.Conn().PgConn().PID()
	requireSessionEnded(t, db, pid, "the server ends the session that holds the page's locks")
}

// requireSessionEnded waits until the server has ended the session pid.
func requireSessionEnded(t *testing.T, db *pgtest.DB, pid uint32, msg string) {
	t.Helper()
	require.Eventually(t, func() bool {
		var gone bool
		err := db.Pool.QueryRow(context.Background(), `SELECT NOT EXISTS (SELECT 1 FROM pg_stat_activity WHERE pid = $1)`, pid).Scan(&gone)
		return err == nil && gone
	}, 30*time.Second, 10*time.Millisecond, msg)
}
