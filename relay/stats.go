package relay

import "sync/atomic"

// Stats counts what a Relay did since it was created. Each field only
// grows; read them with Relay.Stats and export them to your metrics system
// as counters.
type Stats struct {
	// Delivered events were created in Svix (or confirmed there after 409).
	Delivered uint64
	// Skipped events belonged to organizations the Resolver said have no
	// webhooks.
	Skipped uint64
	// Retried counts transient failures scheduled for another attempt.
	Retried uint64
	// QuickRetries counts calls repeated within a turn after a fast
	// transient failure (see Config.QuickRetries).
	QuickRetries uint64
	// DeadLettered events were refused for good or ran out of attempts.
	DeadLettered uint64
	// ConflictsConfirmed counts 409s on eventId resolved by finding the
	// message an earlier attempt created.
	ConflictsConfirmed uint64
	// FoundBeforeCreate counts old events (appended over 6 hours before)
	// that a lookup by eventId found already created, so no create was sent.
	FoundBeforeCreate uint64
	// RateLimited counts lane pauses after Svix answered 429.
	RateLimited uint64
	// AuthFailures counts delivery pauses after Svix answered 401 or 403.
	AuthFailures uint64
	// Turns counts lane turns that held the lease, not counting a lane
	// claimed ahead and given back unsent after waiting for a turn slot.
	Turns uint64
	// Claims counts claim round trips, each for up to 64 organizations.
	Claims uint64
	// Pages counts pages opened (see Config.DisablePages): claim rounds whose
	// organizations with a single pending event were taken without lanes.
	Pages uint64
	// HandedOff counts organizations passed to Config.Delegate.
	HandedOff uint64
	// HandOffFailures counts calls to Config.Delegate that failed.
	HandOffFailures uint64
}

type stats struct {
	delivered, skipped, retried, deadLettered atomic.Uint64
	conflictsConfirmed, rateLimited           atomic.Uint64
	foundBeforeCreate, quickRetries           atomic.Uint64
	authFailures, turns, claims, pages        atomic.Uint64
	handedOff, handOffFailures                atomic.Uint64
}

func (s *stats) add(c counts) {
	s.delivered.Add(uint64(c.Delivered))
	s.skipped.Add(uint64(c.Skipped))
	s.retried.Add(uint64(c.Retried))
	s.deadLettered.Add(uint64(c.DeadLettered))
	s.turns.Add(1)
}

// Stats returns a snapshot of the counters.
func (r *Relay) Stats() Stats {
	s := &r.stats
	return Stats{
		Delivered: s.delivered.Load(), Skipped: s.skipped.Load(), Retried: s.retried.Load(), QuickRetries: s.quickRetries.Load(),
		DeadLettered: s.deadLettered.Load(), ConflictsConfirmed: s.conflictsConfirmed.Load(), FoundBeforeCreate: s.foundBeforeCreate.Load(),
		RateLimited: s.rateLimited.Load(), AuthFailures: s.authFailures.Load(), Turns: s.turns.Load(),
		Claims: s.claims.Load(), Pages: s.pages.Load(), HandedOff: s.handedOff.Load(), HandOffFailures: s.handOffFailures.Load(),
	}
}
