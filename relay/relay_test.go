package relay_test

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/outboxrelay/outbox"
	"github.com/outboxrelay/outbox/internal/pgtest"
	"github.com/outboxrelay/outbox/internal/syncbuf"
	"github.com/outboxrelay/outbox/outboxtest/svixtest"
	"github.com/outboxrelay/outbox/relay"
)

// The relay's tests mostly wait, on the fake's latency and on the
// database's clock (leases, liveness): six at once keep two cores busy.
func TestMain(m *testing.M) { pgtest.MainParallel(m, 6) }

// bundle is what a relay test works with: its own schema, a Svix fake, and
// a relay configuration pointing at both.
type bundle struct {
	ctx  context.Context
	db   *pgtest.DB
	fake *svixtest.Server
	cfg  relay.Config
	logs *syncbuf.Buffer
}

// setup returns a bundle whose relay config has test-sized timings.
func setup(t *testing.T) *bundle {
	t.Helper()
	db := pgtest.New(t)
	fake := svixtest.NewT(t, svixtest.Options{})
	logs := &syncbuf.Buffer{}
	return &bundle{
		ctx: context.Background(), db: db, fake: fake, logs: logs,
		cfg: relay.Config{
			SvixToken:     fake.Token(),
			SvixServerURL: fake.URL(),
			Channel:       "outbox_" + db.Schema, // NOTIFY is database-wide: one channel per test
			PollInterval:  100 * time.Millisecond,
			LeaseDuration: 5 * time.Second,
			// A relay fences itself (starts no call) once its last heartbeat
			// through is 3/4 of this old: by default 1.1 s, which a loaded
			// CI server's stalls reach, making turns that send nothing.
			// Tests of liveness set their own.
			LivenessTimeout: 5 * time.Second,
			SendTimeout:     500 * time.Millisecond,
			RetryBaseDelay:  10 * time.Millisecond,
			RetryMaxDelay:   50 * time.Millisecond,
			RateLimitPause:  50 * time.Millisecond,
			AuthPause:       200 * time.Millisecond,
			Logger:          slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelInfo})),
		},
	}
}

func (b *bundle) newRelay(t *testing.T) *relay.Relay {
	t.Helper()
	r, err := relay.New(b.db.Pool, b.cfg)
	require.NoError(t, err)
	return r
}

// start runs a relay until the test ends (or stop is called) and checks Run
// returned nil.
func (b *bundle) start(t *testing.T) (r *relay.Relay, stop func()) {
	t.Helper()
	r = b.newRelay(t)
	return r, b.run(t, r)
}

// run runs r until the test ends (or stop is called) and checks Run
// returned nil.
func (b *bundle) run(t *testing.T, r *relay.Relay) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(b.ctx)
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				require.NoError(t, err)
			case <-time.After(30 * time.Second):
				t.Error("relay did not stop within 30s")
			}
		})
	}
	t.Cleanup(stop)
	return stop
}

// appendCommitted commits n events per organization, one transaction each,
// and returns their results.
func (b *bundle) appendCommitted(t *testing.T, orgs []string, n int) []outbox.AppendResult {
	t.Helper()
	var out []outbox.AppendResult
	for i := range n {
		for _, org := range orgs {
			res, err := outbox.Append(b.ctx, b.db.Pool, outbox.AppendParams{
				OrganizationID: org, EventType: "test.event", Payload: map[string]any{"seq": i, "org": org},
			})
			require.NoError(t, err)
			out = append(out, res)
		}
	}
	return out
}

// heldLanes counts the lanes leased now.
func (b *bundle) heldLanes(t *testing.T) (n int) {
	t.Helper()
	require.NoError(t, b.db.Pool.QueryRow(b.ctx, "SELECT count(*) FROM outbox_lanes WHERE lease_token IS NOT NULL").Scan(&n))
	return n
}

// dbNow reads the database's clock, the one leases, pauses and retries are
// set on.
func (b *bundle) dbNow(t *testing.T) time.Time {
	t.Helper()
	var now time.Time
	require.NoError(t, b.db.Pool.QueryRow(b.ctx, "SELECT clock_timestamp()").Scan(&now))
	return now
}

// waitMessages waits for the fake to hold n messages.
func (b *bundle) waitMessages(t *testing.T, n int, within time.Duration) {
	t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, within)
	defer cancel()
	if err := b.fake.WaitForMessages(ctx, n); err != nil {
		t.Fatalf("waited %s for %d messages, have %d; pending %d; logs:\n%s", within, n, b.fake.MessageCount(), b.pending(t), b.logs.String())
	}
}

// waitSettled waits until the hot table is empty.
func (b *bundle) waitSettled(t *testing.T, within time.Duration) {
	t.Helper()
	require.Eventually(t, func() bool { return b.pending(t) == 0 }, within, 10*time.Millisecond,
		"events still pending; logs:\n%s", b.logs.String())
}

func (b *bundle) pending(t *testing.T) int {
	t.Helper()
	var n int
	require.NoError(t, b.db.Pool.QueryRow(b.ctx, "SELECT count(*) FROM outbox_events").Scan(&n))
	return n
}

// requireExactlyOnce checks the fake holds exactly one message per expected
// event, and no other.
func (b *bundle) requireExactlyOnce(t *testing.T, want []outbox.AppendResult) {
	t.Helper()
	got := map[string]int{}
	for _, m := range b.fake.Messages() {
		got[m.EventID]++
	}
	for _, w := range want {
		require.Equal(t, 1, got[w.EventID.String()], "event %s (org %s) created %d times", w.EventID, w.OrganizationID, got[w.EventID.String()])
		delete(got, w.EventID.String())
	}
	require.Empty(t, got, "messages created for events that were not expected")
}

// waitStats waits until the relays' counters, summed, satisfy ok. Counters
// are updated just after a settlement commits, so a test that saw the rows
// settled may read them a moment early.
func waitStats(t *testing.T, ok func(relay.Stats) bool, rs ...*relay.Relay) {
	t.Helper()
	var sum relay.Stats
	require.Eventually(t, func() bool {
		sum = relay.Stats{}
		for _, r := range rs {
			st := r.Stats()
			sum.Delivered += st.Delivered
			sum.DeadLettered += st.DeadLettered
			sum.Retried += st.Retried
			sum.Skipped += st.Skipped
			sum.Turns += st.Turns
		}
		return ok(sum)
	}, 10*time.Second, 5*time.Millisecond, "relay counters: %+v", sum)
}

// deliveries reads the delivery history: event id -> (outcome, message id, attempts).
type delivery struct {
	outcome, messageID string
	attempts           int
}

func (b *bundle) deliveries(t *testing.T) map[string]delivery {
	t.Helper()
	rows, err := b.db.Pool.Query(b.ctx, "SELECT event_id::text, outcome, coalesce(svix_message_id, ''), attempts FROM outbox_deliveries")
	require.NoError(t, err)
	out := map[string]delivery{}
	var (
		id string
		d  delivery
	)
	_, err = pgx.ForEachRow(rows, []any{&id, &d.outcome, &d.messageID, &d.attempts}, func() error {
		out[id] = d
		return nil
	})
	require.NoError(t, err)
	return out
}

func TestDeliversEveryCommittedEventOnce(t *testing.T) {
	t.Parallel()
	b := setup(t)

	committed := b.appendCommitted(t, []string{"org-a", "org-b", "org-c"}, 20)
	tx, err := b.db.Pool.Begin(b.ctx)
	require.NoError(t, err)
	for i := range 5 {
		_, err := outbox.Append(b.ctx, tx, outbox.AppendParams{OrganizationID: "org-a", EventType: "test.event", Payload: map[string]any{"rolled_back": i}})
		require.NoError(t, err)
	}
	require.NoError(t, tx.Rollback(b.ctx))

	r, _ := b.start(t)
	b.waitMessages(t, len(committed), 20*time.Second)
	b.waitSettled(t, 10*time.Second)

	b.requireExactlyOnce(t, committed)
	require.ElementsMatch(t, []string{"org-a", "org-b", "org-c"}, b.fake.Apps(), "one application per organization, created on first use")
	hist := b.deliveries(t)
	require.Len(t, hist, len(committed))
	byEvent := map[string]string{}
	for _, m := range b.fake.Messages() {
		byEvent[m.EventID] = m.ID
	}
	for _, c := range committed {
		d := hist[c.EventID.String()]
		require.Equal(t, "delivered", d.outcome)
		require.Equal(t, byEvent[c.EventID.String()], d.messageID, "history records the Svix message id")
		require.Equal(t, 1, d.attempts)
	}
	waitStats(t, func(st relay.Stats) bool { return st.Delivered == uint64(len(committed)) }, r)
	for _, req := range b.fake.Requests() {
		if req.Method == "POST" {
			require.Equal(t, "outbox-"+req.EventID, req.IdempotencyKey, "a stable idempotency key per event")
		}
	}
}

func TestOrderPerOrganization(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.cfg.BatchSize = 7 // several turns per lane
	committed := b.appendCommitted(t, []string{"org-1", "org-2", "org-3", "org-4"}, 30)

	b.start(t)
	b.waitMessages(t, len(committed), 20*time.Second)

	for _, org := range []string{"org-1", "org-2", "org-3", "org-4"} {
		msgs := b.fake.MessagesFor(org)
		require.Len(t, msgs, 30)
		for i, m := range msgs {
			var p struct{ Seq int }
			require.NoError(t, json.Unmarshal(m.Payload, &p))
			require.Equal(t, i, p.Seq, "org %s: message %d out of order", org, i)
		}
	}
}

func TestSeveralRelaysShareTheWork(t *testing.T) {
	t.Parallel()
	for _, relays := range []int{2, 4} {
		t.Run(fmt.Sprintf("relays=%d", relays), func(t *testing.T) {
			t.Parallel()
			b := setup(t)
			b.fake.SetLatency(2 * time.Millisecond)
			var orgs []string
			for i := range 12 {
				orgs = append(orgs, fmt.Sprintf("org-%02d", i))
			}
			var rs []*relay.Relay
			for i := range relays {
				b.cfg.ID = fmt.Sprintf("relay-%d", i)
				r, _ := b.start(t)
				rs = append(rs, r)
			}
			// Append while the relays run, so they race for the same lanes.
			committed := b.appendCommitted(t, orgs, 15)
			b.waitMessages(t, len(committed), 30*time.Second)
			b.waitSettled(t, 10*time.Second)

			b.requireExactlyOnce(t, committed)
			require.Zero(t, b.fake.Conflicts(), "two relays sent the same event: the lease failed")
			waitStats(t, func(st relay.Stats) bool { return st.Delivered == uint64(len(committed)) }, rs...)
		})
	}
}

func TestInProcessSignalWakesDelivery(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.cfg.PollInterval = time.Hour
	b.cfg.PollOnly = true // no LISTEN, no NOTIFY: the relay is the signaler
	r, _ := b.start(t)

	committed := []outbox.AppendResult{b.appendWithSignal(t, r, "org-in-process")}
	b.waitMessages(t, 1, 10*time.Second)
	b.requireExactlyOnce(t, committed)
}

func TestBurstOfSignalsIsCoalesced(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.cfg.PollInterval = time.Hour
	b.cfg.PollOnly = true
	b.fake.SetLatency(20 * time.Millisecond)
	r, _ := b.start(t)

	committed := b.appendCommitted(t, []string{"org-burst"}, 10)
	for range 1000 {
		require.NoError(t, r.SignalRelay(b.ctx, "org-burst"))
	}
	b.waitMessages(t, len(committed), 10*time.Second)
	b.waitSettled(t, 10*time.Second)
	// 1000 signals for one lane: a turn or a few, not a thousand.
	require.Less(t, r.Stats().Turns, uint64(10))
}

func TestGracefulShutdownLosesNothing(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.fake.SetLatency(5 * time.Millisecond)
	b.cfg.Concurrency = 4
	committed := b.appendCommitted(t, []string{"org-g1", "org-g2", "org-g3", "org-g4"}, 50)

	_, stop := b.start(t)
	b.waitMessages(t, 20, 10*time.Second)
	stop() // mid-backlog
	delivered := b.fake.MessageCount()
	require.Less(t, delivered, len(committed), "stopped before the end, as the test intends")
	require.Zero(t, b.heldLanes(t), "leases are released on shutdown")
	var history int
	require.NoError(t, b.db.Pool.QueryRow(b.ctx, "SELECT count(*) FROM outbox_deliveries").Scan(&history))
	require.Equal(t, delivered, history, "everything Svix created was settled before Run returned")
	require.Equal(t, len(committed)-delivered, b.pending(t))
	require.Eventually(t, func() bool { return b.fake.OpenConnections() == 0 }, 30*time.Second, 10*time.Millisecond,
		"a stopped relay holds no connection to Svix (%d open)", b.fake.OpenConnections())

	b.start(t)
	b.waitMessages(t, len(committed), 20*time.Second)
	b.waitSettled(t, 10*time.Second)
	b.requireExactlyOnce(t, committed)
}

func TestShutdownInterruptsHangingCalls(t *testing.T) {
	t.Parallel()
	b := setup(t)
	// A call that would hang for 30 s against a 100 ms ShutdownTimeout:
	// the bound below tells them apart on however loaded a machine.
	b.cfg.SendTimeout = 30 * time.Second
	b.cfg.LeaseDuration = 2 * time.Minute
	b.cfg.ShutdownTimeout = 100 * time.Millisecond
	b.fake.InjectFault(svixtest.Fault{Kind: svixtest.FaultHang})
	b.appendCommitted(t, []string{"org-h"}, 1)

	_, stop := b.start(t)
	require.Eventually(t, func() bool { return b.fake.CreateAttempts() == 1 }, 10*time.Second, 5*time.Millisecond)
	stopped := time.Now()
	stop()
	require.Less(t, time.Since(stopped), 15*time.Second, "Run waited for the call instead of ShutdownTimeout")
	var attempts int
	require.NoError(t, b.db.Pool.QueryRow(b.ctx, "SELECT attempts FROM outbox_events").Scan(&attempts))
	require.Zero(t, attempts, "an interrupted call is not counted")
	require.Zero(t, b.heldLanes(t))
}

// A relay claims a quarter of Concurrency lanes beyond its turn slots, so
// that a slot freed by a turn's last call is taken without waiting for a
// claim's round trip, and no more: with every call hanging, Concurrency 4
// holds exactly 5 of 10 organizations' lanes, 4 of them in a turn (the
// fifth has not even resolved its destination).
func TestLanesAreClaimedAheadOfFreeSlotsByAQuarterOfConcurrency(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.cfg.Concurrency = 4
	// The calls hang until the shutdown, and the fifth lane waits for a
	// slot for a quarter of the lease: 30 s, far longer than the test.
	b.cfg.SendTimeout = 30 * time.Second
	b.cfg.LeaseDuration = 2 * time.Minute
	b.cfg.ShutdownTimeout = 100 * time.Millisecond
	var resolved atomic.Int64
	b.cfg.Resolver = relay.ResolverFunc(func(ctx context.Context, org string) (relay.Destination, error) {
		resolved.Add(1)
		return relay.DefaultResolver.Resolve(ctx, org)
	})
	remove := b.fake.InjectFault(svixtest.Fault{Kind: svixtest.FaultHang})
	orgs := make([]string, 10)
	for i := range orgs {
		orgs[i] = fmt.Sprintf("org-ahead-%d", i)
	}
	committed := b.appendCommitted(t, orgs, 1)

	_, stop := b.start(t)
	require.Eventually(t, func() bool { return b.fake.CreateAttempts() == 4 && b.heldLanes(t) == 5 }, 10*time.Second, 5*time.Millisecond,
		"4 calls in flight and 5 lanes held")
	require.EqualValues(t, 4, resolved.Load(), "only the lanes in a turn resolve their destination")
	stop()
	require.Zero(t, b.heldLanes(t), "leases are released on shutdown")

	remove()
	b.start(t)
	b.waitMessages(t, len(committed), 10*time.Second)
	b.waitSettled(t, 10*time.Second)
	b.requireExactlyOnce(t, committed)
}

// A lane claimed ahead that waits a quarter of its lease for a turn slot
// gives its lease back unsent, goes back in the queue and is delivered
// once the slot frees: here the only slot is held by a call that hangs
// until SendTimeout, longer than that quarter.
func TestLaneClaimedAheadGivesUpItsWaitAndIsDeliveredLater(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.cfg.Concurrency = 1 // one slot, one lane claimed ahead
	b.cfg.LeaseDuration = 4 * time.Second
	b.cfg.SendTimeout = 1500 * time.Millisecond // the hang outlasts the wait of a second
	b.cfg.QuickRetries = -1
	b.fake.InjectFault(svixtest.Fault{Kind: svixtest.FaultHang, Times: 1})
	r, signals := b.startWithSignals(t)
	committed := b.appendCommitted(t, []string{"org-slot-a", "org-slot-b"}, 1)
	require.NoError(t, r.SignalRelays(b.ctx, []string{"org-slot-a", "org-slot-b"}))

	org := signals.SlotGivenUp.Wait(t)
	require.Contains(t, []string{"org-slot-a", "org-slot-b"}, org)
	b.waitMessages(t, len(committed), 20*time.Second)
	b.waitSettled(t, 10*time.Second)
	b.requireExactlyOnce(t, committed)
}

func TestExplicitSchemaWithoutSearchPath(t *testing.T) {
	t.Parallel()
	b := setup(t)
	plain, err := pgxpool.New(b.ctx, pgtest.ServerURL(t))
	require.NoError(t, err)
	t.Cleanup(plain.Close)
	b.cfg.Schema = b.db.Schema
	committed := b.appendCommitted(t, []string{"org-schema"}, 3)

	r, err := relay.New(plain, b.cfg)
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(b.ctx)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); _ = r.Run(ctx) }()
	defer func() { cancel(); wg.Wait() }()
	b.waitMessages(t, len(committed), 10*time.Second)
	b.requireExactlyOnce(t, committed)
}

func TestRunTwiceIsRefused(t *testing.T) {
	t.Parallel()
	b := setup(t)
	r, _ := b.start(t)
	require.Eventually(t, r.Ready, 10*time.Second, 5*time.Millisecond)
	require.ErrorIs(t, r.Run(b.ctx), relay.ErrAlreadyRunning)
}

func TestBusyOrganizationCannotStarveOthers(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.cfg.Concurrency = 1 // one lane at a time: turns are all there is
	b.cfg.BatchSize = 10
	b.fake.SetLatency(time.Millisecond)
	busy := b.appendCommitted(t, []string{"org-busy"}, 300)
	quiet := b.appendCommitted(t, []string{"org-q1", "org-q2", "org-q3"}, 1)

	b.start(t)
	b.waitMessages(t, len(busy)+len(quiet), 30*time.Second)
	position := map[string]int{}
	for i, m := range b.fake.Messages() {
		position[m.EventID] = i
	}
	for _, q := range quiet {
		// Each organization waits at most a few turns of the busy one.
		require.Less(t, position[q.EventID.String()], 60, "org %s starved behind org-busy", q.OrganizationID)
	}
}

// appendWithSignal commits one event and signals after the commit.
func (b *bundle) appendWithSignal(t *testing.T, s outbox.Signaler, org string) outbox.AppendResult {
	t.Helper()
	var res outbox.AppendResult
	err := outbox.WithTx(b.ctx, b.db.Pool, s, func(tx *outbox.Tx) error {
		var err error
		res, err = outbox.Append(b.ctx, tx, outbox.AppendParams{OrganizationID: org, EventType: "test.event", Payload: map[string]any{}})
		return err
	})
	require.NoError(t, err)
	return res
}

// insertDeadLetter writes a dead letter as the relay would have.
func (b *bundle) insertDeadLetter(t *testing.T, id int64, org string) {
	t.Helper()
	_, err := b.db.Pool.Exec(b.ctx, `INSERT INTO outbox_dead_letters
		(id, event_id, organization_id, event_type, payload, created_at, attempts, last_error, status_code, response_body)
		VALUES ($1, gen_random_uuid(), $2, 'x.y', '{"k": 1}', now(), 1, 'svix refused the message: 422', 422, '{"detail": []}')`, id, org)
	require.NoError(t, err)
}

// appendLate appends an event of org in a transaction the test commits
// later (it is rolled back at the end otherwise): its id is lower than
// those of events committed meanwhile.
func (b *bundle) appendLate(t *testing.T, org string) (pgx.Tx, outbox.AppendResult) {
	t.Helper()
	late, err := b.db.Pool.Begin(b.ctx)
	require.NoError(t, err)
	t.Cleanup(func() { _ = late.Rollback(b.ctx) })
	res, err := outbox.Append(b.ctx, late, outbox.AppendParams{OrganizationID: org, EventType: "test.event", Payload: map[string]any{"n": "late"}})
	require.NoError(t, err)
	return late, res
}

// "Order" is id order among the rows visible when a lane is claimed: a
// transaction that commits late with a lower id is delivered after higher
// ids that committed first. It is delivered, never skipped: no cursor ever
// steps over it.
func TestLateCommitIsDeliveredAfterLaterIDs(t *testing.T) {
	t.Parallel()
	b := setup(t)
	late, lateRes := b.appendLate(t, "org-o")
	early := b.appendCommitted(t, []string{"org-o"}, 2)
	require.Less(t, lateRes.ID, early[0].ID, "the late transaction took the lower id")

	r, _ := b.start(t)
	b.waitMessages(t, 2, 10*time.Second)
	require.NoError(t, late.Commit(b.ctx))
	require.NoError(t, r.SignalRelay(b.ctx, "org-o"))
	b.waitMessages(t, 3, 10*time.Second)
	got := b.fake.Messages()
	require.Equal(t, []string{early[0].EventID.String(), early[1].EventID.String(), lateRes.EventID.String()},
		[]string{got[0].EventID, got[1].EventID, got[2].EventID}, "created in the order the rows became visible")
}

// A producer that passes its own event id can retry after an ambiguous
// commit: while the first is pending the retry is refused, and once the
// first was delivered Svix deduplicates the retry by eventId — one message.
func TestIdempotentProducer(t *testing.T) {
	t.Parallel()
	b := setup(t)
	id := uuid.New()
	p := outbox.AppendParams{OrganizationID: "org-i", EventType: "test.event", Payload: map[string]any{"k": 1}, EventID: id}
	res, err := outbox.Append(b.ctx, b.db.Pool, p)
	require.NoError(t, err)
	require.Equal(t, id, res.EventID)
	_, err = outbox.Append(b.ctx, b.db.Pool, p)
	require.ErrorIs(t, err, outbox.ErrDuplicateEventID, "the retry while the first is pending")

	r, _ := b.start(t)
	b.waitMessages(t, 1, 10*time.Second)
	b.waitSettled(t, 10*time.Second)
	_, err = outbox.Append(b.ctx, b.db.Pool, p) // the retry after delivery: accepted...
	require.NoError(t, err)
	require.NoError(t, r.SignalRelay(b.ctx, "org-i"))
	b.waitSettled(t, 10*time.Second)
	require.Equal(t, 1, b.fake.MessageCount(), "...and deduplicated by Svix: still one message")
	// (Svix answered the retry's create by replaying the first answer: same
	// Idempotency-Key. After its 12 hours, the eventId's 409 does the same.)
	waitStats(t, func(st relay.Stats) bool { return st.Delivered == 2 }, r)
}
