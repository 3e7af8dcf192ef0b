package relay

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/outboxrelay/outbox/internal/pgtest"
)

// sweepSetup returns a relay with default settings on a fresh schema.
func sweepSetup(t *testing.T) (*Relay, *pgtest.DB) {
	t.Helper()
	db := pgtest.New(t)
	r, err := New(db.Pool, Config{SvixToken: "t"})
	require.NoError(t, err)
	return r, db
}

// queued reports whether org is in r's queue.
func queued(r *Relay, org string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	_, ok := r.queued[org]
	return ok
}

// The sweep's steps shared one transaction and one timeout: a step that
// could not finish (after a bulk append, the new events; here, a table
// lock) kept the due lanes, read first, from ever being queued. Each step
// stands alone: the due lane is queued while the new-events step waits.
func TestDueLanesAreQueuedWhateverTheNewEventsStepDoes(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	r, db := sweepSetup(t)
	r.sweeper.sweep(ctx) // the first sweep starts the new-events cursor
	_, err := db.Pool.Exec(ctx, `INSERT INTO outbox_lanes (organization_id, due_at) VALUES ('org-due', now() - interval '1 second')`)
	require.NoError(t, err)

	lock, err := db.Pool.Begin(ctx)
	require.NoError(t, err)
	defer func() { _ = lock.Rollback(ctx) }()
	_, err = lock.Exec(ctx, `LOCK TABLE outbox_events IN ACCESS EXCLUSIVE MODE`)
	require.NoError(t, err)

	swept := make(chan struct{})
	go func() { defer close(swept); r.sweeper.sweep(ctx) }()
	require.Eventually(t, func() bool { return queued(r, "org-due") }, 30*time.Second, 5*time.Millisecond,
		"the due lane waited for the new-events step")
	require.NoError(t, lock.Rollback(ctx))
	<-swept
}

// After a bulk append larger than a page, the new-events step works
// through it a page per sweep, every organization found once the pages
// are read, instead of reading it all in one statement that times out on
// every sweep.
func TestNewEventsAreReadAPageAtATime(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	r, db := sweepSetup(t)
	r.sweeper.page = 100
	r.sweeper.sweep(ctx)
	const orgs = 450
	_, err := db.Pool.Exec(ctx, `INSERT INTO outbox_events (event_id, organization_id, event_type, payload)
		SELECT gen_random_uuid(), 'org-' || g, 'x.y', '{}' FROM generate_series(1, $1) g`, orgs)
	require.NoError(t, err)
	r.sweeper.lastFull = time.Now() // no full sweep: the pages alone

	for sweeps := 1; sweeps <= orgs/100+1; sweeps++ {
		r.sweeper.sweep(ctx)
		r.mu.Lock()
		n := len(r.queue)
		r.mu.Unlock()
		require.Equal(t, min(orgs, 100*sweeps), n, "after %d sweeps", sweeps)
	}
	for i := range orgs {
		require.True(t, queued(r, fmt.Sprint("org-", i+1)))
	}
	r.mu.Lock()
	require.Len(t, slices.Compact(slices.Sorted(slices.Values(r.queue))), orgs)
	r.mu.Unlock()
}

// A full sweep lists every undiscovered organization once, a page at a
// time, in organization order, whatever its backlog's shape: a page of
// organizations with a few events each comes from a plain scan of the
// index (as many organizations as the page's entries hold), a page of deep
// ones from skipping through it one organization at a time (up to the
// page's limit of them). Organizations whose lane is due are the lane
// sweep's, never listed here.
func TestFullSweepListsEveryUndiscoveredOrganizationOnce(t *testing.T) {
	t.Parallel()
	// Pages of 100: a probe of the first 100 entries is dense while it
	// holds 100/16 organizations or more.
	cases := []struct {
		name string
		// events per organization, in organization order
		events []int
		// the page sizes the full pass returns, in order
		pages []int
	}{
		{"one event each: 100 entries, 100 organizations a page", slices.Repeat([]int{1}, 250), []int{100, 100, 50}},
		{"three each: the organizations of 100 entries a page", slices.Repeat([]int{3}, 90), []int{34, 34, 22}},
		{"deep: skipped through, up to 100 a page", slices.Repeat([]int{200}, 12), []int{12}},
		{"deep then shallow: skipped through", slices.Concat(slices.Repeat([]int{200}, 3), slices.Repeat([]int{1}, 12)), []int{15}},
		{"shallow then deep: scanned, then skipped through", slices.Concat(slices.Repeat([]int{1}, 10), slices.Repeat([]int{200}, 8)), []int{11, 7}},
		{"only the due lane's organization: a page that lists none", nil, []int{0}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			r, db := sweepSetup(t)
			r.sweeper.fullPage = 100
			var want []string
			for i, n := range tc.events {
				org := fmt.Sprintf("org-%03d", i)
				want = append(want, org)
				_, err := db.Pool.Exec(ctx, `INSERT INTO outbox_events (event_id, organization_id, event_type, payload)
					SELECT gen_random_uuid(), $1, 'x.y', '{}' FROM generate_series(1, $2)`, org, n)
				require.NoError(t, err)
			}
			// A lane due is the lane sweep's: not listed, still passed over.
			_, err := db.Pool.Exec(ctx, `INSERT INTO outbox_events (event_id, organization_id, event_type, payload)
				VALUES (gen_random_uuid(), 'org-zzz', 'x.y', '{}');
				INSERT INTO outbox_lanes (organization_id, due_at) VALUES ('org-zzz', now())`)
			require.NoError(t, err)

			var got []string
			var pages []int
			for range 20 {
				var page []string
				require.NoError(t, pgx.BeginFunc(ctx, db.Pool, func(tx pgx.Tx) (err error) {
					page, err = r.sweeper.sweepUndiscovered(ctx, tx)
					return err
				}))
				if r.sweeper.fullFrom == "" {
					require.Empty(t, page, "the pass ends on a page past the last organization")
					break
				}
				slices.Sort(page) // a page's own order is the planner's (the sweep shuffles it)
				if len(got) > 0 && len(page) > 0 {
					require.Greater(t, page[0], got[len(got)-1], "a page starts after the one before")
				}
				pages = append(pages, len(page))
				got = append(got, page...)
			}
			require.Equal(t, tc.pages, pages)
			require.Equal(t, want, got, "every undiscovered organization once, in order")
		})
	}
}

// r.waiting kept an entry for every organization that ever waited; the
// sweep forgets those whose time has come.
func TestSweepForgetsPastWaits(t *testing.T) {
	t.Parallel()
	r, _ := sweepSetup(t)
	r.mu.Lock()
	r.waiting["org-past"] = time.Now().Add(-time.Second)
	r.waiting["org-future"] = time.Now().Add(time.Hour)
	r.mu.Unlock()
	r.sweeper.sweep(context.Background())
	r.mu.Lock()
	defer r.mu.Unlock()
	require.NotContains(t, r.waiting, "org-past")
	require.Contains(t, r.waiting, "org-future")
}

// A signal that arrives while a claim is on its way is noted on the lane's
// work; when that claim finds the organization empty (its snapshot did not
// see the event the signal is for), the lane goes back in the queue
// instead of waiting for the sweep.
func TestSignalDuringAnEmptyClaimIsKept(t *testing.T) {
	t.Parallel()
	r, _ := sweepSetup(t)
	r.mu.Lock()
	r.working["org-e"] = &laneWork{signalledAgain: true} // claimed, then signalled
	r.mu.Unlock()
	turns := newRunners()
	first := make(chan struct{})
	close(first)
	require.True(t, r.claimAndStart(context.Background(), context.Background(), []string{"org-e"}, false, turns, first, make(chan struct{})))
	turns.close()
	require.True(t, queued(r, "org-e"))
}
