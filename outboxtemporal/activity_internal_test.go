package outboxtemporal

import (
	"context"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"
	"github.com/stretchr/testify/require"
)

// The drain heartbeats every third of its heartbeat timeout on its clock,
// and not once it is stopped.
func TestDrainHeartbeatsEveryThirdOfItsTimeout(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	clock := clockwork.NewFakeClock()
	beats := make(chan struct{}, 10)
	stop := heartbeat(ctx, clock, 900*time.Millisecond, func() { beats <- struct{}{} })
	require.NoError(t, clock.BlockUntilContext(ctx, 1), "the ticker waits on the clock")

	clock.Advance(299 * time.Millisecond)
	require.Empty(t, beats, "no heartbeat before a third of the timeout")
	for i := range 3 {
		clock.Advance(300 * time.Millisecond)
		<-beats // waits for the heartbeat, not for a time
		require.Empty(t, beats, "one heartbeat per period (period %d)", i)
	}
	stop()
	clock.Advance(time.Hour)
	require.Empty(t, beats, "no heartbeat once stopped")
}

// Without a heartbeat timeout the drain does not heartbeat, and starts no
// ticker.
func TestDrainWithoutHeartbeatTimeoutDoesNotHeartbeat(t *testing.T) {
	t.Parallel()
	clock := clockwork.NewFakeClock()
	stop := heartbeat(context.Background(), clock, 0, func() { t.Error("heartbeat without a timeout") })
	clock.Advance(time.Hour)
	stop()
}
