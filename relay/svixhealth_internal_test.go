package relay

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"
	"github.com/stretchr/testify/require"
)

func decodeHealth(t *testing.T, raw []byte) SvixHealth {
	t.Helper()
	var h SvixHealth
	require.NoError(t, json.Unmarshal(raw, &h))
	return h
}

// The report counts each class of answer over the last five minutes, and
// keeps the last failure's class after its minute has gone.
func TestSvixHealthCountsByClassOverFiveMinutes(t *testing.T) {
	t.Parallel()
	clock := clockwork.NewFakeClockAt(time.Date(2031, 3, 1, 10, 0, 30, 0, time.UTC))
	h := newSvixHealthRecorder(clock)
	require.Equal(t, SvixHealth{WindowSeconds: 300}, decodeHealth(t, h.report()), "a fresh relay reports zeros")

	for _, res := range []result{
		{outcome: outcomeDelivered}, {outcome: outcomeDelivered},
		{outcome: outcomeUnsent}, {outcome: outcomeSkipped}, // no call, or none of Svix's doing
		{outcome: outcomeRetry, status: 503},
		{outcome: outcomeDeadLetter, status: 422},
		{outcome: outcomeRateLimited, status: 429},
		{outcome: outcomeAuth, status: 401},
	} {
		h.record(res)
	}
	clock.Advance(2 * time.Minute)
	h.record(result{outcome: outcomeRetry, timedOut: true})
	at := clock.Now()

	got := decodeHealth(t, h.report())
	require.Equal(t, SvixHealth{WindowSeconds: 300, Calls: 7, OK: 2, Errors: 3, RateLimited: 1, Unauthorized: 1,
		LastError: "timeout", LastErrorAt: &at}, got)

	clock.Advance(4 * time.Minute) // the first minute's calls are past the window
	got = decodeHealth(t, h.report())
	require.Equal(t, int64(1), got.Calls)
	require.Equal(t, int64(1), got.Errors)
	require.Zero(t, got.OK)

	clock.Advance(10 * time.Minute)
	got = decodeHealth(t, h.report())
	require.Zero(t, got.Calls)
	require.Equal(t, "timeout", got.LastError, "the last failure is kept")
}

func TestFailureClass(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 0)
	defer cancel()
	<-ctx.Done()
	for _, tc := range []struct {
		res  result
		want string
	}{
		{result{status: 503}, "503"},
		{result{status: 429}, "429"},
		{transportFailure(context.Background(), ctx.Err()), "timeout"},
		{transportFailure(context.Background(), context.Canceled), "network"},
	} {
		require.Equal(t, tc.want, failureClass(tc.res))
	}
}
