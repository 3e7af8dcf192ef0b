package relay

import (
	"testing"

	"github.com/stretchr/testify/require"
)

// The health signal tells isolated failures (quick retries worth it) from
// Svix being down (straight to backoff) by the share of failures among the
// last healthWindow calls.
func TestHealth(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		calls func(i int) bool // failed?
		n     int
		flaky bool
	}{
		{"no calls yet", nil, 0, true},
		{"all fine", func(int) bool { return false }, 100, true},
		{"one in twenty fails", func(i int) bool { return i%20 == 0 }, 200, true},
		{"one in four fails", func(i int) bool { return i%4 == 0 }, 64, true},
		{"one in three fails", func(i int) bool { return i%3 == 0 }, 64, false},
		{"an outage", func(int) bool { return true }, 10, false},
		{"too few calls to tell", func(int) bool { return true }, healthMinCalls - 1, true},
		{"an outage after a good run: counted in the window only", func(i int) bool { return i >= 1000-20 }, 1000, false},
		{"recovered: the outage left the window", func(i int) bool { return i < 100 }, 100 + healthWindow, true},
	}
	for _, tt := range tests {
		var h health
		for i := range tt.n {
			h.record(tt.calls(i))
		}
		require.Equal(t, tt.flaky, h.flaky(), tt.name)
	}
}
