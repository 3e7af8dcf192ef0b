package relay

import "github.com/jonboulle/clockwork"

// SetClock makes the relays built from cfg read the time from c and wait
// on it: a test moves a fake clock instead of sleeping. The database's
// now() is not moved.
func SetClock(cfg *Config, c clockwork.Clock) { cfg.clock = c }

// TestSignals are the moments of a relay's background loops a test can
// wait for.
type TestSignals = testSignals

// InitTestSignals arms r's test signals and returns them; call it before
// Run.
func InitTestSignals(r *Relay) *TestSignals {
	r.testSignals.Swept.Init()
	r.testSignals.Pruned.Init()
	r.testSignals.Beat.Init()
	r.testSignals.SlotGivenUp.Init()
	r.testSignals.Rechecking.Init()
	r.testSignals.PagePinged.Init()
	return &r.testSignals
}
