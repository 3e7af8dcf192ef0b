package outboxtemporal

import (
	"fmt"

	"github.com/jonboulle/clockwork"
	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/workflow"
)

// WorkflowRegistry is what RegisterWorkflow needs: worker.Worker, the
// SDK's WorkflowReplayer and its test environments have it.
type WorkflowRegistry interface {
	RegisterWorkflowWithOptions(w interface{}, options workflow.RegisterOptions)
}

// Registry is what Register needs: worker.Worker and the SDK's
// TestWorkflowEnvironment have it.
type Registry interface {
	WorkflowRegistry
	RegisterActivityWithOptions(a interface{}, options activity.RegisterOptions)
}

// Register registers the relay workflow (WorkflowName) and the drain
// activity (ActivityName) on a worker, the activity draining through d
// (usually the process's *relay.Relay). It checks opts and returns an error
// wrapping ErrInvalidConfig naming every bad field.
//
// The worker must poll the task queue the Signaler starts workflows on.
func Register(r Registry, d Drainer, opts Options) error {
	if d == nil {
		return fmt.Errorf("outboxtemporal: %w", &ConfigError{Field: "Drainer", Rule: "must not be nil"})
	}
	if err := registerWorkflow(r, opts); err != nil {
		return err
	}
	a := &activities{drainer: d, clock: clockwork.NewRealClock()}
	r.RegisterActivityWithOptions(a.drain, activity.RegisterOptions{Name: ActivityName})
	return nil
}

// RegisterWorkflow registers only the relay workflow, for a worker whose
// activities run elsewhere or for a WorkflowReplayer. It refuses
// Options.LocalDrain, whose drains run on the workflow's worker: use
// Register. (A replayer needs no LocalDrain to replay local runs: each
// run's history records how it drains.)
func RegisterWorkflow(r WorkflowRegistry, opts Options) error {
	if opts.LocalDrain {
		return fmt.Errorf("outboxtemporal: %w", &ConfigError{Field: "LocalDrain", Rule: "needs Register: local drains run on the workflow's worker"})
	}
	return registerWorkflow(r, opts)
}

func registerWorkflow(r WorkflowRegistry, opts Options) error {
	opts = opts.withDefaults()
	if err := opts.validate(); err != nil {
		return err
	}
	w := &relayWorkflow{opts: opts}
	r.RegisterWorkflowWithOptions(w.run, workflow.RegisterOptions{Name: WorkflowName})
	return nil
}
