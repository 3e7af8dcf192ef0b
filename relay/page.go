package relay

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"
	"github.com/jackc/pgx/v5/pgxpool"
	"go.opentelemetry.io/otel/codes"

	"github.com/outboxrelay/outbox/internal/telemetry"
)

const (
	// pageMinOrgs is the smallest claim round a page is tried for: a
	// page costs a round trip more than a lane claim, and pays off over a
	// backlog (rounds of claimRoundMin and more), not for the few
	// organizations a steady trickle of signals brings.
	pageMinOrgs = claimRoundMin
	// pageRoundMax bounds the organizations of a page's claim round: a
	// page is a claim round (claimRoundMax), but one that may go beyond
	// Concurrency lanes sending, up to lanesPerCall × Concurrency held at
	// once (takeQueued): each of its organizations has one event.
	pageRoundMax = claimRoundMax
	// maxPagesInFlight bounds the pages open at once: each holds a pool
	// connection until it is settled. Measured at 20,000 single-event
	// organizations (2026-12-07): 2 pages of up to 128 sent 70% of the
	// events as pages, 4 of up to 64 sent 96%.
	maxPagesInFlight = 4
	// minPagePoolConns is the smallest pool pages are used with.
	minPagePoolConns = 4
)

// pagesInFlight is how many pages a relay with a pool of maxConns may
// have open at once: half the pool, at most maxPagesInFlight, so claims,
// the sweep and settlements always find a connection (a page settles on
// its own). 0 turns pages off.
func pagesInFlight(maxConns int32) int {
	if maxConns < minPagePoolConns {
		return 0
	}
	return min(maxPagesInFlight, int(maxConns/2))
}

// page is an open transaction holding the page locks of organizations
// with a single pending event (sql_pages.go). Each organization is worked
// as a lane without a lane row (lane.page set), and the page is settled,
// and committed, by the last of them to finish.
type page struct {
	conn  *pgxpool.Conn
	lanes []*lane
	// stopPings ends the page's keep-alive (keepAlive); pinged is closed
	// once it has ended.
	stopPings, pinged chan struct{}
	stopOnce          sync.Once
	// lost is set once a ping failed: the session is gone, and the page's
	// lanes start no more calls (their events would be sent again).
	lost atomic.Bool

	mu   sync.Mutex
	left int // lanes not finished yet
	done chan struct{}
	due  map[string]time.Time
	err  error
}

// claimPage opens a page for a claim round's orgs, with the page slot the
// round took (takeQueued). It returns the page (nil: none, every
// organization goes to the lane claim, and the slot is given back) and the
// organizations it did not take. A failure is logged, and leaves every
// organization to the lane claim.
func (r *Relay) claimPage(ctx context.Context, orgs []string) (*page, []string) {
	pg, err := r.openPage(ctx, orgs)
	if err != nil && ctx.Err() == nil {
		r.log.WarnContext(ctx, "relay: page claim failed; its organizations go to lane claims", "organizations", len(orgs), "error", err)
	}
	if err == nil {
		r.notePage(pg, len(orgs))
	}
	if pg == nil {
		<-r.pageSlots
		return nil, orgs
	}
	r.stats.pages.Add(1)
	in := make(map[string]bool, len(pg.lanes))
	for _, ln := range pg.lanes {
		in[ln.org] = true
	}
	rest := make([]string, 0, len(orgs)-len(pg.lanes))
	for _, org := range orgs {
		if !in[org] {
			rest = append(rest, org)
		}
	}
	return pg, rest
}

// notePage counts a page round that took under a quarter of its asked
// organizations as a miss: after n misses in a row, the next 2^n rounds
// (at most 64) skip pages. A backlog of deep organizations, which no page
// takes (more than one event each), is left to the lanes, rather than
// paying a page's probe, and its round trips, on every round (measured at
// 2,000 organizations of 10 events: 0.51-0.55x of the raw loop with a
// page tried on every round, against 0.60x without pages).
func (r *Relay) notePage(pg *page, asked int) {
	taken := 0
	if pg != nil {
		taken = len(pg.lanes)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if taken*4 >= asked {
		r.pageMisses, r.pageSkip = 0, 0
		return
	}
	r.pageMisses = min(r.pageMisses+1, 6)
	r.pageSkip = 1 << r.pageMisses
}

// openPage begins a page's transaction, takes the page locks of the
// eligible organizations among orgs and reads their events, in two round
// trips. It returns nil, with the transaction ended, when it locked none.
func (r *Relay) openPage(ctx context.Context, orgs []string) (pg *page, err error) {
	ctx, span := r.tel.startSpan(ctx, "claim page outbox_events", telemetry.Organizations.Int(len(orgs)))
	defer func() {
		if err != nil {
			span.RecordError(err)
			span.SetStatus(codes.Error, err.Error())
		}
		span.End()
	}()
	claimedAt := r.clock.Now()
	conn, err := r.pool.Acquire(ctx)
	if err != nil {
		return nil, fmt.Errorf("relay: page: %w", err)
	}
	defer func() {
		if pg == nil {
			endPage(conn)
		}
	}()
	locked, err := r.lockPage(ctx, conn, orgs)
	if err != nil || len(locked) == 0 {
		return nil, err
	}
	events, err := r.readPage(ctx, conn, locked)
	if err != nil {
		return nil, err
	}
	pg = &page{conn: conn, left: len(locked), done: make(chan struct{})}
	for _, org := range locked {
		ln := &lane{org: org, claimedAt: claimedAt, page: pg}
		if ev, ok := events[org]; ok {
			ln.events = []pendingEvent{ev}
		}
		pg.lanes = append(pg.lanes, ln)
	}
	r.keepAlive(pg)
	return pg, nil
}

// keepAlive pings the page's session every HeartbeatInterval until the
// page is settled, for LeaseDuration at the most. The server ends a page
// left idle for LivenessTimeout (sqlPageTimeout), and frees its
// organizations at once, nothing of it written: so a relay that hangs or
// is cut off by the network holds its pages' organizations for about as
// long as its lanes, which other relays take over once its heartbeat row
// is LivenessTimeout old; and a page one of whose lanes never finishes (a
// Resolver or an HTTP client that ignores its context) for about its
// lease, as a lane's. The pings keep the server's time, not the relay's
// clock.
func (r *Relay) keepAlive(pg *page) {
	pg.stopPings, pg.pinged = make(chan struct{}), make(chan struct{})
	go func() {
		defer close(pg.pinged)
		tick := time.NewTicker(r.cfg.HeartbeatInterval)
		defer tick.Stop()
		expires := time.Now().Add(r.cfg.LeaseDuration)
		for {
			select {
			case <-pg.stopPings:
				return
			case now := <-tick.C:
				if now.After(expires) {
					return // the server ends the page LivenessTimeout after the last ping
				}
			}
			ctx, cancel := context.WithTimeout(context.Background(), r.cfg.LivenessTimeout)
			err := pg.conn.Ping(ctx)
			cancel()
			r.testSignals.PagePinged.Signal(err)
			if err != nil {
				pg.lost.Store(true)
				return // the session is lost: the settlement fails, and the page is rolled back
			}
		}
	}()
}

// stopKeepAlive ends the page's pings, once one in flight has returned:
// the settlement may then use the page's connection.
func (pg *page) stopKeepAlive() {
	if pg.pinged == nil {
		return // never started
	}
	pg.stopOnce.Do(func() { close(pg.stopPings) })
	<-pg.pinged
}

// lockPage begins the page's transaction, sets its idle timeout and takes
// the page locks of the eligible organizations among orgs. It returns
// those it locked. The timeout comes before the locks: a relay cut off
// between this round trip and the read's leaves a session that holds them,
// which the server must end too.
func (r *Relay) lockPage(ctx context.Context, conn *pgxpool.Conn, orgs []string) ([]string, error) {
	b := &pgx.Batch{}
	b.Queue("BEGIN")
	b.Queue(sqlWriteSettings)
	b.Queue(r.pageTimeout)
	b.Queue(r.q.pageLock, orgs)
	br := conn.SendBatch(ctx, b)
	defer func() { _ = br.Close() }()
	for range 3 {
		if _, err := br.Exec(); err != nil {
			return nil, fmt.Errorf("relay: page: lock: %w", err)
		}
	}
	rows, err := br.Query()
	if err != nil {
		return nil, fmt.Errorf("relay: page: lock: %w", err)
	}
	locked, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, fmt.Errorf("relay: page: lock: %w", err)
	}
	return locked, br.Close()
}

// readPage reads the events of the organizations the page locked, with a
// snapshot after the locks, and then sets the page's idle timeout again: a
// utility statement, which replaces the read's portal and so leaves no
// snapshot behind while the page is sent (pgx never closes the unnamed
// portal, whose snapshot would hold back vacuum's horizon for the page's
// length).
func (r *Relay) readPage(ctx context.Context, conn *pgxpool.Conn, locked []string) (map[string]pendingEvent, error) {
	b := &pgx.Batch{}
	b.Queue(r.q.pageRead, locked)
	b.Queue(r.pageTimeout)
	br := conn.SendBatch(ctx, b)
	defer func() { _ = br.Close() }()
	rows, err := br.Query()
	if err != nil {
		return nil, fmt.Errorf("relay: page: read: %w", err)
	}
	events := make(map[string]pendingEvent, len(locked))
	var (
		org string
		ev  pendingEvent
		id  pgtype.UUID
	)
	_, err = pgx.ForEachRow(rows, []any{&org, &ev.id, &id, &ev.eventType, &ev.payload, &ev.attempts, &ev.createdAt,
		&ev.traceparent, &ev.tracestate, &ev.channels, &ev.tags, &ev.lastError}, func() error {
		ev.eventID = id.Bytes
		events[org] = ev
		ev.payload = nil // ForEachRow reuses the scan targets
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("relay: page: read: %w", err)
	}
	if _, err := br.Exec(); err != nil {
		return nil, fmt.Errorf("relay: page: idle timeout: %w", err)
	}
	return events, br.Close()
}

// sqlPageTimeout sets a page's idle_in_transaction_session_timeout to the
// relays' LivenessTimeout: a relay that stops pinging its page (keepAlive:
// it hangs, is cut off, or its heartbeats fail) has its session ended by
// the server, and its page rolled back, as its lanes would be taken over.
// A relay stops starting calls at half the lease and cuts them off at
// three quarters, as for lanes, and settles its page after.
func sqlPageTimeout(liveness time.Duration) string {
	return fmt.Sprintf("SET LOCAL idle_in_transaction_session_timeout = %d", liveness.Milliseconds())
}

// finishPage reports a page lane done sending, and waits for the page's
// settlement, which the last lane to finish makes. It returns what became
// of the lane's organization.
func (r *Relay) finishPage(ln *lane) settled {
	pg := ln.page
	pg.mu.Lock()
	pg.left--
	last := pg.left == 0
	pg.mu.Unlock()
	if last {
		pg.due, pg.err = r.settlePage(pg)
		close(pg.done)
	} else {
		<-pg.done
	}
	if pg.err != nil {
		return settled{err: pg.err}
	}
	return settled{due: pg.due[ln.org]}
}

// settlePage records every outcome of a page and commits it, in one round
// trip: the settlement statements of lanes, checked by the page's
// transaction rather than lease tokens, and a release that makes a lane
// due for each organization with something left (sqlPageRelease). It runs
// even while the relay shuts down. On a failure the page is rolled back:
// nothing of it is written, and its events are free again at once.
func (r *Relay) settlePage(pg *page) (due map[string]time.Time, err error) {
	defer func() { <-r.pageSlots }()
	pg.stopKeepAlive()
	var plan batchPlan
	for _, ln := range pg.lanes {
		plan.add(ln, r.planSettlement(ln.events, ln.results, &ln.rep))
	}
	ctx, cancel := context.WithTimeout(context.Background(), r.cfg.LeaseDuration/4)
	defer cancel()
	ctx, span := r.tel.startSpan(ctx, "settle page outbox_events", telemetry.Organizations.Int(len(pg.lanes)))
	defer func() {
		if err != nil {
			span.RecordError(err)
			span.SetStatus(codes.Error, err.Error())
		}
		span.End()
	}()
	b := plan.batch(r, &r.q.settlePages)
	b.Queue("COMMIT")
	due, err = r.sendSettlement(ctx, pg.conn, b, 1)
	endPage(pg.conn)
	if err != nil {
		return nil, fmt.Errorf("relay: settle a page of %d organization(s) (rolled back: its events will be sent again, deduplicated by eventId): %w", len(pg.lanes), err)
	}
	r.countSettled(ctx, pg.lanes, due)
	return due, nil
}

// endPage rolls back the page's transaction if it is still open, and gives
// its connection back to the pool (which closes it if the rollback did not
// get through).
func endPage(conn *pgxpool.Conn) {
	if !conn.Conn().IsClosed() && conn.Conn().PgConn().TxStatus() != 'I' {
		ctx, cancel := context.WithTimeout(context.Background(), backgroundTimeout)
		_, _ = conn.Exec(ctx, "ROLLBACK")
		cancel()
	}
	conn.Release()
}
