package relay

import (
	"context"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jonboulle/clockwork"
	"github.com/stretchr/testify/require"

	"github.com/outboxrelay/outbox/internal/syncbuf"
)

// The listener alone, on a fake clock, against an address that refuses
// connections: it reconnects after 100 ms, then twice as long each time,
// up to 5 s, and never counts itself up.
func TestListenerBacksOffOnItsClock(t *testing.T) {
	t.Parallel()
	refusing, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := refusing.Addr().String()
	require.NoError(t, refusing.Close()) // nothing listens there now
	cfg, err := pgx.ParseConfig("postgres://postgres@" + addr + "/postgres?sslmode=disable&connect_timeout=5")
	require.NoError(t, err)
	logs := &syncbuf.Buffer{}
	clock := clockwork.NewFakeClock()
	l := &listener{connConfig: cfg, channel: "outbox", clock: clock, log: slog.New(slog.NewTextHandler(logs, nil)),
		enqueue: func(...string) {}, connected: func(context.Context) { t.Error("connected to nothing") }}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); l.Run(ctx) }()

	for _, backoff := range []time.Duration{100 * time.Millisecond, 200 * time.Millisecond, 400 * time.Millisecond,
		800 * time.Millisecond, 1600 * time.Millisecond, 3200 * time.Millisecond} {
		require.NoError(t, clock.BlockUntilContext(ctx, 1), "waiting out its backoff")
		require.Equal(t, 1, strings.Count(logs.String(), "backoff="+backoff.String()), "this wait's backoff; logs:\n%s", logs)
		require.False(t, l.up.Load())
		clock.Advance(backoff)
	}
	require.NoError(t, clock.BlockUntilContext(ctx, 1))
	require.Equal(t, 1, strings.Count(logs.String(), "backoff=5s"), "capped at 5 s")
	cancel()
	<-done
}
