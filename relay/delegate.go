package relay

import (
	"context"

	"github.com/outboxrelay/outbox"
)

// handOffBatch bounds the organizations one call to Config.Delegate takes.
const handOffBatch = 1000

// handOff passes queued organizations to Config.Delegate until ctx ends,
// instead of working their lanes. An organization whose hand-off failed is
// found again by the sweep: its lane when its due time comes, its new
// events by the full sweep.
func (r *Relay) handOff(ctx context.Context) {
	for {
		orgs := r.takeForHandOff(handOffBatch)
		if len(orgs) == 0 {
			select {
			case <-ctx.Done():
				return
			case <-r.wake:
			}
			continue
		}
		if err := delegate(ctx, r.cfg.Delegate, orgs); err != nil {
			r.stats.handOffFailures.Add(1)
			if ctx.Err() == nil {
				r.log.WarnContext(ctx, "relay: hand-off to the delegate failed; the sweep finds these organizations again",
					"organizations", len(orgs), "error", err)
			}
			continue
		}
		r.stats.handedOff.Add(uint64(len(orgs)))
	}
}

// takeForHandOff pops up to n queued organizations.
func (r *Relay) takeForHandOff(n int) []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.popQueued(min(n, len(r.queue)))
}

// delegate signals orgs through d: in one call when d takes batches.
func delegate(ctx context.Context, d outbox.Signaler, orgs []string) error {
	if b, ok := d.(outbox.BatchSignaler); ok {
		return b.SignalRelays(ctx, orgs)
	}
	for _, org := range orgs {
		if err := d.SignalRelay(ctx, org); err != nil {
			// The rest are not tried: a signaler that fails one usually
			// fails all (and each failure may take a timeout), and the
			// sweep brings them back.
			return err
		}
	}
	return nil
}
