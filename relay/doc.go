// Package relay delivers committed outbox events to Svix: one lane per
// organization, in id order, once per event, across any number of
// processes on one database.
//
// A Relay claims an organization's lane with a lease in outbox_lanes, so at
// most one process works an organization at a time while other
// organizations proceed in parallel. Each event is created in Svix with its
// public id as eventId and a stable Idempotency-Key, so a repeat after a
// crash, a lost response or an expired lease never creates a second
// message: Svix answers 409 and the relay confirms the existing message.
//
// Wake-ups come from the outbox NOTIFY channel (LISTEN on a dedicated
// connection), from SignalRelay in the same process, and from a sweep every
// PollInterval that also picks up retries whose time has come.
//
// Failures: 429 pauses the organization's lane (honouring Retry-After);
// 5xx, timeouts and connection errors are retried with capped exponential
// backoff and full jitter; 400, 404, 413, 422 and an unconfirmed 409
// dead-letter the event and the lane goes on; 401 and 403 pause all
// delivery and never dead-letter anything. Settled events leave the hot
// table for outbox_deliveries (or outbox_dead_letters).
//
// # Reading the code
//
// One delivery, in the order it happens:
//
//   - relay.go: New, Run, and the queue of organizations waiting for a
//     turn (SignalRelay, enqueue, the waits that hold a signal back).
//   - dispatch.go: dispatch takes queued organizations, many per claim,
//     and runs a lane for each one claimed.
//   - claim.go (SQL in sql_lanes.go): one round trip leases the lanes and
//     reads their heads, within BatchSize and BatchMaxBytes.
//   - turn.go: a lane's turn sends its events in order, PerOrgInFlight at
//     a time; deliver is the one place that holds a send slot, waits for
//     the rate limiter and retries quickly (quickretry.go keeps the health
//     signal that allows it).
//   - send.go: send makes the Svix call with its idempotency key, confirms
//     a 409 and classifies the answer; svixclient.go builds the client.
//   - settle.go (SQL in sql_settle.go): the settler records many lanes'
//     outcomes per round trip and releases their leases; backoff.go picks
//     the next attempt's time.
//
// The background services Run starts beside the lanes, each a small type
// with a Run method, its own ticker on the relay's clock, and only the
// dependencies it uses (so each is built and tested alone):
//
//   - liveness.go (sql_liveness.go): the heartbeater, on a connection of its
//     own; a relay whose heartbeat is late fences itself, and dead
//     relays' lanes are taken over.
//   - sweep.go (sql_sweep.go): the sweeper, every PollInterval: due lanes,
//     new events and, every 30 s, every pending organization.
//   - prune.go, history.go (sql_prune.go, sql_history.go): the pruner:
//     hourly history partitions made ahead and dropped whole, idle lanes
//     and dead relays' rows pruned.
//   - listener.go: the listener, LISTEN for the producers' NOTIFY on a
//     connection of its own, reconnecting with backoff; every reconnect
//     asks the sweeper for a full sweep.
//
// Collections drive one more, with no loop of its own: backlog.go
// (sql_backlog.go), the backlog gauges' sampler, one cached query per
// collection at most. telemetry.go holds the spans and counters.
//
// Beside Run: drain.go (DrainOrganization, one lane on demand, used by the
// Temporal adapter), delegate.go (hand lanes to another Signaler instead of
// working them), admin.go, events.go and deadletters.go (the Admin API).
//
// Time: the relay's own waiting and measuring reads one clock, chosen once
// in Config's defaults (tests set a fake and move it); leases, due times
// and liveness are compared with the database's now(), which every replica
// shares.
package relay
