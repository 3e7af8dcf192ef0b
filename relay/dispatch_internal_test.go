package relay

import (
	"context"
	"fmt"
	"testing"
	"testing/synctest"
	"time"

	"github.com/jonboulle/clockwork"
	"github.com/stretchr/testify/require"
)

// turnRelay is a Relay with an 8 s lease and one turn slot, enough for
// the waits of a lane claimed ahead.
func turnRelay() *Relay {
	return &Relay{cfg: Config{LeaseDuration: 8 * time.Second}, clock: clockwork.NewRealClock(), turnSlots: make(chan struct{}, 1)}
}

// A lane claimed ahead of the turn slots waits for one, and gives up when
// a quarter of its lease has gone by or the relay stops. In a synctest
// bubble the real clock's time is virtual.
func TestAwaitTurnSlot(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		// act runs while the only slot is taken and the lane waits for it.
		act      func(r *Relay, cancel context.CancelFunc)
		wantSlot bool
		waited   time.Duration
	}{
		{"a slot frees", func(r *Relay, _ context.CancelFunc) {
			time.Sleep(time.Second)
			<-r.turnSlots
		}, true, time.Second},
		{"a quarter of the lease goes by", func(*Relay, context.CancelFunc) {}, false, 2 * time.Second},
		{"the relay stops", func(_ *Relay, cancel context.CancelFunc) {
			time.Sleep(500 * time.Millisecond)
			cancel()
		}, false, 500 * time.Millisecond},
	}
	for _, tt := range tests {
		synctest.Test(t, func(t *testing.T) {
			r := turnRelay()
			r.turnSlots <- struct{}{} // every slot taken
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			start := time.Now()
			ln := &lane{org: "org", claimedAt: start}
			got := make(chan bool, 1)
			go func() { got <- r.awaitTurnSlot(ctx, ln) }()
			synctest.Wait()
			require.Empty(t, got, "%s: returned before anything happened", tt.name)

			tt.act(r, cancel)
			slot := <-got
			require.Equal(t, tt.wantSlot, slot, tt.name)
			require.Equal(t, tt.waited, time.Since(start), tt.name)
		})
	}
}

// A free slot is taken at once, even by a lane whose wait would already be
// over.
func TestAwaitTurnSlotTakesAFreeSlot(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		r := turnRelay()
		ln := &lane{org: "org", claimedAt: time.Now().Add(-time.Minute)}
		require.True(t, r.awaitTurnSlot(context.Background(), ln))
		require.Len(t, r.turnSlots, 1, "the slot is held")
	})
}

// A round of lanes waits for the round before it to be seated, and gives
// up, as its lanes would waiting for a slot, when a quarter of their lease
// has gone by.
func TestAwaitTurnForTheRoundBefore(t *testing.T) {
	t.Parallel()
	for _, seatedAfter := range []time.Duration{time.Second, 3 * time.Second} {
		synctest.Test(t, func(t *testing.T) {
			r := turnRelay()
			before := make(chan struct{})
			start := time.Now()
			go func() {
				time.Sleep(seatedAfter)
				close(before)
			}()
			inTime := r.awaitTurn(context.Background(), before, start)
			require.Equal(t, seatedAfter < 2*time.Second, inTime, "seated after %s", seatedAfter)
			require.Equal(t, min(seatedAfter, 2*time.Second), time.Since(start))
			<-before // the round before is seated in the end
		})
	}
}

// Claim rounds start small: a round claims at most as many organizations
// as the relay holds already (claimRoundMin at least), so that a relay
// with nothing in flight, just started on a backlog, sends after a small
// claim rather than one of claimRoundMax lanes of BatchSize events each.
// Page rounds too. The rounds' other bounds stay: Concurrency plus a
// quarter sending, lanesPerCall × Concurrency held.
func TestClaimRoundsStartSmall(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		pages bool
		want  []int
	}{
		{"lanes", false, []int{16, 16, 32, 16}},
		{"pages", true, []int{16, 16, 32, 64}},
	}
	for _, tt := range tests {
		r := &Relay{cfg: Config{Concurrency: 64}, clock: clockwork.NewRealClock(),
			queued: map[string]struct{}{}, working: map[string]*laneWork{}}
		if tt.pages {
			r.pageSlots = make(chan struct{}, 8)
		}
		for i := range 1000 {
			r.queued[fmt.Sprint(i)] = struct{}{}
			r.queue = append(r.queue, fmt.Sprint(i))
		}
		var sizes []int
		for range len(tt.want) {
			orgs, paged := r.takeQueued(claimRoundMax)
			require.Equal(t, tt.pages, paged, tt.name)
			sizes = append(sizes, len(orgs))
		}
		require.Equal(t, tt.want, sizes, tt.name)
	}
}
