package outboxtemporal_test

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/converter"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/testsuite"

	"github.com/outboxrelay/outbox/outboxtemporal"
	"github.com/outboxrelay/outbox/relay"
)

// drainKinds counts the drains scheduled as activities and as local
// activities in env.
type drainKinds struct{ activities, locals atomic.Int32 }

func countDrainKinds(env *testsuite.TestWorkflowEnvironment) *drainKinds {
	k := &drainKinds{}
	env.SetOnActivityStartedListener(func(info *activity.Info, _ context.Context, _ converter.EncodedValues) {
		if info.ActivityType.Name == outboxtemporal.ActivityName {
			k.activities.Add(1)
		}
	})
	env.SetOnLocalActivityStartedListener(func(info *activity.Info, _ context.Context, _ []any) {
		if info.ActivityType.Name == outboxtemporal.ActivityName {
			k.locals.Add(1)
		}
	})
	return k
}

// A run drains with local activities exactly when the worker's Options say
// so, and behaves the same either way: drain after drain while work is
// due, a sleep until the next turn, the retry policy for a failed drain,
// no retry of input no retry can fix.
func TestWorkflowDrainsLocallyWhenAsked(t *testing.T) {
	t.Parallel()
	unreachable := errors.New("dial tcp: connection refused")
	for _, local := range []bool{false, true} {
		for _, tc := range []struct {
			name  string
			steps []step
			// check is run on the drains' times once the run has ended.
			check func(t *testing.T, env *testsuite.TestWorkflowEnvironment, calls []time.Duration)
		}{
			{
				name:  "drains until empty",
				steps: []step{{res: relay.DrainResult{Delivered: 100, Remaining: 40}}, {res: relay.DrainResult{Delivered: 40}}},
				check: func(t *testing.T, env *testsuite.TestWorkflowEnvironment, calls []time.Duration) {
					require.NoError(t, env.GetWorkflowError())
					require.Equal(t, []time.Duration{0, 0}, calls)
				},
			},
			{
				name:  "sleeps until the next turn",
				steps: []step{{res: relay.DrainResult{Retried: 1, Remaining: 5}, next: 10 * time.Minute}, {res: relay.DrainResult{Delivered: 5}}},
				check: func(t *testing.T, env *testsuite.TestWorkflowEnvironment, calls []time.Duration) {
					require.NoError(t, env.GetWorkflowError())
					require.Len(t, calls, 2)
					require.GreaterOrEqual(t, calls[1], 10*time.Minute)
				},
			},
			{
				name:  "retries a failed drain",
				steps: []step{{err: unreachable}, {err: unreachable}, {res: delivered}},
				check: func(t *testing.T, env *testsuite.TestWorkflowEnvironment, calls []time.Duration) {
					require.NoError(t, env.GetWorkflowError(), "the retry policy waits for the database")
					require.Len(t, calls, 3)
					require.GreaterOrEqual(t, calls[2], 3*time.Second, "1 s, then 2 s of backoff")
				},
			},
			{
				// The database is out of reach for three minutes: the
				// retries go on as long as it takes (the SDK would end a
				// local activity's retries at its StartToCloseTimeout, 70
				// s, unless told otherwise).
				name: "retries through a long outage",
				steps: []step{{err: unreachable}, {err: unreachable}, {err: unreachable}, {err: unreachable},
					{err: unreachable}, {err: unreachable}, {err: unreachable}, {err: unreachable}, {res: delivered}},
				check: func(t *testing.T, env *testsuite.TestWorkflowEnvironment, calls []time.Duration) {
					require.NoError(t, env.GetWorkflowError(), "the run outlives the outage")
					require.Len(t, calls, 9)
					require.GreaterOrEqual(t, calls[8], 3*time.Minute, "1, 2, 4 ... 32 s, then 1 min, 1 min of backoff")
				},
			},
			{
				name:  "does not retry bad input",
				steps: []step{{err: relay.ErrInvalidBudget}},
				check: func(t *testing.T, env *testsuite.TestWorkflowEnvironment, calls []time.Duration) {
					var appErr *temporal.ApplicationError
					require.ErrorAs(t, env.GetWorkflowError(), &appErr)
					require.Equal(t, outboxtemporal.ErrorTypeInvalidInput, appErr.Type())
					require.Len(t, calls, 1, "not retried")
				},
			},
		} {
			name := "activity/" + tc.name
			if local {
				name = "local/" + tc.name
			}
			t.Run(name, func(t *testing.T) {
				t.Parallel()
				env, d := wfSetup(t, outboxtemporal.Options{LocalDrain: local}, tc.steps...)
				kinds := countDrainKinds(env)
				run(env, "org-local")
				require.True(t, env.IsWorkflowCompleted())
				calls := d.callTimes()
				tc.check(t, env, calls)
				if local {
					require.EqualValues(t, len(calls), kinds.locals.Load(), "every drain a local activity")
					require.Zero(t, kinds.activities.Load())
				} else {
					require.EqualValues(t, len(calls), kinds.activities.Load(), "every drain an activity")
					require.Zero(t, kinds.locals.Load())
				}
			})
		}
	}
}
