package relay_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/outboxrelay/outbox"
)

func TestNotifySignalWakesDelivery(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.cfg.PollInterval = time.Hour // only the signal can deliver
	r, _ := b.start(t)
	require.Eventually(t, r.Ready, 10*time.Second, 5*time.Millisecond, "LISTEN connection up")

	sig, err := outbox.NewNotifySignaler(b.db.Pool, b.cfg.Channel)
	require.NoError(t, err)
	var committed []outbox.AppendResult
	for i := range 5 {
		committed = append(committed, b.appendWithSignal(t, sig, fmt.Sprintf("org-%d", i)))
	}
	b.waitMessages(t, len(committed), 10*time.Second)
	b.requireExactlyOnce(t, committed)
}

// The relay LISTENs on a connection of its own, not one of the pool's (the
// docs count it as one server connection beyond MaxConns), named for
// operators in pg_stat_activity.
func TestListenConnectionIsItsOwn(t *testing.T) {
	t.Parallel()
	b := setup(t)
	r, _ := b.start(t)
	require.Eventually(t, r.Ready, 10*time.Second, 10*time.Millisecond)
	var listeners int
	require.NoError(t, b.db.Pool.QueryRow(b.ctx, `SELECT count(*) FROM pg_stat_activity
		WHERE application_name = 'outbox relay LISTEN' AND query = $1`, "LISTEN "+pgx.Identifier{b.cfg.Channel}.Sanitize()).Scan(&listeners))
	require.Equal(t, 1, listeners, "one LISTEN connection, dialled apart (the pool's connections carry no such name)")
}
