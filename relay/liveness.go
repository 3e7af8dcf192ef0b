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

// heartbeatLoop heartbeats until ctx ends, and queues the lanes of relays
// it finds dead.
func (r *Relay) heartbeatLoop(ctx context.Context) {
	tick := time.NewTicker(r.cfg.HeartbeatInterval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
			if err := r.beat(ctx); err != nil && ctx.Err() == nil {
				r.log.WarnContext(ctx, "relay: heartbeat failed", "error", err, "fenced", !r.alive())
			}
		}
	}
}

// beat sends one heartbeat, and finds the relays that died since a live
// relay last looked.
func (r *Relay) beat(ctx context.Context) error {
	sent := time.Now()
	ctx, cancel := context.WithTimeout(ctx, r.cfg.LivenessTimeout)
	defer cancel()
	batch := &pgx.Batch{}
	batch.Queue(r.q.heartbeat, r.instance, r.cfg.ID, r.cfg.LivenessTimeout.Milliseconds())
	batch.Queue(r.q.mourn, r.instance)
	br := r.pool.SendBatch(ctx, batch)
	if _, err := br.Exec(); err != nil {
		_ = br.Close()
		return err
	}
	r.lastBeat.Store(sent.UnixNano())
	rows, err := br.Query()
	var dead []pgtype.UUID
	if err == nil {
		dead, err = pgx.CollectRows(rows, pgx.RowTo[pgtype.UUID])
	}
	if cerr := br.Close(); err == nil {
		err = cerr
	}
	if err != nil || len(dead) == 0 {
		return err
	}
	rows, err = r.pool.Query(ctx, r.q.orphanedLanes, dead)
	if err != nil {
		return err
	}
	orgs, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return err
	}
	r.log.InfoContext(ctx, "relay: a replica stopped heartbeating; taking its lanes over", "relays", len(dead), "lanes", len(orgs))
	r.enqueue(orgs...)
	return nil
}

// alive reports whether this relay may start Svix calls: always, for a
// relay that is not heartbeating (DrainOrganization without Run: its lanes
// have no holder and wait for their leases); else while its last heartbeat
// was sent within 3/4 of LivenessTimeout.
func (r *Relay) alive() bool {
	if !r.heartbeating.Load() {
		return true
	}
	return time.Since(time.Unix(0, r.lastBeat.Load())) < r.cfg.LivenessTimeout*3/4
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
