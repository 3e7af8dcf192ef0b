package relay

import (
	"context"
	"errors"
	"testing"
	"testing/synctest"
	"time"

	"github.com/jonboulle/clockwork"
	"github.com/stretchr/testify/require"
)

// In a synctest bubble the real clock's time is virtual.
func TestRetry(t *testing.T) {
	t.Parallel()
	failing := errors.New("down")
	tests := []struct {
		name      string
		failFirst int // fn fails this many times, then succeeds
		tries     int
		wantCalls int
		wantErr   error
		waited    time.Duration // virtual time: the waits between tries, never one after the last
	}{
		{"succeeds at once", 0, 4, 1, nil, 0},
		{"succeeds on the third try", 2, 4, 3, nil, 50*time.Millisecond + 200*time.Millisecond},
		{"gives up after the last try without waiting again", 10, 4, 4, failing, 50*time.Millisecond + 200*time.Millisecond + 800*time.Millisecond},
		{"one try", 10, 1, 1, failing, 0},
	}
	for _, tt := range tests {
		synctest.Test(t, func(t *testing.T) {
			calls := 0
			start := time.Now()
			err := retry(context.Background(), clockwork.NewRealClock(), tt.tries, 50*time.Millisecond, func(context.Context) error {
				calls++
				if calls <= tt.failFirst {
					return failing
				}
				return nil
			})
			require.ErrorIs(t, err, tt.wantErr, tt.name)
			if tt.wantErr == nil {
				require.NoError(t, err, tt.name)
			}
			require.Equal(t, tt.wantCalls, calls, tt.name)
			require.Equal(t, tt.waited, time.Since(start), tt.name)
		})
	}

	// A context that ends cuts the wait short.
	synctest.Test(t, func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
		defer cancel()
		start := time.Now()
		calls := 0
		err := retry(ctx, clockwork.NewRealClock(), 10, 50*time.Millisecond, func(context.Context) error { calls++; return failing })
		require.ErrorIs(t, err, failing)
		require.Equal(t, 2, calls, "tries at 0 and 50 ms; the 200 ms wait is cut at 100 ms")
		require.Equal(t, 100*time.Millisecond, time.Since(start))
	})
}
