package relay

import (
	"context"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/outboxrelay/outbox/internal/pgtest"
)

// impatientLockTimeout bounds every lock wait of an impatientPool. The
// tests that use one hold the lock under test until the statement under
// test has returned, so a statement that queues behind it fails after this
// long, whatever the value; it only has to outlast the brief catalog locks
// anything may meet (autovacuum truncating pg_attribute, churned by every
// test's schema, holds it for up to 20 ms at a time). A first value of 1 ms
// failed a claim's prepare on CI for that reason.
const impatientLockTimeout = "5s"

// impatientPool connects to url with lock_timeout set to
// impatientLockTimeout: a statement that would wait for a lock another
// transaction of the test holds fails instead of waiting.
func impatientPool(t *testing.T, url string) *pgxpool.Pool {
	t.Helper()
	cfg, err := pgxpool.ParseConfig(url)
	require.NoError(t, err)
	cfg.ConnConfig.RuntimeParams["lock_timeout"] = impatientLockTimeout
	pool, err := pgxpool.NewWithConfig(context.Background(), cfg)
	require.NoError(t, err)
	t.Cleanup(pool.Close)
	return pool
}

// lockSetup makes two relays on one schema: a holds the lanes of orgs,
// and b claims through an impatientPool, so a claim that would queue
// behind another relay's lane fails instead of waiting.
func lockSetup(t *testing.T, orgs ...string) (a, b *Relay, db *pgtest.DB) {
	t.Helper()
	ctx := context.Background()
	db = pgtest.New(t)
	for _, org := range orgs {
		_, err := db.Pool.Exec(ctx, `INSERT INTO outbox_events (event_id, organization_id, event_type, payload)
			VALUES (gen_random_uuid(), $1, 'x.y', '{}')`, org)
		require.NoError(t, err)
	}
	a, err := New(db.Pool, Config{SvixToken: "t", ID: "relay-a"})
	require.NoError(t, err)
	b, err = New(impatientPool(t, db.URL), Config{SvixToken: "t", ID: "relay-b"})
	require.NoError(t, err)
	return a, b, db
}

// requireBlocking waits until another session waits for a lock tx holds
// (a condition PostgreSQL reports, not a timing).
func requireBlocking(t *testing.T, db *pgtest.DB, tx pgx.Tx) {
	t.Helper()
	ctx := context.Background()
	var pid int
	require.NoError(t, tx.QueryRow(ctx, "SELECT pg_backend_pid()").Scan(&pid))
	require.Eventually(t, func() bool {
		var waiting bool
		err := db.Pool.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_stat_activity WHERE $1 = ANY(pg_blocking_pids(pid)))`, pid).Scan(&waiting)
		return err == nil && waiting
	}, 30*time.Second, 10*time.Millisecond, "nothing waited for the transaction's locks")
}

// The review's deadlock: relay a holds x and y, and its settlement has
// share-locked y (each settlement statement checks the lease FOR SHARE);
// relay b, woken by the same NOTIFY, claims [x, y]. An upsert claim locked x
// and waited for y, then a's release waited for x: "deadlock detected".
// The claim must skip lanes another relay holds or has locked, never wait.
func TestClaimNeverWaitsForAnotherRelaysSettlement(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	orgs := []string{"org-x", "org-y"}
	a, b, db := lockSetup(t, orgs...)
	rd, err := a.claim(ctx, orgs)
	require.NoError(t, err)
	require.Len(t, rd.lanes, 2)
	token := rd.lanes[0].token

	settlement, err := db.Pool.Begin(ctx)
	require.NoError(t, err)
	defer func() { _ = settlement.Rollback(ctx) }()
	_, err = settlement.Exec(ctx, `SELECT 1 FROM outbox_lanes WHERE organization_id = 'org-y' AND lease_token = $1 FOR SHARE`, token)
	require.NoError(t, err)

	got, err := b.claim(ctx, orgs)
	require.NoError(t, err, "b's claim must not wait for a's lanes")
	require.Empty(t, got.lanes)
	require.Len(t, got.waiting, 2, "both lanes are a's: b waits for their release")

	tag, err := settlement.Exec(ctx, `UPDATE outbox_lanes SET lease_token = NULL, leased_until = NULL, holder = NULL
		WHERE organization_id = ANY($1) AND lease_token = $2`, orgs, token)
	require.NoError(t, err, "a's release must not wait for b")
	require.EqualValues(t, 2, tag.RowsAffected())
	require.NoError(t, settlement.Commit(ctx))
}

// A lane that is free (its lease ran out) but locked by a transaction in
// flight (its old holder's settlement, or a claim by a third relay) is
// skipped, not waited for, and reported as waiting, not as empty.
func TestClaimSkipsAFreeLaneLockedByAnotherTransaction(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	a, b, db := lockSetup(t, "org-free", "org-locked")
	_, err := a.claim(ctx, []string{"org-locked"})
	require.NoError(t, err)
	_, err = db.Pool.Exec(ctx, `UPDATE outbox_lanes SET leased_until = now() - interval '1 second'`)
	require.NoError(t, err)

	other, err := db.Pool.Begin(ctx)
	require.NoError(t, err)
	defer func() { _ = other.Rollback(ctx) }()
	_, err = other.Exec(ctx, `SELECT 1 FROM outbox_lanes WHERE organization_id = 'org-locked' FOR SHARE`)
	require.NoError(t, err)

	got, err := b.claim(ctx, []string{"org-free", "org-locked"})
	require.NoError(t, err, "b's claim must not wait for the locked lane")
	require.Len(t, got.lanes, 1)
	require.Equal(t, "org-free", got.lanes[0].org)
	require.Contains(t, got.waiting, "org-locked")
	require.Empty(t, got.empty, "a locked lane with events is not empty")
}

// A claim inserts a new organization's lane already taken, and that insert
// waits for another transaction inserting the same lane (here a dead-letter
// requeue, which upserts the lanes of every organization it requeues). It
// must not hold a lock on another lane meanwhile: the requeue's upsert of
// that lane would then wait for the claim, which waits for the requeue. Inside
// the claim statement the insert ran after the claim's locks of the
// existing lanes; it runs before them, as a statement of its own.
func TestClaimWaitingForANewLaneHoldsNoOtherLane(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	a, _, db := lockSetup(t, "org-new", "org-old")
	_, err := db.Pool.Exec(ctx, `INSERT INTO outbox_lanes (organization_id, due_at) VALUES ('org-old', now())`)
	require.NoError(t, err)

	requeue, err := db.Pool.Begin(ctx)
	require.NoError(t, err)
	defer func() { _ = requeue.Rollback(ctx) }()
	var requeuePID int
	require.NoError(t, requeue.QueryRow(ctx, `SELECT pg_backend_pid()`).Scan(&requeuePID))
	const upsert = `INSERT INTO outbox_lanes AS l (organization_id, due_at) VALUES ($1, now())
		ON CONFLICT (organization_id) DO UPDATE SET due_at = least(coalesce(l.due_at, now()), now())`
	_, err = requeue.Exec(ctx, upsert, "org-new")
	require.NoError(t, err)

	claimed := make(chan error, 1)
	go func() {
		_, err := a.claim(ctx, []string{"org-new", "org-old"})
		claimed <- err
	}()
	// The claim is blocked once its insert of org-new waits for the
	// requeue's (a condition PostgreSQL reports, not a timing): a session
	// that the requeue's blocks, running the claim's insert.
	require.Eventually(t, func() bool {
		var waiting bool
		err := db.Pool.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_stat_activity
			WHERE $1 = ANY(pg_blocking_pids(pid)) AND query LIKE '%INSERT INTO%outbox_lanes%')`, requeuePID).Scan(&waiting)
		return err == nil && waiting
	}, time.Minute, 10*time.Millisecond, "the claim never waited for the requeue's new lane")

	// With no lock on org-old held by the claim, this takes none to wait
	// for: a lock_timeout cannot fire on a loaded machine.
	_, err = requeue.Exec(ctx, `SET LOCAL lock_timeout = '1s'`)
	require.NoError(t, err)
	_, err = requeue.Exec(ctx, upsert, "org-old")
	require.NoError(t, err, "the claim holds org-old's lane while it waits for org-new's")
	require.NoError(t, requeue.Commit(ctx))
	require.NoError(t, <-claimed)
}

// A claim that reaches the database after its relay's own row went stale
// (delayed past the relay's fence) finds the lanes it has just inserted
// taken by its own token and free as well (their holder is not alive), and
// leases them a second time: each must still be walked once, its events
// claimed once.
func TestClaimDelayedPastItsFenceClaimsANewLaneOnce(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	a, _, db := lockSetup(t, "org-late")
	_, err := db.Pool.Exec(ctx, `INSERT INTO outbox_relays (instance, name, alive_until) VALUES ($1, 'relay-a', now() - interval '1 second')`, a.instance)
	require.NoError(t, err)
	a.heartbeating.Store(true) // its lanes name it as their holder

	rd, err := a.claim(ctx, []string{"org-late"})
	require.NoError(t, err)
	require.Len(t, rd.lanes, 1)
	require.Len(t, rd.lanes[0].events, 1, "the new lane's event, once")
}

// A lane with a due time whose events were deleted by hand would sort
// first in every sweep forever and starve the lanes really due: the claim
// that finds it empty clears its due time.
func TestClaimForgetsTheDueTimeOfALaneWithoutEvents(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	a, _, db := lockSetup(t, "org-gone")
	rd, err := a.claim(ctx, []string{"org-gone"})
	require.NoError(t, err)
	for _, ln := range rd.lanes {
		ln.results = make([]result, len(ln.events)) // nothing sent: released due now
	}
	_, err = a.settle(rd.lanes)
	require.NoError(t, err)
	_, err = db.Pool.Exec(ctx, `DELETE FROM outbox_events`)
	require.NoError(t, err)
	var due *string
	require.NoError(t, db.Pool.QueryRow(ctx, `SELECT due_at::text FROM outbox_lanes`).Scan(&due))
	require.NotNil(t, due, "released with its head due")

	rd, err = a.claim(ctx, []string{"org-gone"})
	require.NoError(t, err)
	require.Empty(t, rd.lanes)
	require.Equal(t, []string{"org-gone"}, rd.empty)
	require.NoError(t, db.Pool.QueryRow(ctx, `SELECT due_at::text FROM outbox_lanes`).Scan(&due))
	require.Nil(t, due, "the empty lane is no longer due")
}

// A claim measures payloads to apply BatchMaxBytes. Measuring every head
// event (BatchSize of them) cost 0.46 s of database CPU per claim for a
// lane of ~1 MB events, to claim one. It must read only the payloads it
// walks: counted here as the blocks of the events' TOAST table the claim's
// transaction fetched (PostgreSQL's own per-transaction counters), which
// do not depend on the machine's speed.
func TestClaimReadsOnlyThePayloadsItReturns(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := pgtest.New(t)
	// 50 incompressible payloads of ~64 kB each: stored out of line, in
	// TOAST chunks: ~32 chunks, ~9 blocks, each.
	_, err := db.Pool.Exec(ctx, `INSERT INTO outbox_events (event_id, organization_id, event_type, payload)
		SELECT gen_random_uuid(), 'org-big', 'x.y',
		       jsonb_build_object('pad', (SELECT string_agg(md5(random()::text || g::text || i::text), '') FROM generate_series(1, 2000) i))
		FROM generate_series(1, 50) g`)
	require.NoError(t, err)
	r, err := New(db.Pool, Config{SvixToken: "t", BatchMaxBytes: 100_000}) // one event a claim
	require.NoError(t, err)

	var perEvent, claimed int64
	tx, err := db.Pool.Begin(ctx)
	require.NoError(t, err)
	defer func() { _ = tx.Rollback(ctx) }()
	const toastBlocks = `SELECT pg_stat_get_xact_blocks_fetched(reltoastrelid) FROM pg_class WHERE oid = 'outbox_events'::regclass`
	var before, after int64
	require.NoError(t, tx.QueryRow(ctx, toastBlocks).Scan(&before))
	_, err = tx.Exec(ctx, `SELECT octet_length(payload::text) FROM outbox_events ORDER BY id LIMIT 1`)
	require.NoError(t, err)
	require.NoError(t, tx.QueryRow(ctx, toastBlocks).Scan(&after))
	perEvent = after - before
	require.Greater(t, perEvent, int64(8), "each payload is stored in TOAST chunks")

	before = after
	token := newInstance()
	rows, err := tx.Query(ctx, r.q.createLanes, []string{"org-big"}, token, int64(30_000), "t", nil)
	require.NoError(t, err)
	rows.Close()
	_, err = tx.Exec(ctx, r.q.lease, []string{"org-big"}, token, int64(30_000), "t", nil)
	require.NoError(t, err)
	rows, err = tx.Query(ctx, r.q.heads, []string{"org-big"}, token, r.cfg.BatchSize, r.cfg.BatchMaxBytes)
	require.NoError(t, err)
	var cut int64
	for rows.Next() {
		vals, err := rows.Values()
		require.NoError(t, err)
		if vals[7].(bool) { // claimed; false: the due event the byte bound cut at
			claimed++
		} else {
			cut++
			require.Nil(t, vals[4], "the event the bound cut at comes without its payload")
		}
	}
	require.NoError(t, rows.Err())
	require.NoError(t, tx.QueryRow(ctx, toastBlocks).Scan(&after))
	require.EqualValues(t, 1, claimed)
	require.EqualValues(t, 1, cut, "the byte bound cut the claim, and the claim says so")
	// Two payloads, each read once: the one returned and the one that
	// stopped the walk (a block or two of slack for the chunks' layout).
	require.LessOrEqual(t, after-before, 2*perEvent+2,
		"the claim read %d TOAST blocks, %.0f payloads' worth, to return one of %d", after-before, float64(after-before)/float64(perEvent), r.cfg.BatchSize)
}

// A claim can find an organization with events and no lane: a release
// deleted its lane, or its first event was committed, after the claim's
// sqlCreateLanes read the table and before its lane states did. The claim
// reports it to be claimed again, not as empty (which would drop its signal
// until the sweep). Made deterministic here: the claim's sqlCreateLanes
// waits for another transaction's insert of org-y's lane, and that
// transaction also deletes org-x's lane, or commits org-x's first event.
func TestClaimAgainAnOrganizationWithEventsAndNoLane(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name   string
		before []string // committed before the claim
		during string   // committed by the other transaction, with org-y's lane
	}{
		{
			name: "its lane deleted",
			before: []string{`INSERT INTO outbox_events (event_id, organization_id, event_type, payload) VALUES (gen_random_uuid(), 'org-x', 'x.y', '{}')`,
				`INSERT INTO outbox_lanes (organization_id) VALUES ('org-x')`},
			during: `DELETE FROM outbox_lanes WHERE organization_id = 'org-x'`,
		},
		{
			name:   "its first event committed",
			during: `INSERT INTO outbox_events (event_id, organization_id, event_type, payload) VALUES (gen_random_uuid(), 'org-x', 'x.y', '{}')`,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			db := pgtest.New(t)
			for _, q := range append(tc.before, `INSERT INTO outbox_events (event_id, organization_id, event_type, payload)
				VALUES (gen_random_uuid(), 'org-y', 'x.y', '{}')`) {
				_, err := db.Pool.Exec(ctx, q)
				require.NoError(t, err)
			}
			r, err := New(db.Pool, Config{SvixToken: "t"})
			require.NoError(t, err)

			other, err := db.Pool.Begin(ctx)
			require.NoError(t, err)
			defer func() { _ = other.Rollback(ctx) }()
			_, err = other.Exec(ctx, `INSERT INTO outbox_lanes (organization_id) VALUES ('org-y')`)
			require.NoError(t, err)
			_, err = other.Exec(ctx, tc.during)
			require.NoError(t, err)

			type claimed struct {
				rd  round
				err error
			}
			done := make(chan claimed, 1)
			go func() {
				rd, err := r.claim(ctx, []string{"org-x", "org-y"})
				done <- claimed{rd, err}
			}()
			requireBlocking(t, db, other) // the claim's new lane waits for the other insert
			require.NoError(t, other.Commit(ctx))
			var c claimed
			select {
			case c = <-done:
			case <-time.After(30 * time.Second):
				t.Fatal("the claim did not return once the other transaction committed")
			}
			require.NoError(t, c.err)

			require.Equal(t, []string{"org-x"}, c.rd.again, "events, no lane: claimed again")
			require.Empty(t, c.rd.empty)
			require.Len(t, c.rd.lanes, 1)
			require.Equal(t, "org-y", c.rd.lanes[0].org, "the lane the other transaction inserted, free, is leased")
		})
	}
}
