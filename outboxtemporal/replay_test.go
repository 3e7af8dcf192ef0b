package outboxtemporal_test

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/worker"

	"github.com/outboxrelay/outbox/outboxtemporal"
)

// The histories in testdata/histories were recorded on a real Temporal
// server by test/temporal (TestRecordedHistoriesReplay, whose table of
// scenarios and options this one mirrors, and
// TestLingerTimerAndSignalInOneTaskDrain). Replaying them with the workflow
// code as it is fails when a change would break the workflows running in
// production: guard such a change with workflow.GetVersion.
var replayed = map[string]outboxtemporal.Options{
	"drain-then-complete":                 {},
	"sleep-until-retry-then-signal":       {},
	"rate-limited-sleeps-through-signal":  {},
	"no-progress-waits":                   {NoProgressDelay: 300 * time.Millisecond},
	"continue-as-new":                     {CyclesPerRun: 2},
	"local-drain-then-complete":           {LocalDrain: true},
	"local-sleep-until-retry-then-signal": {LocalDrain: true},
	"linger-signal-then-complete":         {Linger: 2 * time.Second},
	// Recorded by TestLingerTimerAndSignalInOneTaskDrain: the linger's
	// timer fired and a signal came in one workflow task.
	"linger-timer-fired-with-signal": {Linger: 5 * time.Second},
}

func TestRecordedHistoriesReplay(t *testing.T) {
	t.Parallel()
	files, err := filepath.Glob(filepath.Join("testdata", "histories", "*.json"))
	require.NoError(t, err)
	require.Len(t, files, len(replayed), "one history per scenario")
	for _, file := range files {
		name := filepath.Base(file[:len(file)-len(".json")])
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			opts, ok := replayed[name]
			require.True(t, ok, "no options for %s", name)
			f, err := os.Open(file)
			require.NoError(t, err)
			defer f.Close()
			h, err := client.HistoryFromJSON(f, client.HistoryJSONOptions{})
			require.NoError(t, err)
			for _, opts := range replayOptions(opts) {
				replayer := worker.NewWorkflowReplayer()
				require.NoError(t, outboxtemporal.RegisterWorkflow(replayer, opts))
				require.NoError(t, replayer.ReplayWorkflowHistory(nil, h), "replayed with %+v", opts)
			}
		})
	}
}

// replayOptions are the Options a history is replayed with: a run drains
// and lingers as it began, which its history records, whatever the
// replaying worker's own LocalDrain and Linger. So a local run replays with
// LocalDrain off, a lingering run with Linger 0, and every other run with
// Linger on as well (the replayer treats every event as replay, so these
// pass only if the choice is read from the history).
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
