package outboxtemporal

import (
	"fmt"
	"time"

	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/outboxrelay/outbox/internal/config"
)

// The defaults Register applies to a zero Options field.
const (
	DefaultDrainBudget              = 10 * time.Second
	DefaultActivityHeartbeatTimeout = 10 * time.Second
	DefaultNoProgressDelay          = time.Second
	DefaultCyclesPerRun             = 500
	// DefaultActivityCloseMargin is what DefaultActivityStartToCloseTimeout
	// adds to DrainBudget: the calls still in flight when the budget ends
	// (the relay's SendTimeout), their settlement and the final count.
	DefaultActivityCloseMargin = time.Minute
)

// DefaultLinger is how long a worker whose Options.Linger is 0 lets a run
// that lingers (begun by a worker with Linger) wait for a signal once idle.
// Register does not apply it: a zero Linger means that the runs a worker
// begins do not linger.
const DefaultLinger = 5 * time.Second

// DefaultRetryPolicy returns the drain activity's default retry policy: the
// first retry after 1 second, doubling to at most 1 minute, with no limit of
// attempts, since a drain fails only when the database is out of reach and
// its events wait, safe, until it is back. ErrorTypeInvalidInput is not
// retried.
func DefaultRetryPolicy() *temporal.RetryPolicy {
	return &temporal.RetryPolicy{
		InitialInterval:        time.Second,
		BackoffCoefficient:     2,
		MaximumInterval:        time.Minute,
		NonRetryableErrorTypes: []string{ErrorTypeInvalidInput},
	}
}

// Options tune the relay workflow and its drain activity, on the worker.
// Every field has a documented default, applied by Register.
type Options struct {
	// DrainBudget is how long one drain activity works the organization's
	// lane (turn after turn) before it reports back to the workflow. It
	// bounds how stale the workflow's view is, and how much work a retried
	// activity repeats (none is duplicated in Svix). Defaults to 10
	// seconds.
	DrainBudget time.Duration
	// ActivityStartToCloseTimeout bounds one drain attempt. It must exceed
	// DrainBudget by the relay's SendTimeout and a settlement. Defaults to
	// DrainBudget plus 1 minute.
	ActivityStartToCloseTimeout time.Duration
	// ActivityHeartbeatTimeout is how long a drain may go without a
	// heartbeat (it sends one every third of it) before Temporal retries it
	// elsewhere: how soon a killed worker's drain resumes. Defaults to 10
	// seconds.
	ActivityHeartbeatTimeout time.Duration
	// RetryPolicy retries a failed drain. Defaults to DefaultRetryPolicy():
	// without limit, since giving up would leave committed events waiting
	// for the next signal.
	RetryPolicy *temporal.RetryPolicy
	// NoProgressDelay is the least time between a drain that delivered
	// nothing (a lane held by another holder, a head event waiting for its
	// retry) and the next one, however many signals arrive: a hot producer
	// cannot make the workflow spin. Defaults to 1 second.
	NoProgressDelay time.Duration
	// CyclesPerRun is how many drains one workflow run does before it
	// continues as new, so its history stays short (it continues sooner
	// when the server suggests it). Defaults to 500.
	CyclesPerRun int
	// LocalDrain runs each drain as a local activity: on the worker that
	// runs the workflow's task, its result recorded in the history as a
	// marker, rather than scheduled by the server as an activity task. A
	// wake-up whose drain takes less than 80% of the workflow task timeout
	// (8 seconds) then costs one workflow task instead of two workflow
	// tasks and an activity task: a run that drains once records 8 history
	// events instead of 11, and each further short drain adds one instead
	// of six. A longer drain (a busy lane drained for the whole
	// DrainBudget) also costs the workflow task heartbeat the SDK sends to
	// keep the task open: two workflow tasks, still no activity task.
	//
	// What it gives up: a local drain cannot heartbeat, so a killed
	// worker's drain is retried once its workflow task times out (the
	// server's default WorkflowTaskTimeout, 10 seconds) rather than after
	// ActivityHeartbeatTimeout. A failing drain shows in the Temporal UI as
	// timers and markers of the workflow, not as a pending activity with
	// its attempts. RetryPolicy and ActivityStartToCloseTimeout apply as to
	// an activity; ActivityHeartbeatTimeout does not.
	//
	// Every worker that runs these workflows must then be made with
	// Register, whatever its own LocalDrain (it may replay a local run and
	// run its next drain), and run this release or a later one: turn
	// LocalDrain on once every worker does, and do not go back to an
	// earlier release while local runs are open. Each run decides when it
	// starts and records the decision, so changing LocalDrain affects only
	// runs started after the change. Defaults to false.
	LocalDrain bool
	// Linger keeps a run open once the organization's lane is empty: it
	// waits up to Linger for the next signal, drains at once when one
	// comes, and completes only when none does. An organization woken
	// again within Linger then costs a signal to a running workflow, its
	// drain (one workflow task with LocalDrain, two and an activity task
	// without) and the linger timer's start and cancel, rather than a new
	// workflow execution (the server's dearest operation: its records, its
	// visibility rows, its first workflow task without cache). An
	// organization woken once pays for the wait instead: the version marker
	// and search attribute upsert that record the run's choice (below), a
	// timer, and the workflow task when it fires. Choose it when
	// organizations are woken more often than every Linger, and keep it
	// short: each open run holds a place in the worker's workflow cache
	// (worker.SetStickyWorkflowCacheSize, 10,000 by default), and a run
	// evicted from it is replayed from its history.
	//
	// Every worker that runs these workflows must run this release or a
	// later one before any uses Linger: a worker of an earlier release that
	// picks up a lingering run ends it where it first went idle, without an
	// error, and drops the signal it was woken by (the organization's events
	// then wait for the relay's sweep, with relay.Config.Delegate, to start
	// a new run). Each run decides when it is first idle and records the
	// decision; a worker whose Linger is 0 goes on with a run that lingers,
	// waiting DefaultLinger. Defaults to 0: a run completes as soon as it is
	// idle.
	Linger time.Duration
}

// lingerFor is how long an idle run that lingers waits for a signal.
func (o Options) lingerFor() time.Duration {
	if o.Linger > 0 {
		return o.Linger
	}
	return DefaultLinger
}

func (o Options) withDefaults() Options {
	config.Default(&o.DrainBudget, DefaultDrainBudget)
	config.Default(&o.ActivityStartToCloseTimeout, o.DrainBudget+DefaultActivityCloseMargin)
	config.Default(&o.ActivityHeartbeatTimeout, DefaultActivityHeartbeatTimeout)
	config.Default(&o.NoProgressDelay, DefaultNoProgressDelay)
	config.Default(&o.CyclesPerRun, DefaultCyclesPerRun)
	if o.RetryPolicy == nil {
		o.RetryPolicy = DefaultRetryPolicy()
	}
	return o
}

// validate returns every bad field at once, each a *ConfigError.
func (o Options) validate() error {
	var errs []error
	bad := func(field, format string, args ...any) {
		errs = append(errs, &ConfigError{Field: field, Rule: fmt.Sprintf(format, args...)})
	}
	for _, f := range []struct {
		name  string
		value time.Duration
	}{{"DrainBudget", o.DrainBudget}, {"ActivityStartToCloseTimeout", o.ActivityStartToCloseTimeout},
		{"ActivityHeartbeatTimeout", o.ActivityHeartbeatTimeout}, {"NoProgressDelay", o.NoProgressDelay}} {
		if f.value <= 0 {
			bad(f.name, "must be positive, got %s", f.value)
		}
	}
	if o.DrainBudget > 0 && o.ActivityStartToCloseTimeout <= o.DrainBudget {
		bad("ActivityStartToCloseTimeout", "must exceed DrainBudget (%s) by the time in-flight calls take to finish and settle, got %s",
			o.DrainBudget, o.ActivityStartToCloseTimeout)
	}
	if o.Linger < 0 {
		bad("Linger", "must not be negative, got %s", o.Linger)
	}
	if o.CyclesPerRun < 1 {
		bad("CyclesPerRun", "must be at least 1, got %d", o.CyclesPerRun)
	}
	return config.Join("outboxtemporal", errs)
}

// localRetryWindow is a local drain's ScheduleToCloseTimeout: the time
// its retries may take, in effect unlimited, as an activity's are. The SDK
// defaults it to StartToCloseTimeout, which would end the retries of a
// drain waiting for the database after about a minute and fail the run.
const localRetryWindow = 10 * 365 * 24 * time.Hour

// localActivityOptions are the local drain activity's options.
func (o Options) localActivityOptions() workflow.LocalActivityOptions {
	return workflow.LocalActivityOptions{
		ScheduleToCloseTimeout: localRetryWindow,
		StartToCloseTimeout:    o.ActivityStartToCloseTimeout,
		RetryPolicy:            o.RetryPolicy,
	}
}

// activityOptions are the drain activity's options.
func (o Options) activityOptions() workflow.ActivityOptions {
	return workflow.ActivityOptions{
		StartToCloseTimeout: o.ActivityStartToCloseTimeout,
		HeartbeatTimeout:    o.ActivityHeartbeatTimeout,
		RetryPolicy:         o.RetryPolicy,
	}
}
