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
package relay

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5/pgtype"
	"github.com/jackc/pgx/v5/pgxpool"
	svix "github.com/svix/svix-webhooks/go"
	"golang.org/x/time/rate"

	"github.com/outboxrelay/outbox"
)

const levelDebug = slog.LevelDebug

// ErrAlreadyRunning is returned by Run when the Relay is already running.
var ErrAlreadyRunning = errors.New("relay: already running")

// Relay delivers outbox events to Svix. It implements outbox.Signaler, for
// producers in the same process. Create it with New; it is safe for
// concurrent use.
type Relay struct {
	pool    *pgxpool.Pool
	cfg     Config
	q       queries
	svix    *svix.Svix
	log     *slog.Logger
	limiter *rate.Limiter

	sendSlots  chan struct{}
	claimSlots chan struct{}
	wake       chan struct{}

	mu      sync.Mutex
	queue   []string             // organizations waiting for a turn, FIFO
	queued  map[string]struct{}  // members of queue
	working map[string]*laneWork // lanes in a turn now
	running atomic.Bool

	authPausedUntil atomic.Int64 // unix nanoseconds
	listening       atomic.Bool  // the LISTEN connection is up
	instance        pgtype.UUID  // this Relay's heartbeat row in outbox_relays
	heartbeating    atomic.Bool  // Run is heartbeating: claims record the instance
	lastBeat        atomic.Int64 // unix nanoseconds when the last successful heartbeat was sent
	lastSweep       atomic.Int64 // unix nanoseconds of the last sweep that reached the database
	stats           stats
	health          health // recent Svix calls, for quick retries
}

var _ outbox.Signaler = (*Relay)(nil)

// laneWork is a lane in a turn.
type laneWork struct {
	// signalledAgain: a signal arrived during the turn, so the lane runs
	// again when the turn ends (unless a pause holds it).
	signalledAgain bool
}

// New returns a Relay reading outbox tables through pool. It checks cfg
// and returns an error wrapping ErrInvalidConfig naming every bad field.
//
// The pool needs at least MinPoolConns connections, and PoolConns(cfg) for
// lane turns never to wait for one; the LISTEN connection is dialled apart
// (one more server connection).
func New(pool *pgxpool.Pool, cfg Config) (*Relay, error) {
	if pool == nil {
		return nil, fmt.Errorf("relay: %w", &ConfigError{Field: "pool", Rule: "must not be nil"})
	}
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	maxConns := pool.Config().MaxConns
	if maxConns < MinPoolConns {
		return nil, fmt.Errorf("relay: %w", &ConfigError{Field: "pool",
			Rule: fmt.Sprintf("MaxConns must be at least %d (the sweep and one lane turn), got %d; %d lets lane turns never wait", MinPoolConns, maxConns, PoolConns(cfg))})
	}
	client, err := newSvixClient(cfg)
	if err != nil {
		return nil, fmt.Errorf("relay: svix client: %w", err)
	}
	r := &Relay{
		pool:      pool,
		cfg:       cfg,
		q:         newQueries(cfg.Schema),
		svix:      client,
		log:       cfg.Logger,
		sendSlots: make(chan struct{}, cfg.Concurrency),
		// Claims take at most half the pool, so settlements (which free
		// lanes) and the sweep always find a connection.
		claimSlots: make(chan struct{}, max(1, maxConns/2)),
		wake:       make(chan struct{}, 1),
		queued:     map[string]struct{}{},
		working:    map[string]*laneWork{},
		instance:   newInstance(),
	}
	if cfg.RateLimit > 0 {
		r.limiter = rate.NewLimiter(rate.Limit(cfg.RateLimit), max(1, int(cfg.RateLimit/10)))
	}
	return r, nil
}

// SignalRelay asks for a turn of the organization's lane soon. It never
// blocks and bursts coalesce: an organization is queued at most once.
func (r *Relay) SignalRelay(_ context.Context, organizationID string) error {
	r.enqueue(organizationID)
	return nil
}

func (r *Relay) enqueue(orgs ...string) {
	r.mu.Lock()
	for _, org := range orgs {
		if w, busy := r.working[org]; busy {
			w.signalledAgain = true
			continue
		}
		if _, ok := r.queued[org]; ok {
			continue
		}
		r.queued[org] = struct{}{}
		r.queue = append(r.queue, org)
	}
	r.mu.Unlock()
	r.poke()
}

func (r *Relay) poke() {
	select {
	case r.wake <- struct{}{}:
	default:
	}
}

// Run delivers events until ctx ends. Then it stops claiming lanes, waits
// up to ShutdownTimeout for in-flight calls, settles what they did,
// releases its leases and returns nil. Any number of Relays, in any
// number of processes, may run against one database.
func (r *Relay) Run(ctx context.Context) error {
	if !r.running.CompareAndSwap(false, true) {
		return ErrAlreadyRunning
	}
	defer r.running.Store(false)
	r.log.InfoContext(ctx, "relay: starting", "id", r.cfg.ID, "concurrency", r.cfg.Concurrency, "pool_max_conns", r.pool.Config().MaxConns,
		"per_org_in_flight", r.cfg.PerOrgInFlight, "poll_interval", r.cfg.PollInterval, "poll_only", r.cfg.PollOnly)

	// Svix calls and settlements outlive ctx by up to ShutdownTimeout.
	callCtx, cancelCalls := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelCalls()

	// Heartbeat before the first claim, so the lanes this relay takes name a
	// live holder. A database that does not answer yet leaves the relay
	// fenced (no call starts) until a heartbeat gets through.
	r.heartbeating.Store(true)
	defer r.heartbeating.Store(false)
	if err := r.beat(ctx); err != nil && ctx.Err() == nil {
		r.log.WarnContext(ctx, "relay: first heartbeat failed; no call starts until one gets through", "error", err)
	}
	var bg sync.WaitGroup
	bg.Add(1)
	go func() { defer bg.Done(); r.heartbeatLoop(ctx) }()
	if !r.cfg.PollOnly {
		bg.Add(1)
		go func() { defer bg.Done(); r.listen(ctx) }()
	}
	bg.Add(2)
	go func() { defer bg.Done(); r.sweepLoop(ctx) }()
	go func() { defer bg.Done(); r.pruneLoop(ctx) }()

	var lanes sync.WaitGroup
	laneDone := make(chan struct{}, 1)
	r.dispatch(ctx, callCtx, &lanes, laneDone)

	r.log.InfoContext(ctx, "relay: stopping, settling in-flight work", "timeout", r.cfg.ShutdownTimeout)
	if !waitTimeout(&lanes, r.cfg.ShutdownTimeout) {
		cancelCalls() // interrupt in-flight calls; their events are settled as unsent
		lanes.Wait()
	}
	bg.Wait()
	r.leave()
	r.lastSweep.Store(0)
	r.log.InfoContext(ctx, "relay: stopped", "stats", r.Stats())
	return nil
}

// dispatch starts lane turns from the queue until ctx ends.
func (r *Relay) dispatch(ctx, callCtx context.Context, lanes *sync.WaitGroup, laneDone chan struct{}) {
	for {
		for {
			org, ok := r.nextLane()
			if !ok {
				break
			}
			lanes.Add(1)
			go func() {
				defer lanes.Done()
				r.runLane(ctx, callCtx, org)
				select {
				case laneDone <- struct{}{}:
				default:
				}
			}()
		}
		select {
		case <-ctx.Done():
			return
		case <-r.wake:
		case <-laneDone:
		}
	}
}

// nextLane pops the next organization to work, if a lane may start now.
func (r *Relay) nextLane() (string, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.queue) == 0 || len(r.working) >= r.cfg.Concurrency || r.authPaused() || !r.alive() {
		return "", false
	}
	org := r.queue[0]
	r.queue[0] = ""
	r.queue = r.queue[1:]
	delete(r.queued, org)
	r.working[org] = &laneWork{}
	return org, true
}

// runLane works one turn and puts the organization back in the queue when
// it has more to do now or was signalled meanwhile.
func (r *Relay) runLane(ctx, callCtx context.Context, org string) {
	rep, err := r.turn(ctx, callCtx, org, time.Time{})
	if err != nil && ctx.Err() == nil {
		r.log.WarnContext(callCtx, "relay: lane turn failed", "organization_id", org, "error", err)
	}
	r.mu.Lock()
	signalled := r.working[org].signalledAgain
	delete(r.working, org)
	r.mu.Unlock()
	if ctx.Err() == nil && err == nil && (rep.more || (signalled && !rep.rateLimited && !rep.authFailed)) {
		r.enqueue(org)
	} else {
		r.poke()
	}
}

func waitTimeout(wg *sync.WaitGroup, d time.Duration) bool {
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
		return true
	case <-time.After(d):
		return false
	}
}

// Ready reports whether the relay is running and its wake-up path works:
// the LISTEN connection is up (or PollOnly is set) and the last sweep
// reached the database.
func (r *Relay) Ready() bool {
	return r.running.Load() && r.alive() && r.sweptRecently() && (r.cfg.PollOnly || r.listening.Load())
}

func (r *Relay) authPaused() bool {
	return time.Now().UnixNano() < r.authPausedUntil.Load()
}

// pauseForAuth holds every lane after a 401/403: the token is bad or
// revoked, which no retry of the event can fix.
func (r *Relay) pauseForAuth(res result) {
	until := time.Now().Add(r.cfg.AuthPause).UnixNano()
	prev := r.authPausedUntil.Load()
	if prev >= until-int64(time.Second) || !r.authPausedUntil.CompareAndSwap(prev, until) {
		return // another lane just paused
	}
	r.stats.authFailures.Add(1)
	r.log.Error("relay: Svix refused the API token; delivery paused, nothing is dead-lettered. Check SvixToken.",
		"status", res.status, "pause", r.cfg.AuthPause)
}
