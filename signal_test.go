package outbox_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/stretchr/testify/require"

	"github.com/outboxrelay/outbox"
)

// listen returns a connection LISTENing on channel.
func (b *testBundle) listen(t *testing.T, channel string) *pgx.Conn {
	t.Helper()
	conn, err := pgx.Connect(b.ctx, b.db.URL)
	require.NoError(t, err)
	t.Cleanup(func() { conn.Close(context.Background()) })
	_, err = conn.Exec(b.ctx, "LISTEN "+pgx.Identifier{channel}.Sanitize())
	require.NoError(t, err)
	return conn
}

// nextNotification waits up to d for a notification.
func nextNotification(conn *pgx.Conn, d time.Duration) (*pgconn.Notification, error) {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	return conn.WaitForNotification(ctx)
}

func TestNotifySignalerHeardAfterCommit(t *testing.T) {
	t.Parallel()
	b := setup(t)
	channel := "outbox_" + b.db.Schema
	conn := b.listen(t, channel)

	// On the transaction: delivered only when it commits.
	tx, err := b.pool.Begin(b.ctx)
	require.NoError(t, err)
	sig, err := outbox.NewNotifySignaler(tx, channel)
	require.NoError(t, err)
	require.NoError(t, sig.SignalRelay(b.ctx, "org-tx"))
	_, err = nextNotification(conn, 200*time.Millisecond)
	require.ErrorIs(t, err, context.DeadlineExceeded, "heard before commit")
	require.NoError(t, tx.Commit(b.ctx))
	n, err := nextNotification(conn, 5*time.Second)
	require.NoError(t, err)
	require.Equal(t, channel, n.Channel)
	require.Equal(t, "org-tx", n.Payload)

	// On the pool after a commit: heard at once.
	poolSig, err := outbox.NewNotifySignaler(b.pool, channel)
	require.NoError(t, err)
	require.NoError(t, poolSig.SignalRelay(b.ctx, "org-pool"))
	n, err = nextNotification(conn, 5*time.Second)
	require.NoError(t, err)
	require.Equal(t, "org-pool", n.Payload)
}

func TestNotifySignalerNeverAfterRollback(t *testing.T) {
	t.Parallel()
	b := setup(t)
	channel := "outbox_" + b.db.Schema
	conn := b.listen(t, channel)

	tx, err := b.pool.Begin(b.ctx)
	require.NoError(t, err)
	sig, err := outbox.NewNotifySignaler(tx, channel)
	require.NoError(t, err)
	require.NoError(t, sig.SignalRelay(b.ctx, "org-rolled-back"))
	require.NoError(t, tx.Rollback(b.ctx))

	_, err = nextNotification(conn, 500*time.Millisecond)
	require.ErrorIs(t, err, context.DeadlineExceeded, "a rolled-back signal was delivered")
}

func TestNotifySignalerChannel(t *testing.T) {
	t.Parallel()
	sig, err := outbox.NewNotifySignaler(nil, "")
	require.NoError(t, err)
	require.Equal(t, outbox.DefaultNotifyChannel, sig.Channel())
}

func (r *recorder) SignalRelay(_ context.Context, org string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.orgs = append(r.orgs, org)
	return r.err
}

func (r *recorder) signalled() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.orgs...)
}

func TestMultiSignalerFansOut(t *testing.T) {
	t.Parallel()
	a, c := &recorder{}, &recorder{err: errors.New("c failed")}
	var calls int
	f := outbox.SignalerFunc(func(context.Context, string) error { calls++; return nil })
	err := outbox.MultiSignaler(a, c, f, outbox.NopSignaler).SignalRelay(context.Background(), "org-1")
	require.ErrorContains(t, err, "c failed")
	require.Equal(t, []string{"org-1"}, a.signalled())
	require.Equal(t, []string{"org-1"}, c.signalled(), "an earlier failure must not stop the fan-out")
	require.Equal(t, 1, calls)
}
