package relay

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5/pgtype"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jonboulle/clockwork"
	svix "github.com/svix/svix-webhooks/go"
	"golang.org/x/time/rate"

	"github.com/outboxrelay/outbox"
	"github.com/outboxrelay/outbox/internal/testsignal"
)

const levelDebug = slog.LevelDebug

// ErrAlreadyRunning is returned by Run when the Relay is already running.
var ErrAlreadyRunning = errors.New("already running")

// Relay delivers outbox events to Svix. It implements outbox.Signaler, for
// producers in the same process. Create it with New; it is safe for
// concurrent use.
type Relay struct {
	pool    *pgxpool.Pool
	cfg     Config
	q       queries
	svix    *svix.Svix
	pooled  *http.Transport // the Svix client's, when the relay made it
	log     *slog.Logger
	limiter *rate.Limiter

	sendSlots chan struct{}
	// turnSlots bounds the lane turns sending at once to Concurrency; the
	// lanes claimed ahead of a free slot wait for one here (see
	// claimAhead).
	turnSlots chan struct{}
	// drainSlots bounds the DrainOrganization calls working at once.
	drainSlots chan struct{}
	// settling counts lanes done sending, waiting for their settlement.
	settling atomic.Int64
	wake     chan struct{}
	settles  chan *settleRequest // lanes done sending, to the settler
	// pageSlots bounds the pages open at once (nil: Config.DisablePages,
	// or the pool is too small for pages).
	pageSlots chan struct{}
	// pageTimeout is the statement that sets a page's idle timeout.
	pageTimeout string

	mu      sync.Mutex
	queue   []string             // organizations waiting for a turn, FIFO
	queued  map[string]struct{}  // members of queue
	working map[string]*laneWork // lanes being claimed or in a turn now
	// waiting holds lanes whose next turn cannot come before a time (a
	// retry, a pause, another holder): a signal for them before then costs
	// no database work. The sweep, which reads due times from the
	// database, is not held back by it.
	waiting map[string]time.Time
	// rechecks are organizations a claim found held by another
	// transaction's page lock: the first sweep after their time queues
	// them again. A page that dies writes nothing the sweep could find
	// (no lane row), so without this a signal a claim dropped while the
	// page lasted would wait for the full pass.
	rechecks map[string]time.Time
	// pageMisses counts the page rounds in a row that took under a
	// quarter of their organizations; pageSkip is how many rounds are
	// left without a page after the last one (see notePage).
	pageMisses, pageSkip int
	running              atomic.Bool

	authPausedUntil atomic.Int64 // unix nanoseconds
	instance        pgtype.UUID  // this Relay's heartbeat row in outbox_relays
	heartbeating    atomic.Bool  // Run is heartbeating: claims record the instance
	stats           stats
	tel             *relayTelemetry
	health          health              // recent Svix calls, for quick retries
	svixHealth      *svixHealthRecorder // what Svix answered lately, for the heartbeat

	beats  *heartbeater // liveness
	pruner *pruner      // history partitions and pruning

	sweeper  *sweeper  // work no signal announced
	listener *listener // NOTIFY
	backlog  *backlogSampler

	clock clockwork.Clock // Config.clock

	// testSignals tell tests what the background loops did; inert in
	// production.
	testSignals testSignals
}

// testSignals are the relay's moments a test can wait for.
type testSignals struct {
	Swept  testsignal.Signal[struct{}] // a sweep ended (reached the database or not)
	Pruned testsignal.Signal[struct{}] // a prune tick ended
	Beat   testsignal.Signal[error]    // a heartbeat ended: its error, or nil
	// SlotGivenUp: a lane claimed ahead gave up waiting for a turn slot
	// (its organization).
	SlotGivenUp testsignal.Signal[string]
	// Rechecking: a claim found an organization held by another
	// transaction's page lock; a sweep will queue it again (its name).
	Rechecking testsignal.Signal[string]
	// PagePinged: a page's keep-alive pinged its session (the error, or
	// nil).
	PagePinged testsignal.Signal[error]
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
	tel := newRelayTelemetry(cfg)
	client, pooled, err := newSvixClient(cfg, tel)
	if err != nil {
		return nil, fmt.Errorf("relay: svix client: %w", err)
	}
	r := &Relay{
		pool:       pool,
		cfg:        cfg,
		q:          newQueries(cfg.Schema),
		svix:       client,
		pooled:     pooled,
		log:        cfg.Logger,
		sendSlots:  make(chan struct{}, cfg.Concurrency),
		turnSlots:  make(chan struct{}, cfg.Concurrency),
		drainSlots: make(chan struct{}, cfg.Concurrency),
		wake:       make(chan struct{}, 1),
		queued:     map[string]struct{}{},
		working:    map[string]*laneWork{},
		waiting:    map[string]time.Time{},
		rechecks:   map[string]time.Time{},
		instance:   newInstance(),
		tel:        tel,
		clock:      cfg.clock,
	}
	if n := pagesInFlight(maxConns); !cfg.DisablePages && n > 0 {
		r.pageSlots, r.pageTimeout = make(chan struct{}, n), sqlPageTimeout(cfg.LivenessTimeout)
	}
	r.svixHealth = newSvixHealthRecorder(cfg.clock)
	r.beats = newHeartbeater(pool.Config().ConnConfig, r.q, cfg, r.instance, r.takeOver, r.svixHealth.report, &r.testSignals.Beat)
	// A fenced relay claims nothing and leaves its queue as it is: the
	// heartbeat that ends the fence wakes the dispatcher, or the queue would
	// wait for the next sweep.
	r.beats.revived = r.poke
	r.pruner = newPruner(pool, r.q, cfg, &r.testSignals.Pruned)
	r.sweeper = newSweeper(r)
	r.listener = newListener(r)
	r.backlog = newBacklogSampler(pool, r.q, cfg)
	if cfg.RateLimit > 0 {
		r.limiter = rate.NewLimiter(rate.Limit(cfg.RateLimit), max(1, int(cfg.RateLimit/10)))
	}
	return r, nil
}

// SignalRelay asks for a turn of the organization's lane soon. It never
// blocks and bursts coalesce: an organization is queued at most once, and a
// lane known to be waiting (for a retry, a pause, another holder) is not
// queued before its time.
func (r *Relay) SignalRelay(_ context.Context, organizationID string) error {
	r.enqueue(organizationID)
	return nil
}

// SignalRelays is SignalRelay for many organizations at once
// (outbox.BatchSignaler): WithTx uses it after a commit.
func (r *Relay) SignalRelays(_ context.Context, organizationIDs []string) error {
	r.enqueue(organizationIDs...)
	return nil
}

var _ outbox.BatchSignaler = (*Relay)(nil)

// enqueue queues orgs for a turn, except lanes known to be waiting.
func (r *Relay) enqueue(orgs ...string) { r.queueLanes(orgs, false) }

// enqueueDue queues orgs the database says are due (the sweep, a dead
// holder's lanes), whatever this relay thought they were waiting for.
func (r *Relay) enqueueDue(orgs ...string) { r.queueLanes(orgs, true) }

func (r *Relay) queueLanes(orgs []string, due bool) {
	now := r.clock.Now()
	r.mu.Lock()
	for _, org := range orgs {
		if w, busy := r.working[org]; busy {
			w.signalledAgain = true
			continue
		}
		if until, ok := r.waiting[org]; ok {
			if !due && now.Before(until) {
				continue
			}
			delete(r.waiting, org)
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

// forgetPastWaits drops the waits whose time has come, so that r.waiting
// holds the lanes waiting now, not every organization ever seen, and
// queues the rechecks whose time has come.
func (r *Relay) forgetPastWaits() {
	now := r.clock.Now()
	var recheck []string
	r.mu.Lock()
	for org, until := range r.waiting {
		if !until.After(now) {
			delete(r.waiting, org)
		}
	}
	for org, at := range r.rechecks {
		if !at.After(now) {
			delete(r.rechecks, org)
			recheck = append(recheck, org)
		}
	}
	r.mu.Unlock()
	if len(recheck) > 0 {
		r.enqueueDue(recheck...)
	}
}

// takeOver queues the lanes of relays that stopped heartbeating, due now,
// and has the next sweep look at every pending organization: a dead
// relay's pages leave no row to take over (the server rolled them back),
// and their organizations may have been known to that relay alone (an
// in-process signal, a page settlement that failed there).
func (r *Relay) takeOver(orgs ...string) {
	r.enqueueDue(orgs...)
	r.sweeper.requestFull()
}

// recheckAfter has the first sweep after at queue org again (see
// Relay.rechecks).
func (r *Relay) recheckAfter(org string, at time.Time) {
	r.mu.Lock()
	r.rechecks[org] = at
	r.mu.Unlock()
	r.testSignals.Rechecking.Signal(org)
}

// wait notes that org's lane needs no turn before until.
func (r *Relay) wait(org string, until time.Time) {
	if until.IsZero() || !until.After(r.clock.Now()) {
		return
	}
	r.mu.Lock()
	r.waiting[org] = until
	r.mu.Unlock()
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
		return fmt.Errorf("relay: run: %w", ErrAlreadyRunning)
	}
	defer r.running.Store(false)
	r.log.InfoContext(ctx, "relay: starting", "id", r.cfg.ID, "concurrency", r.cfg.Concurrency, "pool_max_conns", r.pool.Config().MaxConns,
		"per_org_in_flight", r.cfg.PerOrgInFlight, "poll_interval", r.cfg.PollInterval, "poll_only", r.cfg.PollOnly,
		"pages", cap(r.pageSlots))

	// Svix calls and settlements outlive ctx by up to ShutdownTimeout.
	callCtx, cancelCalls := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelCalls()

	// The relay is fenced (it claims nothing, and no call starts) until its
	// first heartbeat gets through, so the lanes it takes name a live
	// holder; the heartbeat that ends the fence wakes the dispatcher. The
	// first sweep and the listener start meanwhile: a restarted relay finds
	// its backlog while its heartbeat connection is dialled.
	r.beats.lastBeat.Store(0)  // a relay run again is fenced too: its row went when it stopped
	r.heartbeating.Store(true) // until its row goes, below
	defer r.backlog.observe(r.tel)()
	// Heartbeats go on until the last settlement is done: a relay that
	// stopped heartbeating when ctx ended would have its lanes taken over
	// while its in-flight calls finish, and its settlements thrown away.
	beatCtx, stopBeats := context.WithCancel(context.WithoutCancel(ctx))
	defer stopBeats()
	var bg sync.WaitGroup
	firstBeat := make(chan struct{}) // closed once the first heartbeat returned
	bg.Add(1)
	go func() {
		defer bg.Done()
		err := r.beats.beat(ctx)
		close(firstBeat)
		if err != nil && ctx.Err() == nil {
			r.log.WarnContext(ctx, "relay: first heartbeat failed; no call starts until one gets through", "error", err)
		}
		r.beats.loop(beatCtx)
	}()
	if !r.cfg.PollOnly {
		bg.Add(1)
		go func() { defer bg.Done(); r.listener.Run(ctx) }()
	}
	bg.Add(2)
	go func() { defer bg.Done(); r.sweeper.Run(ctx) }()
	go func() { defer bg.Done(); r.pruner.Run(ctx) }()

	turns := newRunners()
	r.settles = make(chan *settleRequest, lanesPerCall*r.cfg.Concurrency)
	settled := make(chan struct{})
	go func() { defer close(settled); r.settleLoop(r.settles) }()
	if r.cfg.Delegate != nil {
		// Hand-offs wait for the first heartbeat, as they did before the
		// sweep started beside it: a Delegate whose workers drain through
		// this Relay would find it fenced until then.
		select {
		case <-firstBeat:
		case <-ctx.Done():
		}
		r.handOff(ctx)
	} else {
		r.dispatch(ctx, callCtx, turns)
	}

	r.log.InfoContext(ctx, "relay: stopping, settling in-flight work", "timeout", r.cfg.ShutdownTimeout)
	if !waitTimeout(r.clock, &turns.busy, r.cfg.ShutdownTimeout) {
		cancelCalls() // interrupt in-flight calls; their events are settled as unsent
	}
	turns.close()
	close(r.settles)
	<-settled
	stopBeats()
	bg.Wait()
	// Not heartbeating before the row goes: a DrainOrganization from now on
	// names no holder, as outside Run, rather than a row that is gone.
	r.heartbeating.Store(false)
	r.leave()
	if r.pooled != nil {
		r.pooled.CloseIdleConnections() // a stopped relay holds no socket
	}
	r.sweeper.last.Store(0)
	r.log.InfoContext(ctx, "relay: stopped", "stats", r.Stats())
	return nil
}

func waitTimeout(clock clockwork.Clock, wg *sync.WaitGroup, d time.Duration) bool {
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
		return true
	case <-clock.After(d):
		return false
	}
}

// Ready reports whether the relay is running and its wake-up path works:
// the LISTEN connection is up (or PollOnly is set) and the last sweep
// reached the database.
func (r *Relay) Ready() bool {
	return r.running.Load() && r.alive() && r.sweeper.recently() && (r.cfg.PollOnly || r.listener.up.Load())
}

func (r *Relay) authPaused() bool {
	return r.clock.Now().UnixNano() < r.authPausedUntil.Load()
}

// pauseForAuth holds every lane after a 401/403: the token is bad or
// revoked, which no retry of the event can fix.
func (r *Relay) pauseForAuth(res result) {
	until := r.clock.Now().Add(r.cfg.AuthPause).UnixNano()
	prev := r.authPausedUntil.Load()
	if prev >= until-int64(time.Second) || !r.authPausedUntil.CompareAndSwap(prev, until) {
		return // another lane just paused
	}
	r.stats.authFailures.Add(1)
	r.tel.authFailures.Add(context.Background(), 1)
	r.log.Error("relay: Svix refused the API token; delivery paused, nothing is dead-lettered. Check SvixToken.",
		"status", res.status, "pause", r.cfg.AuthPause)
}
