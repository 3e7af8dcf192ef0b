package outboxtemporal_test

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/log"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/testsuite"
	"go.temporal.io/sdk/workflow"

	"github.com/outboxrelay/outbox/outboxtemporal"
	"github.com/outboxrelay/outbox/relay"
)

// step is one scripted drain: its result, with NextTurnAt given as a
// distance from the workflow clock at the call, or its error.
type step struct {
	res  relay.DrainResult
	next time.Duration
	err  error
	// during runs while the drain works (it may signal the workflow).
	during func()
}

// scripted is a Drainer that plays steps in turn (the last one forever)
// and records when, on the workflow clock, each call came.
type scripted struct {
	env   *testsuite.TestWorkflowEnvironment
	mu    sync.Mutex
	steps []step
	calls []time.Time
	orgs  []string
}

func (s *scripted) DrainOrganization(_ context.Context, org string, budget time.Duration) (relay.DrainResult, error) {
	s.mu.Lock()
	now := s.env.Now()
	s.calls = append(s.calls, now)
	s.orgs = append(s.orgs, org)
	st := s.steps[min(len(s.calls), len(s.steps))-1]
	s.mu.Unlock()
	if budget != outboxtemporal.DefaultDrainBudget {
		return relay.DrainResult{}, errors.New("unexpected budget " + budget.String())
	}
	if st.during != nil {
		st.during()
	}
	if st.err != nil {
		return relay.DrainResult{}, st.err
	}
	res := st.res
	if res.Remaining > 0 {
		res.NextTurnAt = now.Add(st.next)
	}
	return res, nil
}

func (s *scripted) callTimes() []time.Duration {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]time.Duration, len(s.calls))
	for i, c := range s.calls {
		out[i] = c.Sub(s.calls[0])
	}
	return out
}

// newTestEnv returns a test workflow environment logging warnings and
// errors to the test's log.
func newTestEnv(t *testing.T) *testsuite.TestWorkflowEnvironment {
	var suite testsuite.WorkflowTestSuite
	suite.SetLogger(log.NewStructuredLogger(slog.New(slog.NewTextHandler(tWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn}))))
	return suite.NewTestWorkflowEnvironment()
}

// tWriter writes to a test's log.
type tWriter struct{ t *testing.T }

func (w tWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSuffix(string(p), "\n"))
	return len(p), nil
}

// wfSetup returns a test workflow environment with the relay workflow and a
// scripted drain activity registered.
func wfSetup(t *testing.T, opts outboxtemporal.Options, steps ...step) (*testsuite.TestWorkflowEnvironment, *scripted) {
	t.Helper()
	env := newTestEnv(t)
	d := &scripted{env: env, steps: steps}
	require.NoError(t, outboxtemporal.Register(env, d, opts))
	return env, d
}

func run(env *testsuite.TestWorkflowEnvironment, org string) {
	env.ExecuteWorkflow(outboxtemporal.WorkflowName, outboxtemporal.RelayInput{OrganizationID: org})
}

var (
	delivered = relay.DrainResult{Delivered: 3}
	empty     = relay.DrainResult{}
)

func TestWorkflowDrainsUntilEmptyThenCompletes(t *testing.T) {
	t.Parallel()
	env, d := wfSetup(t, outboxtemporal.Options{},
		step{res: relay.DrainResult{Delivered: 100, Remaining: 40}}, // cut by its budget: due now
		step{res: relay.DrainResult{Delivered: 40}},
	)
	run(env, "org-a")
	require.True(t, env.IsWorkflowCompleted())
	require.NoError(t, env.GetWorkflowError(), "an empty lane with no signal pending completes the run")
	require.Equal(t, []time.Duration{0, 0}, d.callTimes(), "work left due now is drained at once")
	require.Equal(t, []string{"org-a", "org-a"}, d.orgs)
}

func TestWorkflowWithNothingToDoCompletesAfterOneDrain(t *testing.T) {
	t.Parallel()
	env, d := wfSetup(t, outboxtemporal.Options{}, step{res: empty})
	run(env, "org-empty") // say, a signal for a commit that failed
	require.True(t, env.IsWorkflowCompleted())
	require.NoError(t, env.GetWorkflowError())
	require.Len(t, d.callTimes(), 1)
}

func TestWorkflowSleepsUntilTheNextTurn(t *testing.T) {
	t.Parallel()
	env, d := wfSetup(t, outboxtemporal.Options{},
		step{res: relay.DrainResult{Retried: 1, Remaining: 5}, next: 10 * time.Minute}, // head waits for its retry
		step{res: relay.DrainResult{Delivered: 5}},
	)
	run(env, "org-retry")
	require.NoError(t, env.GetWorkflowError())
	calls := d.callTimes()
	require.Len(t, calls, 2)
	require.GreaterOrEqual(t, calls[1], 10*time.Minute, "the second drain waits for the retry's due time")
	require.Less(t, calls[1], 10*time.Minute+time.Second)
}

func TestWorkflowWakesOnSignal(t *testing.T) {
	t.Parallel()
	env, d := wfSetup(t, outboxtemporal.Options{},
		step{res: relay.DrainResult{Retried: 1, Remaining: 1}, next: time.Hour},
		step{res: relay.DrainResult{Delivered: 1}},
	)
	env.RegisterDelayedCallback(func() { env.SignalWorkflow(outboxtemporal.SignalName, nil) }, 5*time.Minute)
	run(env, "org-wake")
	require.NoError(t, env.GetWorkflowError())
	calls := d.callTimes()
	require.Len(t, calls, 2)
	require.GreaterOrEqual(t, calls[1], 5*time.Minute)
	require.Less(t, calls[1], 6*time.Minute, "a signal ends the sleep long before the hour")
}

func TestWorkflowManySignalsMakeOneDrain(t *testing.T) {
	t.Parallel()
	env, d := wfSetup(t, outboxtemporal.Options{},
		step{res: relay.DrainResult{Retried: 1, Remaining: 1}, next: time.Hour},
		step{res: relay.DrainResult{Delivered: 1}},
	)
	env.RegisterDelayedCallback(func() {
		for range 200 {
			env.SignalWorkflow(outboxtemporal.SignalName, nil)
		}
	}, time.Minute)
	run(env, "org-burst")
	require.NoError(t, env.GetWorkflowError())
	// The first signal wakes a drain; those that arrive while it runs may
	// be for commits it did not see, and make one more.
	drains := len(d.callTimes())
	require.GreaterOrEqual(t, drains, 2)
	require.LessOrEqual(t, drains, 3, "200 signals at once are one or two wake-ups, not 200")
}

func TestWorkflowSignalDuringTheLastDrainRunsAnother(t *testing.T) {
	t.Parallel()
	var env *testsuite.TestWorkflowEnvironment
	env, d := wfSetup(t, outboxtemporal.Options{},
		// A commit lands while the drain finds the lane empty: its signal
		// must not be lost with the run.
		step{res: empty, during: func() { env.SignalWorkflow(outboxtemporal.SignalName, nil) }},
		step{res: delivered},
	)
	run(env, "org-late")
	require.NoError(t, env.GetWorkflowError())
	require.Len(t, d.callTimes(), 2)
}

func TestWorkflowHeldLaneSleepsThroughSignals(t *testing.T) {
	t.Parallel()
	env, d := wfSetup(t, outboxtemporal.Options{},
		step{res: relay.DrainResult{RateLimited: true, Remaining: 3}, next: 30 * time.Second}, // Retry-After: 30
		step{res: relay.DrainResult{Delivered: 3}},
	)
	for _, at := range []time.Duration{time.Second, 10 * time.Second, 20 * time.Second} {
		env.RegisterDelayedCallback(func() { env.SignalWorkflow(outboxtemporal.SignalName, nil) }, at)
	}
	run(env, "org-429")
	require.NoError(t, env.GetWorkflowError())
	calls := d.callTimes()
	require.Len(t, calls, 2, "signals during a 429 pause wake nothing")
	require.GreaterOrEqual(t, calls[1], 30*time.Second, "the pause Svix asked for is kept")
}

func TestWorkflowDoesNotSpinWithoutProgress(t *testing.T) {
	t.Parallel()
	env, d := wfSetup(t, outboxtemporal.Options{},
		step{res: relay.DrainResult{Remaining: 2}}, // due now, yet nothing could be done
		step{res: relay.DrainResult{Remaining: 2}},
		step{res: relay.DrainResult{Delivered: 2}},
	)
	run(env, "org-stuck")
	require.NoError(t, env.GetWorkflowError())
	calls := d.callTimes()
	require.Len(t, calls, 3)
	require.GreaterOrEqual(t, calls[1], outboxtemporal.DefaultNoProgressDelay)
	require.GreaterOrEqual(t, calls[2]-calls[1], outboxtemporal.DefaultNoProgressDelay)
}

func TestWorkflowRetriesAFailedDrain(t *testing.T) {
	t.Parallel()
	unreachable := errors.New("dial tcp: connection refused")
	env, d := wfSetup(t, outboxtemporal.Options{},
		step{err: unreachable}, step{err: unreachable}, step{res: delivered},
	)
	run(env, "org-db-down")
	require.NoError(t, env.GetWorkflowError(), "the retry policy waits for the database")
	calls := d.callTimes()
	require.Len(t, calls, 3)
	require.GreaterOrEqual(t, calls[2], 3*time.Second, "1 s, then 2 s of backoff")
}

func TestWorkflowFailsOnInputNoRetryCanFix(t *testing.T) {
	t.Parallel()
	env, d := wfSetup(t, outboxtemporal.Options{}, step{err: relay.ErrInvalidBudget})
	run(env, "org-bad")
	var appErr *temporal.ApplicationError
	require.ErrorAs(t, env.GetWorkflowError(), &appErr)
	require.Equal(t, outboxtemporal.ErrorTypeInvalidInput, appErr.Type())
	require.Len(t, d.callTimes(), 1, "not retried")

	env, d = wfSetup(t, outboxtemporal.Options{}, step{res: delivered})
	run(env, "app_not-an-org")
	require.ErrorAs(t, env.GetWorkflowError(), &appErr)
	require.Equal(t, outboxtemporal.ErrorTypeInvalidInput, appErr.Type())
	require.Empty(t, d.callTimes(), "a bad organization id is refused before any drain")
}

func TestWorkflowContinuesAsNew(t *testing.T) {
	t.Parallel()
	busy := step{res: relay.DrainResult{Delivered: 100, Remaining: 1000}}
	for _, tc := range []struct {
		name      string
		opts      outboxtemporal.Options
		suggested bool
		drains    int
	}{
		{name: "after CyclesPerRun", opts: outboxtemporal.Options{CyclesPerRun: 3}, drains: 3},
		{name: "when the server suggests it", suggested: true, drains: 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			env, d := wfSetup(t, tc.opts, busy)
			env.SetContinueAsNewSuggested(tc.suggested)
			run(env, "org-hot")
			var can *workflow.ContinueAsNewError
			require.ErrorAs(t, env.GetWorkflowError(), &can)
			require.Equal(t, outboxtemporal.WorkflowName, can.WorkflowType.Name)
			require.Len(t, d.callTimes(), tc.drains)
		})
	}
}

func TestRegisterRejectsBadOptions(t *testing.T) {
	t.Parallel()
	env := newTestEnv(t)
	err := outboxtemporal.Register(env, &scripted{}, outboxtemporal.Options{
		DrainBudget: time.Minute, ActivityStartToCloseTimeout: 30 * time.Second, CyclesPerRun: -1,
	})
	require.ErrorIs(t, err, outboxtemporal.ErrInvalidConfig)
	var cfgErr *outboxtemporal.ConfigError
	require.ErrorAs(t, err, &cfgErr)
	require.Equal(t, "ActivityStartToCloseTimeout", cfgErr.Field)
	require.ErrorContains(t, err, "CyclesPerRun: must be at least 1")

	err = outboxtemporal.Register(env, nil, outboxtemporal.Options{})
	require.ErrorIs(t, err, outboxtemporal.ErrInvalidConfig)
	require.ErrorContains(t, err, "Drainer")

	err = outboxtemporal.Register(newTestEnv(t), &scripted{}, outboxtemporal.Options{Linger: -time.Second})
	require.ErrorAs(t, err, &cfgErr)
	require.Equal(t, "Linger", cfgErr.Field)
	require.ErrorContains(t, err, "Linger: must not be negative")

	// Local drains run on the workflow's worker: one without the activity
	// would fail every run it starts.
	err = outboxtemporal.RegisterWorkflow(newTestEnv(t), outboxtemporal.Options{LocalDrain: true})
	require.ErrorIs(t, err, outboxtemporal.ErrInvalidConfig)
	require.ErrorAs(t, err, &cfgErr)
	require.Equal(t, "LocalDrain", cfgErr.Field)
}
