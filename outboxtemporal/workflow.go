package outboxtemporal

import (
	"time"

	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/outboxrelay/outbox"
)

// relayWorkflow is the relay workflow, with the worker's Options.
//
// Its commands are part of the contract with running workflows: a change
// to what it schedules, or in which order, must be guarded with
// workflow.GetVersion (change ids named "outbox-..." and listed here), and
// the replay tests over the histories in testdata fail on a change that is
// not. Changes so far:
//
//   - changeLocalDrain ("outbox-local-drain", version 1): the run drains
//     with local activities (Options.LocalDrain).
//   - changeLinger ("outbox-linger", version 1): the run, once idle, waits
//     for a signal before it completes (Options.Linger).
type relayWorkflow struct{ opts Options }

const (
	// changeLocalDrain is the change id whose version 1 marks a run that
	// drains with local activities.
	changeLocalDrain = "outbox-local-drain"
	// changeLinger is the change id whose version 1 marks a run that
	// lingers when idle.
	changeLinger = "outbox-linger"
)

// run drains the organization's lane until it is empty and no signal is
// pending, then completes; the next signal-with-start begins a new run.
// Between drains it sleeps until the lane's next turn (a retry's backoff, a
// 429 pause) or a signal, whichever comes first. A run that lingers
// (Options.Linger) waits, once idle, for a signal to drain again, and
// completes only when none comes within the linger.
func (w *relayWorkflow) run(ctx workflow.Context, in RelayInput) error {
	if err := outbox.ValidateOrganizationID(in.OrganizationID); err != nil {
		return temporal.NewNonRetryableApplicationError(err.Error(), ErrorTypeInvalidInput, err)
	}
	local := w.drainsLocally(ctx)
	ctx = workflow.WithActivityOptions(ctx, w.opts.activityOptions())
	ctx = workflow.WithLocalActivityOptions(ctx, w.opts.localActivityOptions())
	wake := workflow.GetSignalChannel(ctx, SignalName)
	drain := DrainInput{OrganizationID: in.OrganizationID, BudgetMillis: w.opts.DrainBudget.Milliseconds()}
	var lingers *bool // decided when the run is first idle
	for cycle := 1; ; cycle++ {
		var res DrainResult
		if err := executeDrain(ctx, local, drain).Get(ctx, &res); err != nil {
			return err // not retryable, or the workflow was cancelled
		}
		signalled := receiveAll(wake) > 0
		if res.Remaining == 0 && !signalled {
			if lingers == nil {
				l := w.lingers(ctx)
				lingers = &l
			}
			woken, err := w.linger(ctx, wake, *lingers)
			if err != nil || !woken {
				return err // idle; or cancelled while it lingered
			}
			// A signal ended the linger: drain at once, as a new run
			// would have.
			if w.continueAsNew(ctx, cycle) {
				return w.newRun(ctx, wake, in)
			}
			continue
		}
		if w.continueAsNew(ctx, cycle) {
			return w.newRun(ctx, wake, in)
		}
		w.waitForTurn(ctx, wake, res, signalled)
		if workflow.GetInfo(ctx).GetContinueAsNewSuggested() {
			return w.newRun(ctx, wake, in)
		}
	}
}

// drainsLocally decides, once per run, whether this run drains with local
// activities, and keeps the decision in the history: a run that does records
// version 1 of changeLocalDrain, and its replay, on any worker, finds that
// marker and drains locally again; a run that does not records nothing, and
// its replay finds no marker (DefaultVersion), as in every history from
// before the change. So the default costs no history event, and a worker
// whose Options.LocalDrain changed still replays the runs begun before.
//
// A worker without LocalDrain looks for the marker only while it replays:
// GetVersion records one when it runs for the first time, and that run
// must record none. Replaying, GetVersion only reads the history.
func (w *relayWorkflow) drainsLocally(ctx workflow.Context) bool {
	if !w.opts.LocalDrain && !workflow.IsReplaying(ctx) {
		return false
	}
	return workflow.GetVersion(ctx, changeLocalDrain, workflow.DefaultVersion, 1) == 1
}

// lingers decides, once per run and when it is first idle, whether the run
// waits for a signal before it completes, and keeps the decision in the
// history as drainsLocally does: a run that lingers records version 1 of
// changeLinger, so its replay on any worker lingers again; one that does
// not records nothing.
func (w *relayWorkflow) lingers(ctx workflow.Context) bool {
	if w.opts.Linger == 0 && !workflow.IsReplaying(ctx) {
		return false
	}
	return workflow.GetVersion(ctx, changeLinger, workflow.DefaultVersion, 1) == 1
}

// linger waits, in a run that lingers, up to the linger for a signal, and
// reports whether one came (a signal that came in the task where the timer
// fired counts: the run ends only with none pending). Its error is the
// context's when the run was cancelled while it lingered.
func (w *relayWorkflow) linger(ctx workflow.Context, wake workflow.ReceiveChannel, lingers bool) (bool, error) {
	if !lingers {
		return false, nil
	}
	woken := sleepOrSignal(ctx, wake, w.opts.lingerFor()) || receiveAll(wake) > 0
	if err := ctx.Err(); err != nil {
		return false, err
	}
	return woken, nil
}

// executeDrain schedules one drain: an activity, or a local activity run by
// this worker.
func executeDrain(ctx workflow.Context, local bool, in DrainInput) workflow.Future {
	if local {
		return workflow.ExecuteLocalActivity(ctx, ActivityName, in)
	}
	return workflow.ExecuteActivity(ctx, ActivityName, in)
}

// continueAsNew reports whether the run has done enough cycles, or has a
// history long enough for the server to suggest a new run.
func (w *relayWorkflow) continueAsNew(ctx workflow.Context, cycle int) bool {
	return cycle >= w.opts.CyclesPerRun || workflow.GetInfo(ctx).GetContinueAsNewSuggested()
}

// newRun continues as new. The signals still buffered are dropped: the new
// run begins with a drain, which covers what they asked for.
func (w *relayWorkflow) newRun(ctx workflow.Context, wake workflow.ReceiveChannel, in RelayInput) error {
	receiveAll(wake)
	return workflow.NewContinueAsNewError(ctx, WorkflowName, in)
}

// waitForTurn sleeps before the next drain: until the lane's next turn when
// events remain, not at all when a signal asked for a drain, and never
// less than NoProgressDelay after a drain that did nothing. A signal during
// the sleep ends it (at the earliest NoProgressDelay after such a drain),
// unless the lane is held for a time (a 429 pause, another holder): then the
// signals are taken in and the sleep goes on.
func (w *relayWorkflow) waitForTurn(ctx workflow.Context, wake workflow.ReceiveChannel, res DrainResult, signalled bool) {
	now := workflow.Now(ctx)
	earliest := now
	if !res.progressed() {
		earliest = now.Add(w.opts.NoProgressDelay)
	}
	until := earliest
	if res.Remaining > 0 && (!signalled || res.held()) && res.NextTurnAt.After(until) {
		until = res.NextTurnAt
	}
	for {
		d := until.Sub(workflow.Now(ctx))
		if d <= 0 {
			return
		}
		if !sleepOrSignal(ctx, wake, d) {
			return // the timer fired
		}
		if workflow.GetInfo(ctx).GetContinueAsNewSuggested() {
			return
		}
		if !res.held() {
			until = earliest
		}
	}
}

// sleepOrSignal sleeps for d or until a signal arrives, and reports whether
// a signal ended it (taking in every signal pending).
func sleepOrSignal(ctx workflow.Context, wake workflow.ReceiveChannel, d time.Duration) bool {
	timerCtx, cancel := workflow.WithCancel(ctx)
	defer cancel()
	timer := workflow.NewTimer(timerCtx, d)
	signalled := false
	sel := workflow.NewSelector(ctx)
	sel.AddFuture(timer, func(workflow.Future) {})
	sel.AddReceive(wake, func(c workflow.ReceiveChannel, _ bool) {
		c.Receive(ctx, nil)
		signalled = true
	})
	sel.Select(ctx)
	if signalled {
		receiveAll(wake)
	}
	return signalled
}

// receiveAll takes in every signal pending, without blocking, and returns
// how many there were.
func receiveAll(wake workflow.ReceiveChannel) int {
	n := 0
	for wake.ReceiveAsync(nil) {
		n++
	}
	return n
}
