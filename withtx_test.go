package outbox_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/stretchr/testify/require"

	"github.com/outboxrelay/outbox"
)

// recorder is a Signaler that remembers what it was asked to signal.
type recorder struct {
	mu   sync.Mutex
	orgs []string
	err  error
}

func TestWithTxSignalsOncePerOrganizationAfterCommit(t *testing.T) {
	t.Parallel()
	b := setup(t)
	rec := &recorder{}

	err := outbox.WithTx(b.ctx, b.pool, rec, func(tx *outbox.Tx) error {
		for _, org := range []string{"org-b", "org-a", "org-b"} {
			if _, err := outbox.Append(b.ctx, tx, params(org, map[string]any{})); err != nil {
				return err
			}
		}
		if _, err := outbox.AppendBatch(b.ctx, tx, []outbox.AppendParams{params("org-c", map[string]any{}), params("org-a", map[string]any{})}); err != nil {
			return err
		}
		require.Empty(t, rec.signalled(), "signalled before commit")
		require.Equal(t, []string{"org-b", "org-a", "org-c"}, tx.Organizations())
		return nil
	})
	require.NoError(t, err)
	require.Equal(t, []string{"org-b", "org-a", "org-c"}, rec.signalled())
	require.Equal(t, 5, b.countEvents(t, ""))
}

func TestWithTxSignalsNothingOnError(t *testing.T) {
	t.Parallel()
	b := setup(t)
	rec := &recorder{}
	boom := errors.New("handler failed")

	err := outbox.WithTx(b.ctx, b.pool, rec, func(tx *outbox.Tx) error {
		_, err := outbox.Append(b.ctx, tx, params("org-1", map[string]any{}))
		require.NoError(t, err)
		return boom
	})
	require.ErrorIs(t, err, boom)
	require.Empty(t, rec.signalled())
	require.Equal(t, 0, b.countEvents(t, ""))

	require.Panics(t, func() {
		_ = outbox.WithTx(b.ctx, b.pool, rec, func(tx *outbox.Tx) error {
			_, err := outbox.Append(b.ctx, tx, params("org-1", map[string]any{}))
			require.NoError(t, err)
			panic("handler panicked")
		})
	})
	require.Empty(t, rec.signalled())
	require.Equal(t, 0, b.countEvents(t, ""))
}

func TestWithTxSignalFailureDoesNotFailCommittedWork(t *testing.T) {
	t.Parallel()
	b := setup(t)
	rec := &recorder{err: errors.New("signal down")}

	err := outbox.WithTx(b.ctx, b.pool, rec, func(tx *outbox.Tx) error {
		_, err := outbox.Append(b.ctx, tx, params("org-1", map[string]any{}))
		return err
	})
	require.NoError(t, err)
	require.Equal(t, []string{"org-1"}, rec.signalled())
	require.Equal(t, 1, b.countEvents(t, ""))
}

func TestWithTxNotifyReachesListener(t *testing.T) {
	t.Parallel()
	b := setup(t)
	channel := "outbox_" + b.db.Schema
	conn := b.listen(t, channel)
	sig, err := outbox.NewNotifySignaler(b.pool, channel)
	require.NoError(t, err)

	err = outbox.WithTx(b.ctx, b.pool, sig, func(tx *outbox.Tx) error {
		_, err := outbox.Append(b.ctx, tx, params("org-n", map[string]any{}))
		return err
	})
	require.NoError(t, err)
	n, err := nextNotification(conn, 5*time.Second)
	require.NoError(t, err)
	require.Equal(t, "org-n", n.Payload)
}

// Given a transaction, WithTx would commit a savepoint and signal before the
// real commit: it refuses, running nothing.
func TestWithTxRefusesATransaction(t *testing.T) {
	t.Parallel()
	b := setup(t)
	outer, err := b.pool.Begin(b.ctx)
	require.NoError(t, err)
	defer func() { _ = outer.Rollback(b.ctx) }()
	rec := &recorder{}
	ran := false
	err = outbox.WithTx(b.ctx, outer, rec, func(tx *outbox.Tx) error { ran = true; return nil })
	require.ErrorIs(t, err, outbox.ErrNestedTx)
	require.False(t, ran, "fn must not run")
	require.Empty(t, rec.signalled())
	wrapped := &outbox.Tx{Tx: outer}
	require.ErrorIs(t, outbox.WithTx(b.ctx, wrapped, rec, func(*outbox.Tx) error { return nil }), outbox.ErrNestedTx)
}

// countingDB counts the statements a NotifySignaler sends.
type countingDB struct {
	outbox.DBTX
	execs atomic.Int64
}

func (c *countingDB) Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error) {
	c.execs.Add(1)
	return c.DBTX.Exec(ctx, sql, args...)
}

// After a commit that touched many organizations, WithTx signals them all
// in one round trip through a NotifySignaler (a BatchSignaler), and every
// listener hears each organization.
func TestWithTxSignalsManyOrganizationsInOneRoundTrip(t *testing.T) {
	t.Parallel()
	b := setup(t)
	channel := "outbox_" + b.db.Schema
	conn := b.listen(t, channel)
	db := &countingDB{DBTX: b.pool}
	sig, err := outbox.NewNotifySignaler(db, channel)
	require.NoError(t, err)
	var ps []outbox.AppendParams
	for i := range 1000 {
		ps = append(ps, params(fmt.Sprintf("org-%04d", i), map[string]any{"i": i}))
	}
	err = outbox.WithTx(b.ctx, b.pool, sig, func(tx *outbox.Tx) error {
		_, err := outbox.AppendBatch(b.ctx, tx, ps)
		return err
	})
	require.NoError(t, err)
	require.EqualValues(t, 1, db.execs.Load(), "one pg_notify round trip for 1000 organizations")
	heard := map[string]bool{}
	for len(heard) < 1000 {
		n, err := nextNotification(conn, 5*time.Second)
		require.NoError(t, err)
		heard[n.Payload] = true
	}

	// MultiSignaler passes the batch on whole, and one at a time to a
	// signaler that only knows SignalRelay.
	rec := &recorder{}
	db.execs.Store(0)
	err = outbox.WithTx(b.ctx, b.pool, outbox.MultiSignaler(sig, rec), func(tx *outbox.Tx) error {
		_, err := outbox.AppendBatch(b.ctx, tx, ps[:10])
		return err
	})
	require.NoError(t, err)
	require.EqualValues(t, 1, db.execs.Load())
	require.Len(t, rec.signalled(), 10)
}
