package relay

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/outboxrelay/outbox/internal/telemetry"
)

// lane is one organization's turn: its lease, the events it claimed and,
// once sent, what became of them.
type lane struct {
	org       string
	token     pgtype.UUID
	claimedAt time.Time
	events    []pendingEvent
	// cutByBytes: more events were due but BatchMaxBytes stopped the claim.
	cutByBytes bool
	results    []result
	// blocked: a failure holds the lane (its head waits for a retry, a
	// pause, the resolver), so no other turn should follow at once.
	blocked bool
	rep     turnReport
	// turn is the lane turn's span, which the settlement links to.
	turn trace.SpanContext
	// page, when set, holds the organization instead of a lane row (its
	// token is NULL): the lane is settled with its page (page.go).
	page *page
}

// round is what one claim (one round trip) got for the organizations it asked for.
type round struct {
	// lanes were taken; a lane whose head is not due has no events, and is
	// released at once with its due time.
	lanes []*lane
	// waiting are lanes not taken (another holder, a pause), with the time
	// before which a signal for them need cost no database work.
	waiting map[string]time.Time
	// held are the organizations among waiting whose page lock another
	// transaction holds (a page, or another relay's claim).
	held []string
	// empty organizations have no events at all.
	empty []string
	// again are organizations with events and no lane: in the instant after
	// this claim's sqlCreateLanes read the table, their lane was deleted (by
	// a release or the pruner) or their first event committed. They are
	// claimed again.
	again []string
}

// claim takes the leases of orgs' lanes and claims their due head events,
// in one round trip, however many organizations: every lane taken shares
// one lease token.
func (r *Relay) claim(ctx context.Context, orgs []string) (rd round, err error) {
	ctx, span := r.tel.startSpan(ctx, "claim outbox_lanes", telemetry.Organizations.Int(len(orgs)))
	defer func() {
		span.SetAttributes(attribute.Int("outbox.lanes.taken", len(rd.lanes)))
		if err != nil {
			span.RecordError(err)
			span.SetStatus(codes.Error, err.Error())
		}
		span.End()
	}()
	r.stats.claims.Add(1)
	token := pgtype.UUID{Bytes: uuid.New(), Valid: true}
	claimedAt := r.clock.Now()
	batch := &pgx.Batch{}
	batch.Queue(sqlWriteSettings)
	holder := r.holder() // read once: the new lanes and the leased ones name the same holder
	batch.Queue(r.q.createLanes, orgs, token, r.cfg.LeaseDuration.Milliseconds(), r.cfg.ID, holder)
	batch.Queue(r.q.lease, orgs, token, r.cfg.LeaseDuration.Milliseconds(), r.cfg.ID, holder)
	batch.Queue(r.q.heads, orgs, token, r.cfg.BatchSize, r.cfg.BatchMaxBytes)
	batch.Queue(r.q.laneStates, orgs, token)
	br := r.pool.SendBatch(ctx, batch)
	defer func() { _ = br.Close() }() // closed and checked below on success

	for range 3 { // the settings, the new lanes, the leases
		if _, err := br.Exec(); err != nil {
			return round{}, fmt.Errorf("relay: claim: %w", err)
		}
	}
	byOrg := map[string]*lane{}
	rows, err := br.Query()
	if err != nil {
		return round{}, fmt.Errorf("relay: claim: %w", err)
	}
	var (
		org     string
		ev      pendingEvent
		id      pgtype.UUID
		claimed bool
	)
	_, err = pgx.ForEachRow(rows, []any{&org, &ev.id, &id, &ev.eventType, &ev.payload, &ev.attempts, &ev.createdAt, &claimed, &ev.traceparent, &ev.tracestate, &ev.channels, &ev.tags, &ev.lastError}, func() error {
		ln := byOrg[org]
		if ln == nil {
			ln = &lane{org: org, token: token, claimedAt: claimedAt}
			byOrg[org] = ln
		}
		if claimed {
			ev.eventID = id.Bytes
			ln.events = append(ln.events, ev)
		} else { // due, but past BatchMaxBytes
			ln.cutByBytes = true
		}
		ev.payload = nil // ForEachRow reuses the scan targets
		return nil
	})
	if err != nil {
		return round{}, fmt.Errorf("relay: claim: %w", err)
	}
	rd.waiting = map[string]time.Time{}
	var (
		taken, hasEvents, hasLane, held bool
		leasedUntil, pausedUntil, dueAt *time.Time
	)
	rows, err = br.Query()
	if err != nil {
		return round{}, fmt.Errorf("relay: claim: lane states: %w", err)
	}
	now := r.clock.Now()
	_, err = pgx.ForEachRow(rows, []any{&org, &taken, &leasedUntil, &pausedUntil, &dueAt, &hasEvents, &hasLane, &held}, func() error {
		switch {
		case held:
			// Another transaction holds its page lock: a page sending its
			// event (whose settlement makes its lane due if anything is
			// left), or another relay's claim. Signals meanwhile cost
			// nothing; the sweep after that queues it again, in case the
			// page dies (a rolled-back page makes no lane due).
			rd.waiting[org] = now.Add(r.cfg.PollInterval)
			rd.held = append(rd.held, org)
		case !hasLane && hasEvents:
			rd.again = append(rd.again, org)
		case taken:
			ln := byOrg[org]
			if ln == nil { // taken, but its head is not due
				ln = &lane{org: org, token: token, claimedAt: claimedAt}
				byOrg[org] = ln
			}
			rd.lanes = append(rd.lanes, ln)
		case pausedUntil != nil && pausedUntil.After(now):
			rd.waiting[org] = *pausedUntil
		case leasedUntil != nil && leasedUntil.After(now):
			// Another holder works it; its release records the lane's due
			// time, which the sweep reads. Signals meanwhile cost nothing.
			rd.waiting[org] = now.Add(r.cfg.PollInterval)
		case hasEvents:
			// Free, but another relay's claim or settlement had it locked:
			// that relay is working it (its release records the lane's due
			// time, which the sweep reads).
			rd.waiting[org] = now.Add(r.cfg.PollInterval)
		default: // free and not taken, or no lane: nothing to deliver
			rd.empty = append(rd.empty, org)
		}
		return nil
	})
	if err != nil {
		return round{}, fmt.Errorf("relay: claim: lane states: %w", err)
	}
	if err := br.Close(); err != nil {
		return round{}, fmt.Errorf("relay: claim: %w", err)
	}
	for _, ln := range rd.lanes {
		// The claim's rows come in no particular order.
		slices.SortFunc(ln.events, func(a, b pendingEvent) int { return cmp.Compare(a.id, b.id) })
	}
	return rd, nil
}
