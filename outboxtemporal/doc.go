// Package outboxtemporal runs outbox delivery as Temporal workflows: one
// relay workflow per organization, started or woken by the producer's
// signal after each commit, draining the organization's events to Svix and
// completing when none are left.
//
// Producers signal with a [Signaler] instead of (or beside, through
// outbox.MultiSignaler) the NOTIFY signaler:
//
//	signaler, err := outboxtemporal.NewSignaler(outboxtemporal.SignalerConfig{Client: temporalClient})
//	...
//	err = outbox.WithTx(ctx, pool, signaler, func(tx *outbox.Tx) error { ... })
//
// SignalRelay signal-with-starts the workflow "outbox-relay-<organization
// id>" on the task queue "outbox". A worker polling that queue runs it, with
// the drain activity calling relay.Relay.DrainOrganization:
//
//	r, err := relay.New(pool, relay.Config{SvixToken: token, Delegate: signaler})
//	w := worker.New(temporalClient, outboxtemporal.DefaultTaskQueue, worker.Options{MaxConcurrentActivityExecutionSize: relay.DefaultConcurrency})
//	err = outboxtemporal.Register(w, r, outboxtemporal.Options{})
//	go r.Run(ctx) // the safety net for lost signals, see below
//	err = w.Run(worker.InterruptCh())
//
// The workflow loops: it runs the drain activity (up to DrainBudget, 10
// seconds, heartbeating), takes in the signals that came meanwhile, and goes
// again at once while work is due or a signal came; while the lane waits (a
// retry's backoff, a 429 pause) it sleeps until its next turn or a signal;
// after an empty drain with no signal pending it completes, and the next
// signal starts a new run. It continues as new after CyclesPerRun drains
// or when the server suggests it. The drain activity is retried without
// limit (it fails only when the database is out of reach), and a retried
// or duplicated drain never creates a second Svix message: the relay's
// lane lease admits one drain at a time, and each event is created with its
// public id as Svix eventId.
//
// A signal can be lost (the process dies between the commit and the
// signal, Temporal is unreachable): run the relay with
// relay.Config.Delegate set to the Signaler, and its sweep, instead of
// delivering, signal-with-starts the workflow of every organization with
// events due that nobody signalled. The outbox command does all of this:
// outbox relay --temporal.
//
// With Options.LocalDrain each drain runs as a local activity, inside the
// workflow's task: a wake-up costs one workflow task instead of two and an
// activity task, without the drain's heartbeat (docs/temporal.md, "Local
// drains", has what it gives up and how to turn it on). With Options.Linger
// an idle run waits that long for the next signal before it completes, so
// an organization woken again soon is a signal to a running workflow rather
// than a new one (docs/temporal.md, "Linger").
//
// In the Temporal UI an organization's workflow shows, per drain, the
// activity's result: delivered, retried, dead-lettered, remaining, and when
// its next turn is due.
package outboxtemporal
