package relay

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// The backoff before the retry after attempt n is full jitter over
// RetryBaseDelay·2^(n-1), capped at RetryMaxDelay: never zero, never above
// the ceiling, and spread over it.
func TestBackoff(t *testing.T) {
	t.Parallel()
	r := &Relay{cfg: Config{RetryBaseDelay: time.Second, RetryMaxDelay: 10 * time.Minute}}
	tests := []struct {
		attempt int
		ceiling time.Duration
	}{
		{0, 10 * time.Minute}, // no attempt counted (cannot happen): the cap
		{1, time.Second},
		{2, 2 * time.Second},
		{3, 4 * time.Second},
		{10, 512 * time.Second},
		{11, 10 * time.Minute}, // 1024 s is over the cap
		{39, 10 * time.Minute},
		{40, 10 * time.Minute}, // the shift would overflow: the cap
		{1000, 10 * time.Minute},
	}
	for _, tt := range tests {
		var lo, hi time.Duration = tt.ceiling, 0
		for range 2000 {
			d := r.backoff(tt.attempt)
			require.Positive(t, d, "attempt %d", tt.attempt)
			require.LessOrEqual(t, d, tt.ceiling, "attempt %d", tt.attempt)
			lo, hi = min(lo, d), max(hi, d)
		}
		// Full jitter: 2000 draws cover most of [0, ceiling].
		require.Less(t, lo, tt.ceiling/10, "attempt %d: jitter reaches near zero", tt.attempt)
		require.Greater(t, hi, tt.ceiling*9/10, "attempt %d: jitter reaches near the ceiling", tt.attempt)
	}
}
