package outboxtemporal_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/mock"
	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/mocks"

	"github.com/outboxrelay/outbox"
	"github.com/outboxrelay/outbox/outboxtemporal"
)

// signals records the signal-with-start calls a mock client received.
type signals struct {
	mu    sync.Mutex
	byID  map[string]int
	opts  []client.StartWorkflowOptions
	fail  error
	calls int
}

func (s *signals) count(id string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.byID[id]
}

// sigSetup returns a Signaler on a mock client that records every
// signal-with-start and checks its arguments.
func sigSetup(t *testing.T, cfg outboxtemporal.SignalerConfig) (*outboxtemporal.Signaler, *signals) {
	t.Helper()
	c := mocks.NewClient(t)
	rec := &signals{byID: map[string]int{}}
	c.On("SignalWithStartWorkflow", mock.Anything, mock.Anything, outboxtemporal.SignalName, nil,
		mock.Anything, outboxtemporal.WorkflowName, mock.Anything).
		Return(func(_ context.Context, id, _ string, _ any, o client.StartWorkflowOptions, _ any, args ...any) (client.WorkflowRun, error) {
			rec.mu.Lock()
			defer rec.mu.Unlock()
			rec.calls++
			if rec.fail != nil {
				return nil, rec.fail
			}
			in := args[0].(outboxtemporal.RelayInput)
			if id != o.ID || id != outboxtemporal.WorkflowID(cfg.WorkflowIDPrefix, in.OrganizationID) {
				return nil, fmt.Errorf("workflow id %q, options id %q, input %+v", id, o.ID, in)
			}
			rec.byID[id]++
			rec.opts = append(rec.opts, o)
			return nil, nil
		}).Maybe()
	cfg.Client = c
	s, err := outboxtemporal.NewSignaler(cfg)
	require.NoError(t, err)
	t.Cleanup(func() { _ = s.Close() })
	return s, rec
}

func TestSignalerSignalsWithStart(t *testing.T) {
	t.Parallel()
	s, rec := sigSetup(t, outboxtemporal.SignalerConfig{})
	require.NoError(t, s.SignalRelay(context.Background(), "acme"))
	require.Equal(t, 1, rec.count("outbox-relay-acme"))
	o := rec.opts[0]
	require.Equal(t, outboxtemporal.DefaultTaskQueue, o.TaskQueue)
	require.Zero(t, o.WorkflowIDConflictPolicy, "left at the default: FAIL is rejected for signal-with-start")
	require.Zero(t, o.WorkflowIDReusePolicy, "a completed run is followed by a new one")
}

func TestSignalerNamesAreConfigurable(t *testing.T) {
	t.Parallel()
	s, rec := sigSetup(t, outboxtemporal.SignalerConfig{WorkflowIDPrefix: "tenant-relay/", TaskQueue: "webhooks"})
	require.NoError(t, s.SignalRelay(context.Background(), "acme"))
	require.Equal(t, 1, rec.count("tenant-relay/acme"))
	require.Equal(t, "webhooks", rec.opts[0].TaskQueue)
}

// On virtual time (a synctest bubble): the windows are the Signaler's
// timers, so no burst can outlast a window on a loaded machine.
func TestSignalerCoalescesBursts(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		window := 200 * time.Millisecond
		s, rec := sigSetup(t, outboxtemporal.SignalerConfig{CoalesceWindow: window})
		ctx := context.Background()
		for range 50 {
			require.NoError(t, s.SignalRelay(ctx, "hot"))
		}
		require.NoError(t, s.SignalRelay(ctx, "cold"))
		require.Equal(t, 1, rec.count("outbox-relay-hot"), "the first call signals at once, the rest wait for the window's end")
		require.Equal(t, 1, rec.count("outbox-relay-cold"), "organizations do not share a window")

		time.Sleep(window)
		synctest.Wait()
		require.Equal(t, 2, rec.count("outbox-relay-hot"), "one trailing signal follows the burst, so its last commit is not left unsignalled")
		time.Sleep(3 * window)
		synctest.Wait()
		require.Equal(t, 2, rec.count("outbox-relay-hot"), "a burst of 50 is two signals")
		require.Equal(t, 1, rec.count("outbox-relay-cold"), "no trailing signal without a second call")

		require.NoError(t, s.SignalRelay(ctx, "hot"))
		require.Equal(t, 3, rec.count("outbox-relay-hot"), "after a quiet window the next call signals at once")
	})
}

func TestSignalerSustainedTrafficIsBoundedPerWindow(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		window := 50 * time.Millisecond
		s, rec := sigSetup(t, outboxtemporal.SignalerConfig{CoalesceWindow: window})
		calls := 0
		for range 1000 { // a call every millisecond for 20 windows
			require.NoError(t, s.SignalRelay(context.Background(), "hot"))
			calls++
			time.Sleep(time.Millisecond)
		}
		time.Sleep(2 * window)
		synctest.Wait()
		sent := rec.count("outbox-relay-hot")
		require.LessOrEqual(t, sent, 20+2, "%d calls in 20 windows sent %d signals", calls, sent)
		require.GreaterOrEqual(t, sent, 20, "a steady stream wakes the workflow once per window")
	})
}

func TestSignalerWithoutCoalescing(t *testing.T) {
	t.Parallel()
	s, rec := sigSetup(t, outboxtemporal.SignalerConfig{CoalesceWindow: -1})
	for range 5 {
		require.NoError(t, s.SignalRelay(context.Background(), "acme"))
	}
	require.Equal(t, 5, rec.count("outbox-relay-acme"))
}

func TestSignalerBatch(t *testing.T) {
	t.Parallel()
	s, rec := sigSetup(t, outboxtemporal.SignalerConfig{Parallelism: 4})
	var orgs []string
	for i := range 40 {
		orgs = append(orgs, fmt.Sprintf("org-%d", i))
	}
	var b outbox.BatchSignaler = s
	require.NoError(t, b.SignalRelays(context.Background(), orgs))
	for _, org := range orgs {
		require.Equal(t, 1, rec.count("outbox-relay-"+org), org)
	}
}

func TestSignalerErrors(t *testing.T) {
	t.Parallel()
	s, rec := sigSetup(t, outboxtemporal.SignalerConfig{})
	err := s.SignalRelay(context.Background(), "app_123")
	require.ErrorIs(t, err, outbox.ErrInvalidOrganizationID)
	require.Zero(t, rec.calls, "a bad organization id sends nothing")

	unavailable := errors.New("connection refused")
	rec.mu.Lock()
	rec.fail = unavailable
	rec.mu.Unlock()
	err = s.SignalRelay(context.Background(), "acme")
	require.ErrorIs(t, err, unavailable)
	require.ErrorContains(t, err, "outbox-relay-acme")

	err = s.SignalRelays(context.Background(), []string{"a", "b"})
	require.ErrorIs(t, err, unavailable)
	require.ErrorContains(t, err, "outbox-relay-a")
	require.ErrorContains(t, err, "outbox-relay-b")
}

func TestSignalerCloseSendsWhatIsOwed(t *testing.T) {
	t.Parallel()
	s, rec := sigSetup(t, outboxtemporal.SignalerConfig{CoalesceWindow: time.Hour})
	ctx := context.Background()
	require.NoError(t, s.SignalRelay(ctx, "owed"))
	require.NoError(t, s.SignalRelay(ctx, "owed"))
	require.NoError(t, s.SignalRelay(ctx, "settled"))
	require.Equal(t, 1, rec.count("outbox-relay-owed"))

	require.NoError(t, s.Close())
	require.Equal(t, 2, rec.count("outbox-relay-owed"), "Close sends the signal the window held")
	require.Equal(t, 1, rec.count("outbox-relay-settled"))
	require.ErrorIs(t, s.SignalRelay(ctx, "owed"), outboxtemporal.ErrSignalerClosed)
	require.NoError(t, s.Close(), "a second Close is a no-op")
}

func TestNewSignalerRejectsBadConfig(t *testing.T) {
	t.Parallel()
	_, err := outboxtemporal.NewSignaler(outboxtemporal.SignalerConfig{Parallelism: -2})
	require.ErrorIs(t, err, outboxtemporal.ErrInvalidConfig)
	var cfgErr *outboxtemporal.ConfigError
	require.ErrorAs(t, err, &cfgErr)
	require.Equal(t, "Client", cfgErr.Field)
	require.ErrorContains(t, err, "Parallelism: must be at least 1, got -2")
}
