package relay

import (
	"math/rand/v2"
	"time"
)

// backoff is the delay before the retry that follows attempt n: full
// jitter over an exponential ceiling, RetryBaseDelay·2^(n-1) capped at
// RetryMaxDelay.
func (r *Relay) backoff(attempt int) time.Duration {
	ceiling := r.cfg.RetryMaxDelay
	if attempt >= 1 && attempt < 40 {
		if d := r.cfg.RetryBaseDelay << (attempt - 1); d > 0 && d < ceiling {
			ceiling = d
		}
	}
	return time.Duration(rand.Int64N(int64(ceiling)) + 1)
}
