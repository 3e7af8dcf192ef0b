package temporale2e

import (
	"context"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	enumspb "go.temporal.io/api/enums/v1"
	historypb "go.temporal.io/api/history/v1"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/worker"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/outboxrelay/outbox/outboxtemporal"
	"github.com/outboxrelay/outbox/relay"
)

// The scenarios recorded for the replay tests of the temporal module
// (temporal/replay_test.go holds the same table): each organization id is
// a scenario, each step what its drain returns in turn. Record them anew
// with
//
//	cd test/temporal && OUTBOX_RECORD_HISTORIES=$PWD/../../outboxtemporal/testdata/histories GOWORK=off go test -run 'TestRecordedHistoriesReplay|TestLingerTimerAndSignalInOneTaskDrain' .
var scenarios = []struct {
	name  string
	opts  outboxtemporal.Options
	steps []relay.DrainResult
	// wake signals the workflow after this long (0: never).
	wake time.Duration
}{
	{name: "drain-then-complete", steps: []relay.DrainResult{{Delivered: 3}}},
	{name: "sleep-until-retry-then-signal", steps: []relay.DrainResult{{Retried: 1, Remaining: 1, NextTurnAt: future(time.Hour)}, {Delivered: 1}}, wake: 500 * time.Millisecond},
	{name: "rate-limited-sleeps-through-signal", steps: []relay.DrainResult{{RateLimited: true, Busy: true, Remaining: 2, NextTurnAt: future(2 * time.Second)}, {Delivered: 2}}, wake: 500 * time.Millisecond},
	{name: "no-progress-waits", opts: outboxtemporal.Options{NoProgressDelay: 300 * time.Millisecond}, steps: []relay.DrainResult{{Remaining: 1}, {Delivered: 1}}},
	{name: "local-drain-then-complete", opts: outboxtemporal.Options{LocalDrain: true}, steps: []relay.DrainResult{{Delivered: 3}}},
	{name: "local-sleep-until-retry-then-signal", opts: outboxtemporal.Options{LocalDrain: true}, steps: []relay.DrainResult{{Retried: 1, Remaining: 1, NextTurnAt: future(time.Hour)}, {Delivered: 1}}, wake: 500 * time.Millisecond},
	{name: "linger-signal-then-complete", opts: outboxtemporal.Options{Linger: 2 * time.Second}, steps: []relay.DrainResult{{Delivered: 3}, {Delivered: 1}}, wake: 500 * time.Millisecond},
	// Last: the test checks that its first run continues as new.
	{name: "continue-as-new", opts: outboxtemporal.Options{CyclesPerRun: 2}, steps: []relay.DrainResult{{Delivered: 10, Remaining: 5}, {Delivered: 5, Remaining: 1}, {Delivered: 1}}},
}

// future marks a NextTurnAt as a distance from the drain's call.
func future(d time.Duration) time.Time { return time.Unix(0, int64(d)) }

// scriptedDrainer plays each organization's steps in turn (the last one
// after), a NextTurnAt given as a distance from the call.
type scriptedDrainer struct {
	mu    sync.Mutex
	steps map[string][]relay.DrainResult
	calls map[string]int
}

// scenarioDrainer plays the scenarios, each organization id a scenario.
func scenarioDrainer() *scriptedDrainer {
	d := &scriptedDrainer{steps: map[string][]relay.DrainResult{}, calls: map[string]int{}}
	for _, sc := range scenarios {
		d.steps[sc.name] = sc.steps
	}
	return d
}

func (d *scriptedDrainer) DrainOrganization(_ context.Context, org string, _ time.Duration) (relay.DrainResult, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	steps := d.steps[org]
	if len(steps) == 0 {
		return relay.DrainResult{}, nil
	}
	res := steps[min(d.calls[org], len(steps)-1)]
	d.calls[org]++
	if !res.NextTurnAt.IsZero() {
		res.NextTurnAt = time.Now().Add(time.Duration(res.NextTurnAt.UnixNano()))
	}
	return res, nil
}

// drains returns how many times org was drained.
func (d *scriptedDrainer) drains(org string) int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.calls[org]
}

// TestRecordedHistoriesReplay runs each scenario on the real server, then
// replays the histories the server recorded with the workflow code as it
// is: the check the temporal module's replay test makes on the histories
// checked in, here on fresh ones.
func TestRecordedHistoriesReplay(t *testing.T) {
	t.Parallel()
	b := setup(t)
	d := scenarioDrainer()
	var histories []*historypb.History
	for _, sc := range scenarios {
		queue := b.queue + "-" + sc.name
		w := worker.New(b.client, queue, worker.Options{})
		require.NoError(t, outboxtemporal.Register(w, d, sc.opts))
		require.NoError(t, w.Start())
		run, err := b.client.ExecuteWorkflow(b.ctx, client.StartWorkflowOptions{ID: outboxtemporal.WorkflowID("", sc.name), TaskQueue: queue},
			outboxtemporal.WorkflowName, outboxtemporal.RelayInput{OrganizationID: sc.name})
		require.NoError(t, err)
		if sc.wake > 0 {
			time.Sleep(sc.wake)
			require.NoError(t, b.client.SignalWorkflow(b.ctx, run.GetID(), "", outboxtemporal.SignalName, nil))
		}
		ctx, cancel := context.WithTimeout(b.ctx, 30*time.Second)
		err = b.client.GetWorkflow(ctx, run.GetID(), "").Get(ctx, nil) // follows continue-as-new to the last run
		cancel()
		require.NoError(t, err, sc.name)
		w.Stop()

		h := b.history(t, run.GetID(), run.GetRunID())
		histories = append(histories, h)
		saveHistory(t, sc.name, h)
	}

	for i, sc := range scenarios {
		requireReplays(t, sc.name, histories[i], sc.opts)
	}
	require.Equal(t, 2, d.drains("linger-signal-then-complete"), "the signal within Linger woke the same run")
	last := histories[len(histories)-1].GetEvents()
	require.Equal(t, enumspb.EVENT_TYPE_WORKFLOW_EXECUTION_CONTINUED_AS_NEW, last[len(last)-1].GetEventType(),
		"the continue-as-new scenario's first run ends by continuing as new")
}

// hasEvent returns a condition for require.Eventually: run's history has
// an event of type typ. It uses no require, since Eventually runs it on
// another goroutine: an error reading the history is "not yet".
func (b *bundle) hasEvent(run client.WorkflowRun, typ enumspb.EventType) func() bool {
	return func() bool {
		it := b.client.GetWorkflowHistory(b.ctx, run.GetID(), run.GetRunID(), false, enumspb.HISTORY_EVENT_FILTER_TYPE_ALL_EVENT)
		for it.HasNext() {
			e, err := it.Next()
			if err != nil {
				return false
			}
			if e.GetEventType() == typ {
				return true
			}
		}
		return false
	}
}

// saveHistory writes h as name.json into OUTBOX_RECORD_HISTORIES, if set.
func saveHistory(t *testing.T, name string, h *historypb.History) {
	t.Helper()
	dir := os.Getenv("OUTBOX_RECORD_HISTORIES")
	if dir == "" {
		return
	}
	data, err := protojson.MarshalOptions{Indent: "  "}.Marshal(h)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(filepath.Join(dir, name+".json"), append(data, '\n'), 0o644))
}

// requireReplays replays h, recorded with the Options recorded, with the
// workflow code as it is, under each of replayOptions(recorded).
func requireReplays(t *testing.T, name string, h *historypb.History, recorded outboxtemporal.Options) {
	t.Helper()
	for _, opts := range replayOptions(recorded) {
		replayer := worker.NewWorkflowReplayer()
		require.NoError(t, outboxtemporal.RegisterWorkflow(replayer, opts))
		require.NoError(t, replayer.ReplayWorkflowHistory(nil, h), "%s replayed with %+v", name, opts)
	}
}

// replayOptions are the Options a scenario's history is replayed with: a
// run drains and lingers as it began, which its history records, whatever
// the replaying worker's own LocalDrain and Linger. So a local run replays
// with LocalDrain off, a lingering run with Linger 0, and every other run
// with Linger on as well (the replayer treats every event as replay, so
// these pass only if the choice is read from the history).
func replayOptions(recorded outboxtemporal.Options) []outboxtemporal.Options {
	opts := recorded
	opts.LocalDrain = false
	if recorded.Linger > 0 {
		opts.Linger = 0
		return []outboxtemporal.Options{opts}
	}
	lingering := opts
	lingering.Linger = time.Minute
	return []outboxtemporal.Options{opts, lingering}
}

// history returns one run's whole history.
func (b *bundle) history(t *testing.T, id, runID string) *historypb.History {
	t.Helper()
	it := b.client.GetWorkflowHistory(b.ctx, id, runID, false, enumspb.HISTORY_EVENT_FILTER_TYPE_ALL_EVENT)
	h := &historypb.History{}
	for it.HasNext() {
		e, err := it.Next()
		require.NoError(t, err)
		h.Events = append(h.Events, e)
	}
	return h
}

// A worker without LocalDrain takes over a run that a worker with it began
// (that one stopped, its cache gone with it, while the run slept until a
// retry): it replays the run's history, finds the run's choice there, and
// drains it locally to the end. Deciding from its own Options instead would
// schedule an activity where the history has a local drain's marker, and
// the run would never complete.
func TestWorkerWithoutLocalDrainGoesOnWithALocalRun(t *testing.T) {
	t.Parallel()
	b := setup(t)
	const org = "org-handover"
	d := &scriptedDrainer{calls: map[string]int{}, steps: map[string][]relay.DrainResult{
		org: {{Retried: 1, Remaining: 1, NextTurnAt: future(time.Hour)}, {Delivered: 1}},
	}}
	first := worker.New(b.client, b.queue, worker.Options{})
	require.NoError(t, outboxtemporal.Register(first, d, outboxtemporal.Options{LocalDrain: true}))
	require.NoError(t, first.Start())
	run, err := b.client.ExecuteWorkflow(b.ctx, client.StartWorkflowOptions{ID: outboxtemporal.WorkflowID("", org), TaskQueue: b.queue},
		outboxtemporal.WorkflowName, outboxtemporal.RelayInput{OrganizationID: org})
	require.NoError(t, err)
	require.Eventually(t, b.hasEvent(run, enumspb.EVENT_TYPE_TIMER_STARTED), // the first drain recorded, the run asleep
		30*time.Second, 50*time.Millisecond, "the run sleeps until the retry")
	first.Stop()

	second := worker.New(b.client, b.queue, worker.Options{})
	require.NoError(t, outboxtemporal.Register(second, d, outboxtemporal.Options{}))
	require.NoError(t, second.Start())
	t.Cleanup(second.Stop)
	require.NoError(t, b.client.SignalWorkflow(b.ctx, run.GetID(), "", outboxtemporal.SignalName, nil))
	ctx, cancel := context.WithTimeout(b.ctx, time.Minute)
	defer cancel()
	require.NoError(t, b.client.GetWorkflow(ctx, run.GetID(), "").Get(ctx, nil), "the second worker completes the run")
	require.Equal(t, 2, d.drains(org), "one drain by each worker")
	b.requireDrainedAs(t, []string{org}, outboxtemporal.Options{LocalDrain: true})
}

// The linger's timer fires and a signal arrives in one workflow task (no
// worker polled while both came): the run takes the signal in and drains,
// rather than complete with it pending, which would leave its events for
// the sweep. The history is recorded with the scenarios
// (linger-timer-fired-with-signal).
func TestLingerTimerAndSignalInOneTaskDrain(t *testing.T) {
	t.Parallel()
	b := setup(t)
	const org = "linger-timer-fired-with-signal"
	d := &scriptedDrainer{calls: map[string]int{}, steps: map[string][]relay.DrainResult{org: {{Delivered: 3}, {Delivered: 1}}}}
	// Long enough for the first worker to stop before the linger ends,
	// on a loaded machine.
	opts := outboxtemporal.Options{Linger: 5 * time.Second}
	first := worker.New(b.client, b.queue, worker.Options{})
	require.NoError(t, outboxtemporal.Register(first, d, opts))
	require.NoError(t, first.Start())
	run, err := b.client.ExecuteWorkflow(b.ctx, client.StartWorkflowOptions{ID: outboxtemporal.WorkflowID("", org), TaskQueue: b.queue},
		outboxtemporal.WorkflowName, outboxtemporal.RelayInput{OrganizationID: org})
	require.NoError(t, err)
	require.Eventually(t, b.hasEvent(run, enumspb.EVENT_TYPE_TIMER_STARTED), 30*time.Second, 20*time.Millisecond, "the run lingers")
	first.Stop() // no worker: the timer's workflow task waits
	require.Eventually(t, b.hasEvent(run, enumspb.EVENT_TYPE_TIMER_FIRED), 30*time.Second, 20*time.Millisecond, "the linger's timer fires")
	require.NoError(t, b.client.SignalWorkflow(b.ctx, run.GetID(), "", outboxtemporal.SignalName, nil),
		"the run must still be open: the first worker stopped before the linger ended")

	second := worker.New(b.client, b.queue, worker.Options{})
	require.NoError(t, outboxtemporal.Register(second, d, opts))
	require.NoError(t, second.Start())
	t.Cleanup(second.Stop)
	ctx, cancel := context.WithTimeout(b.ctx, time.Minute)
	defer cancel()
	require.NoError(t, b.client.GetWorkflow(ctx, run.GetID(), "").Get(ctx, nil))
	require.Equal(t, 2, d.drains(org), "the signal that came with the timer made a drain")

	h := b.history(t, run.GetID(), run.GetRunID())
	var fired, signalled int64
	for _, e := range h.GetEvents() {
		switch e.GetEventType() {
		case enumspb.EVENT_TYPE_TIMER_FIRED:
			if fired == 0 {
				fired = e.GetEventId()
			}
		case enumspb.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED:
			signalled = e.GetEventId()
		case enumspb.EVENT_TYPE_WORKFLOW_TASK_STARTED:
			if fired > 0 && signalled == 0 {
				t.Fatalf("a workflow task started between the timer (event %d) and the signal", fired)
			}
		}
	}
	require.Greater(t, signalled, fired, "the signal came after the timer fired, in the same task")
	requireReplays(t, org, h, opts)
	saveHistory(t, org, h)
}
