package relay

import (
	"context"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"
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
type heartbeater struct {
	r    *Relay
	conn *pgx.Conn // nil until dialled, and after a failure
}

// heartbeatLoop heartbeats until ctx ends, and queues the lanes of relays
// it finds dead. Run ends ctx only once its last settlement is done: a
// relay that stops gracefully stays alive until its work is recorded.
func (h *heartbeater) loop(ctx context.Context) {
	defer h.close()
	tick := h.r.clock.NewTicker(h.r.cfg.HeartbeatInterval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.Chan():
			if err := h.beat(ctx); err != nil && ctx.Err() == nil {
				h.r.log.WarnContext(ctx, "relay: heartbeat failed", "error", err, "fenced", !h.r.alive())
			}
		}
	}
}

// beat sends one heartbeat and, once it has committed, finds the relays
// that died since a live relay last looked.
func (h *heartbeater) beat(ctx context.Context) (err error) {
	r := h.r
	defer func() { r.testSignals.Beat.Signal(err) }()
	sent := r.clock.Now()
	ctx, cancel := context.WithTimeout(ctx, r.cfg.LivenessTimeout)
	defer cancel()
	if h.conn == nil {
		cfg := r.pool.Config().ConnConfig.Copy()
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
	if _, err := h.conn.Exec(ctx, r.q.heartbeat, r.instance, r.cfg.ID, r.cfg.LivenessTimeout.Milliseconds()); err != nil {
		h.close()
		return err
	}
	r.lastBeat.Store(sent.UnixNano())
	rows, err := h.conn.Query(ctx, r.q.mourn, r.instance)
	if err != nil {
		h.close()
		return err
	}
	dead, err := pgx.CollectRows(rows, pgx.RowTo[pgtype.UUID])
	if err != nil || len(dead) == 0 {
		return err
	}
	rows, err = h.conn.Query(ctx, r.q.orphanedLanes, dead)
	if err != nil {
		h.close()
		return err
	}
	orgs, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return err
	}
	r.log.InfoContext(ctx, "relay: a replica stopped heartbeating; taking its lanes over", "relays", len(dead), "lanes", len(orgs))
	r.enqueueDue(orgs...) // due now, whatever this relay thought they waited for
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
	if !r.heartbeating.Load() {
		return true
	}
	return r.clock.Since(time.Unix(0, r.lastBeat.Load())) < r.cfg.LivenessTimeout*3/4
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
