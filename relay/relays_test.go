package relay_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/outboxrelay/outbox/outboxtest/svixtest"
	"github.com/outboxrelay/outbox/relay"
)

// Each relay reports, with its heartbeat, what Svix answered it; Relays
// lists it, alive.
func TestRelaysReportsSvixHealth(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.cfg.ID = "relay-health"
	b.cfg.HeartbeatInterval = 50 * time.Millisecond
	b.fake.InjectFault(svixtest.Fault{Kind: svixtest.FaultStatus, Status: 503, Times: 1})
	r, signals := b.startWithSignals(t)
	committed := b.appendCommitted(t, []string{"org-h"}, 2)
	require.NoError(t, r.SignalRelay(b.ctx, "org-h"))
	b.waitMessages(t, 2, 10*time.Second)
	b.requireExactlyOnce(t, committed)
	waitStats(t, func(s relay.Stats) bool { return s.Delivered == 2 }, r)
	// A heartbeat under way while the signals are drained reports what it
	// read before the deliveries; the one after it began after them.
	signals.Beat.Drain()
	waitHeartbeat(t, signals)
	waitHeartbeat(t, signals)

	relays, err := relay.NewAdmin(b.db.Pool, relay.AdminConfig{})
	require.NoError(t, err)
	list, err := relays.Relays(b.ctx)
	require.NoError(t, err)
	require.Len(t, list, 1)
	ri := list[0]
	require.Equal(t, "relay-health", ri.Name)
	require.True(t, ri.Alive)
	require.NotNil(t, ri.SvixHealth)
	require.Equal(t, int64(3), ri.SvixHealth.Calls, "two creates and the one that failed")
	require.Equal(t, int64(2), ri.SvixHealth.OK)
	require.Equal(t, int64(1), ri.SvixHealth.Errors)
	require.Equal(t, "503", ri.SvixHealth.LastError)
	require.NotNil(t, ri.SvixHealth.LastErrorAt)
}
