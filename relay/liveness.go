package relay

import (
	"context"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"
	"github.com/jonboulle/clockwork"

	"github.com/outboxrelay/outbox/internal/testsignal"
)

// Liveness. A running relay heartbeats its row in outbox_relays every
// HeartbeatInterval, alive until LivenessTimeout later. Its lanes record it
// as their holder, and another relay may take a lane over as soon as the
// holder's row goes stale, long before the lease runs out: so a replica
// that dies (SIGKILL, a lost host, a partition) stalls its organizations
// for about LivenessTimeout, not LeaseDuration.
//
// Safety: a relay stops starting Svix calls (it fences itself) once its
// last successful heartbeat was sent more than 3/4 of LivenessTimeout ago.
// That moment comes, on any clock, before its row goes stale, because the
// row's alive_until was computed by the database after the heartbeat was
// sent. Calls already in flight may finish after a takeover; the new holder
// sends the same eventId and Idempotency-Key, which Svix deduplicates, and
// every settlement stays fenced by the lease token.

// heartbeatAppName names the heartbeat connection in pg_stat_activity.
const heartbeatAppName = "outbox relay heartbeat"

// heartbeater proves one relay alive over a connection of its own, dialled
// apart from the pool (one more server connection, as LISTEN's): the sweep,
// pruning and the backlog queries may keep every pool connection busy for
// seconds, which must never fence a healthy relay.
//
// It is a service of its own: it needs the database's address, the
// queries, a clock, a logger and a callback for the lanes of dead relays,
// nothing of the lanes themselves.
type heartbeater struct {
	connConfig *pgx.ConnConfig
	q          queries
	clock      clockwork.Clock
	log        *slog.Logger
	instance   pgtype.UUID // this relay's row in outbox_relays
	name       string      // Config.ID
	interval   time.Duration
	timeout    time.Duration // Config.LivenessTimeout
	// takeOver queues dead relays' lanes, due now (and has the sweep look
	// for what their pages held).
	takeOver func(orgs ...string)
	// svixHealth reports what Svix answered lately, as JSON, for the
	// relay's row (Admin.Relays).
	svixHealth func() []byte
	// beaten is signalled after each heartbeat with its error (tests).
	beaten *testsignal.Signal[error]
	// revived is called after a heartbeat that ends a fence: the relay
	// may claim again what it queued meanwhile.
	revived func()

	// lastBeat is when the last successful heartbeat was sent, in unix
	// nanoseconds.
	lastBeat atomic.Int64
	conn     *pgx.Conn // nil until dialled, and after a failure
}

// newHeartbeater returns the heartbeater of a relay configured by cfg
// (defaults applied), dialling as the pool does.
func newHeartbeater(connConfig *pgx.ConnConfig, q queries, cfg Config, instance pgtype.UUID,
	takeOver func(orgs ...string), svixHealth func() []byte, beaten *testsignal.Signal[error]) *heartbeater {
	return &heartbeater{connConfig: connConfig, q: q, clock: cfg.clock, log: cfg.Logger, instance: instance, name: cfg.ID,
		interval: cfg.HeartbeatInterval, timeout: cfg.LivenessTimeout, takeOver: takeOver, svixHealth: svixHealth, beaten: beaten}
}

// heartbeatLoop heartbeats until ctx ends, and queues the lanes of relays
// it finds dead. Run ends ctx only once its last settlement is done: a
// relay that stops gracefully stays alive until its work is recorded.
func (h *heartbeater) loop(ctx context.Context) {
	defer h.close()
	tick := h.clock.NewTicker(h.interval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.Chan():
			if err := h.beat(ctx); err != nil && ctx.Err() == nil {
				h.log.WarnContext(ctx, "relay: heartbeat failed", "error", err, "fenced", !h.fresh())
			}
		}
	}
}

// beat sends one heartbeat and, once it has committed, finds the relays
// that died since a live relay last looked.
func (h *heartbeater) beat(ctx context.Context) (err error) {
	defer func() { h.beaten.Signal(err) }()
	sent := h.clock.Now()
	ctx, cancel := context.WithTimeout(ctx, h.timeout)
	defer cancel()
	if h.conn == nil {
		cfg := h.connConfig.Copy()
		cfg.RuntimeParams["application_name"] = heartbeatAppName
		conn, err := pgx.ConnectConfig(ctx, cfg)
		if err != nil {
			return err
		}
		h.conn = conn
	}
	// A statement of its own, committed when it returns: the time it was
	// sent is what alive() measures from, so it must not count a heartbeat
	// that a later statement of the same transaction could roll back.
	// The health goes as text: []byte would go as bytea in the simple protocol.
	if _, err := h.conn.Exec(ctx, h.q.heartbeat, h.instance, h.name, h.timeout.Milliseconds(), string(h.svixHealth())); err != nil {
		h.close()
		return err
	}
	fenced := !h.fresh()
	h.lastBeat.Store(sent.UnixNano())
	if fenced && h.revived != nil {
		h.revived()
	}
	rows, err := h.conn.Query(ctx, h.q.mourn, h.instance)
	if err != nil {
		h.close()
		return err
	}
	dead, err := pgx.CollectRows(rows, pgx.RowTo[pgtype.UUID])
	if err != nil || len(dead) == 0 {
		return err
	}
	rows, err = h.conn.Query(ctx, h.q.orphanedLanes, dead)
	if err != nil {
		h.close()
		return err
	}
	orgs, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return err
	}
	h.log.InfoContext(ctx, "relay: a replica stopped heartbeating; taking its lanes over", "relays", len(dead), "lanes", len(orgs))
	h.takeOver(orgs...) // due now, whatever this relay thought they waited for
	return nil
}

// close hangs up the heartbeat connection; the next beat dials again.
func (h *heartbeater) close() {
	if h.conn == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	_ = h.conn.Close(ctx)
	h.conn = nil
}

// alive reports whether this relay may start Svix calls: always, for a
// relay that is not heartbeating (DrainOrganization without Run: its lanes
// have no holder and wait for their leases); else while its last heartbeat
// was sent within 3/4 of LivenessTimeout.
func (r *Relay) alive() bool {
	return !r.heartbeating.Load() || r.beats.fresh()
}

// fresh reports whether the last successful heartbeat was sent within 3/4
// of the liveness timeout.
func (h *heartbeater) fresh() bool {
	return h.clock.Since(time.Unix(0, h.lastBeat.Load())) < h.timeout*3/4
}

// holder is the instance a claim records: this relay's while it
// heartbeats, none otherwise.
func (r *Relay) holder() pgtype.UUID {
	if !r.heartbeating.Load() {
		return pgtype.UUID{}
	}
	return r.instance
}

// newInstance names one Relay's heartbeat row.
func newInstance() pgtype.UUID { return pgtype.UUID{Bytes: uuid.New(), Valid: true} }

// leave removes this relay's heartbeat row once it has stopped.
func (r *Relay) leave() {
	ctx, cancel := context.WithTimeout(context.Background(), backgroundTimeout)
	defer cancel()
	if _, err := r.pool.Exec(ctx, r.q.leave, r.instance); err != nil {
		r.log.Warn("relay: could not remove its heartbeat row; it goes stale by itself", "error", err)
	}
}
