package outboxtemporal_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/outboxrelay/outbox/outboxtemporal"
	"github.com/outboxrelay/outbox/relay"
)

// An idle run that lingers takes a signal that comes within Linger in the
// same run and drains at once; with no signal it completes a Linger after
// its last drain. Without Linger, the run completes as soon as it is idle.
func TestWorkflowLingersForTheNextSignal(t *testing.T) {
	t.Parallel()
	const signalAt = 30 * time.Second
	for _, tc := range []struct {
		name   string
		opts   outboxtemporal.Options
		first  relay.DrainResult
		drains []time.Duration // the drains' times
		ends   time.Duration   // when the run completes
	}{
		{name: "without Linger", opts: outboxtemporal.Options{}, first: delivered,
			drains: []time.Duration{0}, ends: 0},
		{name: "signal within Linger", opts: outboxtemporal.Options{Linger: time.Minute}, first: delivered,
			drains: []time.Duration{0, signalAt}, ends: signalAt + time.Minute},
		{name: "signal after Linger", opts: outboxtemporal.Options{Linger: 10 * time.Second}, first: delivered,
			drains: []time.Duration{0}, ends: 10 * time.Second},
		// A drain that found nothing (its signal's events were delivered
		// by the drain before) is no reason to wait NoProgressDelay after
		// the next signal: a new run would not.
		{name: "signal within Linger after a drain that found nothing", opts: outboxtemporal.Options{Linger: time.Minute}, first: empty,
			drains: []time.Duration{0, signalAt}, ends: signalAt + time.Minute},
		{name: "local drains", opts: outboxtemporal.Options{Linger: time.Minute, LocalDrain: true}, first: delivered,
			drains: []time.Duration{0, signalAt}, ends: signalAt + time.Minute},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			env, d := wfSetup(t, tc.opts, step{res: tc.first}, step{res: delivered})
			env.RegisterDelayedCallback(func() { env.SignalWorkflow(outboxtemporal.SignalName, nil) }, signalAt)
			start := env.Now()
			run(env, "org-linger")
			require.True(t, env.IsWorkflowCompleted())
			require.NoError(t, env.GetWorkflowError(), "an idle run completes")
			require.Equal(t, tc.drains, d.callTimes())
			ended := env.Now().Sub(start)
			require.GreaterOrEqual(t, ended, tc.ends, "the run waits Linger for a signal")
			require.Less(t, ended, tc.ends+time.Second)
		})
	}
}

// A lingering run still continues as new after CyclesPerRun drains, so its
// history stays short however many wake-ups it takes.
func TestWorkflowThatLingersContinuesAsNew(t *testing.T) {
	t.Parallel()
	env, d := wfSetup(t, outboxtemporal.Options{Linger: time.Minute, CyclesPerRun: 2}, step{res: delivered})
	for _, at := range []time.Duration{10 * time.Second, 20 * time.Second} {
		env.RegisterDelayedCallback(func() { env.SignalWorkflow(outboxtemporal.SignalName, nil) }, at)
	}
	start := env.Now()
	run(env, "org-lingers-long")
	var can *workflow.ContinueAsNewError
	require.ErrorAs(t, env.GetWorkflowError(), &can)
	require.Equal(t, []time.Duration{0, 10 * time.Second}, d.callTimes(),
		"the second signal ends the run's second cycle: the new run drains")
	require.Equal(t, 20*time.Second, env.Now().Sub(start), "the run lingered after its last cycle, until the signal")
}

// A run cancelled while it lingers ends cancelled, as it does when
// cancelled anywhere else, not completed.
func TestWorkflowCancelledWhileLingeringIsCancelled(t *testing.T) {
	t.Parallel()
	env, d := wfSetup(t, outboxtemporal.Options{Linger: time.Minute}, step{res: delivered})
	env.RegisterDelayedCallback(env.CancelWorkflow, 10*time.Second)
	run(env, "org-cancelled")
	require.True(t, temporal.IsCanceledError(env.GetWorkflowError()), "got %v", env.GetWorkflowError())
	require.Len(t, d.callTimes(), 1)
}
