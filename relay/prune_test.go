package relay_test

import (
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jonboulle/clockwork"
	"github.com/stretchr/testify/require"

	"github.com/outboxrelay/outbox"
	"github.com/outboxrelay/outbox/relay"
)

// historyRows counts the delivery history.
func (b *bundle) historyRows(t *testing.T) int {
	t.Helper()
	var n int
	require.NoError(t, b.db.Pool.QueryRow(b.ctx, "SELECT count(*) FROM outbox_deliveries").Scan(&n))
	return n
}

// detachLegacyHistory detaches the partition migration 0004 made of the
// history before it (every hour up to the migration's), so that old rows
// written now land in the default partition, as rows do that no hourly
// partition covers.
func (b *bundle) detachLegacyHistory(t *testing.T) {
	t.Helper()
	var name string
	require.NoError(t, b.db.Pool.QueryRow(b.ctx, `SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
		WHERE i.inhparent = 'outbox_deliveries'::regclass AND c.relname LIKE 'outbox_deliveries_before_%'`).Scan(&name))
	_, err := b.db.Pool.Exec(b.ctx, "ALTER TABLE outbox_deliveries DETACH PARTITION "+name)
	require.NoError(t, err)
}

// oldHistory writes n delivery rows settled two days ago.
func (b *bundle) oldHistory(t *testing.T, n int) {
	t.Helper()
	_, err := b.db.Pool.Exec(b.ctx, `INSERT INTO outbox_deliveries (id, event_id, organization_id, event_type, outcome, attempts, created_at, settled_at)
		SELECT g, gen_random_uuid(), 'org-h', 'test.event', 'delivered', 1, now() - interval '2 days', now() - interval '2 days'
		FROM generate_series(1, $1) g`, n)
	require.NoError(t, err)
}

// Rows in the default partition (no hourly partition covered them) are
// pruned a bounded amount per tick, in a loop of its own: a poll-only relay
// keeps sweeping and delivering meanwhile.
func TestPruningDoesNotDelaySweeps(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.detachLegacyHistory(t)
	b.oldHistory(t, 100000) // five ticks' worth
	b.cfg.PollOnly = true
	b.cfg.PollInterval = 100 * time.Millisecond
	b.cfg.DeliveredRetention = 500 * time.Millisecond // prunes every 500 ms, 20000 rows a tick
	r, _ := b.start(t)
	require.Eventually(t, func() bool { return b.historyRows(t) < 100000 }, 10*time.Second, 10*time.Millisecond, "pruning started")

	committed := b.appendCommitted(t, []string{"org-p"}, 1)
	b.waitMessages(t, 1, 5*time.Second)
	b.requireExactlyOnce(t, committed)
	require.Greater(t, b.historyRows(t), 1, "delivered while history was still being pruned")
	require.True(t, r.Ready())
	require.Eventually(t, func() bool {
		var old int
		require.NoError(t, b.db.Pool.QueryRow(b.ctx, "SELECT count(*) FROM outbox_deliveries WHERE organization_id = 'org-h'").Scan(&old))
		return old == 0
	}, 30*time.Second, 20*time.Millisecond, "all old history pruned")
}

// Delivered history goes with its hour's partition once the whole hour is
// past the retention: the relay's clock is moved three hours on, so the
// test holds whatever the hour.
func TestDeliveryHistoryIsPruned(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.cfg.DeliveredRetention = time.Hour
	clock := clockwork.NewFakeClockAt(time.Now())
	relay.SetClock(&b.cfg, clock)
	r := b.newRelay(t)
	signals := relay.InitTestSignals(r)
	b.run(t, r)
	signals.Pruned.Wait(t) // the prune at start made this hour's partition

	// One transaction: a sweep that runs meanwhile (the one after LISTEN
	// connects) sees the three events or none. Seeing one, it would leave
	// the others due at the database's now, which this relay's frozen clock
	// never reaches, and no later sweep would come.
	var committed []outbox.AppendResult
	require.NoError(t, pgx.BeginFunc(b.ctx, b.db.Pool, func(tx pgx.Tx) error {
		for i := range 3 {
			res, err := outbox.Append(b.ctx, tx, outbox.AppendParams{OrganizationID: "org-h", EventType: "test.event", Payload: map[string]any{"seq": i}})
			if err != nil {
				return err
			}
			committed = append(committed, res)
		}
		return nil
	}))
	require.NoError(t, r.SignalRelay(b.ctx, "org-h"))
	b.waitMessages(t, 3, 10*time.Second)
	b.waitSettled(t, 10*time.Second)
	b.requireExactlyOnce(t, committed)
	require.Equal(t, 3, b.historyRows(t))

	signals.Pruned.Drain()
	clock.Advance(3 * time.Hour)
	signals.Pruned.Wait(t)
	require.Zero(t, b.historyRows(t), "history past its retention is dropped with its partition")
}
