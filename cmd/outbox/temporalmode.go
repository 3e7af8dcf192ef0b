//go:build temporal

package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/contrib/envconfig"
	tlog "go.temporal.io/sdk/log"
	"go.temporal.io/sdk/worker"

	"github.com/outboxrelay/outbox/outboxtemporal"
	"github.com/outboxrelay/outbox/relay"
)

// This file is the relay's Temporal mode, in builds with the tag temporal
// (go install -tags temporal ...): the Temporal SDK grows the binary by
// half (docs/cli.md has the measured sizes), which every other deployment
// would carry for nothing.

// temporalOptions are the flags of `outbox relay --temporal`.
type temporalOptions struct {
	enabled          bool
	address          string
	namespace        string
	taskQueue        string
	workflowIDPrefix string
	drainBudget      time.Duration
	heartbeatTimeout time.Duration
	localDrain       bool
	linger           time.Duration
}

func (o *temporalOptions) register(fs *flagSet) {
	fs.BoolVar(&o.enabled, "temporal", false, "deliver through Temporal: run the relay workflow and drain activity as a worker, and sweep only to start the workflows of organizations whose signal was lost (connection from TEMPORAL_ADDRESS, TEMPORAL_NAMESPACE, TEMPORAL_API_KEY, TEMPORAL_TLS_*, or a profile: TEMPORAL_PROFILE, TEMPORAL_CONFIG_FILE)")
	fs.StringVar(&o.address, "temporal-address", "", "Temporal frontend host:port (default $TEMPORAL_ADDRESS, else localhost:7233)")
	fs.StringVar(&o.namespace, "temporal-namespace", "", "Temporal namespace (default $TEMPORAL_NAMESPACE, else default)")
	fs.StringVar(&o.taskQueue, "temporal-task-queue", outboxtemporal.DefaultTaskQueue, "task queue the workflows run on (the producers' Signaler must use the same)")
	fs.StringVar(&o.workflowIDPrefix, "temporal-workflow-id-prefix", outboxtemporal.DefaultWorkflowIDPrefix, "prefix of each organization's workflow id (the producers' Signaler must use the same)")
	fs.DurationVar(&o.drainBudget, "temporal-drain-budget", outboxtemporal.DefaultDrainBudget, "how long one drain activity works an organization's lane before reporting to its workflow")
	fs.DurationVar(&o.heartbeatTimeout, "temporal-heartbeat-timeout", outboxtemporal.DefaultActivityHeartbeatTimeout, "a drain silent this long (its worker died) is retried on another worker")
	fs.BoolVar(&o.localDrain, "temporal-local-drain", false, "run each drain as a local activity, inside the workflow's task: one workflow task per wake-up instead of two and an activity task; no heartbeat, so a killed worker's drain is retried after the workflow task timeout (10s)")
	fs.DurationVar(&o.linger, "temporal-linger", 0, "keep an idle workflow open this long for the next signal, so an organization woken again within it is signalled, not started anew (0: complete when idle)")
}

// checkFlags refuses the Temporal flags without --temporal, which would
// otherwise be silently ignored.
func (o *temporalOptions) checkFlags(fs *flagSet) error {
	var stray []string
	fs.Visit(func(f *flag.Flag) {
		if f.Name != "temporal" && strings.HasPrefix(f.Name, "temporal-") && !o.enabled {
			stray = append(stray, "--"+f.Name)
		}
	})
	if len(stray) > 0 {
		return usagef("%s needs --temporal", strings.Join(stray, ", "))
	}
	for _, f := range []struct {
		name  string
		value time.Duration
	}{{"--temporal-drain-budget", o.drainBudget}, {"--temporal-heartbeat-timeout", o.heartbeatTimeout}} {
		if o.enabled && f.value <= 0 {
			return usagef("%s must be positive, got %s", f.name, f.value)
		}
	}
	if o.linger < 0 {
		return usagef("--temporal-linger must not be negative, got %s", o.linger)
	}
	return nil
}

// getenvLookup reads the Temporal connection settings from the command's
// environment.
type getenvLookup struct{ env *environment }

func (l getenvLookup) Environ() []string { return os.Environ() }

func (l getenvLookup) LookupEnv(key string) (string, bool) {
	v := l.env.getenv(key)
	return v, v != ""
}

// dialTemporal connects to Temporal with the settings of the environment,
// the config file's profile and the flags, and checks the server answers.
func (o *temporalOptions) dial(ctx context.Context, env *environment, logger *slog.Logger) (client.Client, error) {
	opts, err := envconfig.LoadClientOptions(envconfig.LoadClientOptionsRequest{EnvLookup: getenvLookup{env}})
	if err != nil {
		return nil, usagef("Temporal client settings: %v", err)
	}
	if o.address != "" {
		opts.HostPort = o.address
	}
	if o.namespace != "" {
		opts.Namespace = o.namespace
	}
	if opts.HostPort == "" {
		opts.HostPort = client.DefaultHostPort
	}
	if opts.Namespace == "" {
		opts.Namespace = client.DefaultNamespace
	}
	// The SDK logs at debug what this process logs at info: keep it a level
	// down.
	opts.Logger = tlog.NewStructuredLogger(logger.With("component", "temporal"))
	dialCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	c, err := client.DialContext(dialCtx, opts)
	if err != nil {
		return nil, fmt.Errorf("cannot reach Temporal at %s (namespace %s): %v", opts.HostPort, opts.Namespace, redact(err))
	}
	return c, nil
}

// runTemporalRelay runs the relay as a Temporal worker: the workflows drain
// the lanes through r, and r's own loop only hands organizations to the
// Signaler (lost signals, dead replicas' lanes) and keeps history.
func runTemporalRelay(ctx context.Context, env *environment, o *temporalOptions, pool *pgxpool.Pool, cfg relay.Config, logger *slog.Logger, serve func(*relay.Relay) (func(), error)) error {
	c, err := o.dial(ctx, env, logger)
	if err != nil {
		return err
	}
	defer c.Close()
	signaler, err := outboxtemporal.NewSignaler(outboxtemporal.SignalerConfig{
		Client: c, TaskQueue: o.taskQueue, WorkflowIDPrefix: o.workflowIDPrefix, Logger: logger,
	})
	if err != nil {
		return usagef("%v", err)
	}
	defer func() { _ = signaler.Close() }()
	cfg.Delegate = signaler
	r, err := relay.New(pool, cfg)
	if err != nil {
		return err
	}
	// As many drains at once as Run works lanes: more would wait for the
	// relay's lane slots while the activity's timeout runs. Local drains
	// count against their own limit.
	concurrency := cfg.Concurrency
	if concurrency == 0 {
		concurrency = relay.DefaultConcurrency
	}
	w := worker.New(c, o.taskQueue, worker.Options{MaxConcurrentActivityExecutionSize: concurrency, MaxConcurrentLocalActivityExecutionSize: concurrency})
	if err := outboxtemporal.Register(w, r, outboxtemporal.Options{DrainBudget: o.drainBudget, ActivityHeartbeatTimeout: o.heartbeatTimeout, LocalDrain: o.localDrain, Linger: o.linger}); err != nil {
		return usagef("%v", err)
	}
	if err := w.Start(); err != nil {
		return fmt.Errorf("start Temporal worker on task queue %s: %w", o.taskQueue, err)
	}
	defer w.Stop() // waits for the drains in flight, which settle what they sent
	logger.InfoContext(ctx, "relay: Temporal worker started", "task_queue", o.taskQueue, "workflow_id_prefix", o.workflowIDPrefix)
	stop, err := serve(r)
	if err != nil {
		return err
	}
	defer stop()
	return r.Run(ctx)
}
