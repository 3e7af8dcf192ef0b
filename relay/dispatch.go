package relay

import (
	"cmp"
	"context"
	"slices"
	"sync"
	"time"
)

const (
	// claimRoundMax bounds the organizations one claim asks for.
	claimRoundMax = 64
	// claimsInFlight is how many claims may be on their way at
	// once, so that one round trip's latency does not idle the lanes.
	claimsInFlight = 2
	// lanesPerCall bounds the lanes in a turn per Svix call in flight
	// (Concurrency), counting those waiting for their settlement.
	lanesPerCall = 4
	// claimRoundMin is the smallest round worth a claim while other lanes
	// are in a turn: their ends free more slots soon, and a bigger round
	// costs less per lane than two small ones.
	claimRoundMin = 16
)

// claimAhead is how many lanes a relay claims beyond its Concurrency turn
// slots, a quarter of them (at least one): they wait for a slot, so that a
// slot freed by a turn's last call is taken at once, not after the round
// trip of a claim. Without them, with Svix 20 ms away and one event per
// organization, a sixth of the slots sat idle waiting for claims (2,200
// against 2,600 events/s).
func claimAhead(concurrency int) int { return max(concurrency/4, 1) }

// dispatch claims queued lanes, many per round trip, and runs each lane
// taken on turns, until ctx ends.
func (r *Relay) dispatch(ctx, callCtx context.Context, turns *runners) {
	claims := make(chan struct{}, claimsInFlight)
	var claiming sync.WaitGroup
	defer claiming.Wait()
	// Claims run concurrently, but their lanes take turn slots in the
	// order the queue gave them out: each round waits for the round
	// before it to have handed out its slots (seated closes then).
	seated := make(chan struct{})
	close(seated)
	for {
		select {
		case claims <- struct{}{}:
		case <-ctx.Done():
			return
		}
		orgs, paged := r.takeQueued(claimRoundMax)
		if len(orgs) == 0 {
			<-claims
			select {
			case <-ctx.Done():
				return
			case <-r.wake:
			}
			continue
		}
		claiming.Add(1)
		before, done := seated, make(chan struct{})
		seated = done
		go func() {
			defer claiming.Done()
			defer func() { <-claims; r.poke() }()
			if !r.claimAndStart(ctx, callCtx, orgs, paged, turns, before, done) {
				// The database did not answer: the lanes go back to the
				// sweep, and the next claim waits a moment.
				select {
				case <-ctx.Done():
				case <-r.clock.After(100 * time.Millisecond):
				}
			}
		}()
	}
}

// takeQueued pops up to n queued organizations for a claim, as many as
// there are free lane slots and no more than are working already
// (claimRoundMin at least: rounds start small), and marks them working. While other lanes are
// in a turn it waits for claimRoundMin free slots (a quarter of Concurrency
// if smaller, or the whole queue if shorter). It pops none while delivery is paused for a bad token or this
// relay is fenced.
//
// With pages on (not Config.DisablePages), a queue of pageMinOrgs or more, and a page
// slot free, it takes that slot for the round (paged) and pops up to
// pageRoundMax organizations, bounded only by lanesPerCall × Concurrency
// lanes held at once: a page's organizations have one event each.
func (r *Relay) takeQueued(n int) (orgs []string, paged bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	pages := r.pageSlots != nil && len(r.queue) >= pageMinOrgs && len(r.working) <= lanesPerCall*r.cfg.Concurrency-pageMinOrgs &&
		!r.authPaused() && r.alive()
	if pages && r.pageSkip == 0 {
		select {
		case r.pageSlots <- struct{}{}:
			n = min(pageRoundMax, lanesPerCall*r.cfg.Concurrency-len(r.working), len(r.queue), startSmall(len(r.working)))
			return r.popWorking(n), true
		default:
		}
	}
	// Lanes still to send (being claimed, waiting for a turn slot, or
	// sending) are at most Concurrency plus claimAhead: a relay must not
	// hold many lanes it cannot work while other replicas could. Lanes done
	// sending, waiting for their settlement, leave room for the next claim,
	// which so overlaps their round trip.
	sending := len(r.working) - int(r.settling.Load())
	n = min(n, r.cfg.Concurrency+claimAhead(r.cfg.Concurrency)-sending, lanesPerCall*r.cfg.Concurrency-len(r.working), len(r.queue),
		startSmall(len(r.working)))
	if n <= 0 || r.authPaused() || !r.alive() {
		return nil, false
	}
	if len(r.working) > 0 && n < min(claimRoundMin, max(r.cfg.Concurrency/4, 1), len(r.queue)) {
		return nil, false // a lane's end pokes the dispatcher
	}
	if pages && r.pageSkip > 0 {
		r.pageSkip-- // a lane round in place of a page (notePage)
	}
	return r.popWorking(n), false
}

// startSmall bounds a claim round while working organizations are held:
// at most as many again, claimRoundMin at least. A relay with nothing in
// flight (it just started on a backlog, or a burst ends a lull) so sends
// after a small claim (measured with 100 organizations of 200 events: the
// first create 144-189 ms after Run against 207-232 with a first round of
// 64 lanes of 100 events), and its larger rounds overlap the first ones'
// calls.
func startSmall(working int) int { return max(claimRoundMin, working) }

// popWorking pops the first n queued organizations and marks them working.
// r.mu must be held.
func (r *Relay) popWorking(n int) []string {
	orgs := r.popQueued(n)
	for _, org := range orgs {
		r.working[org] = &laneWork{}
	}
	return orgs
}

// popQueued removes the first n organizations from the queue and returns
// them. r.mu must be held; n must not exceed the queue's length.
func (r *Relay) popQueued(n int) []string {
	orgs := make([]string, n)
	copy(orgs, r.queue)
	clear(r.queue[:n])
	r.queue = r.queue[n:]
	for _, org := range orgs {
		delete(r.queued, org)
	}
	return orgs
}

// claimAndStart claims orgs' lanes in one round trip and starts each lane
// taken on turns. Once the round before it is seated (before closes) it
// hands its lanes their turn slots, in the order of orgs, and then closes
// seated. It reports whether the claim reached the database.
func (r *Relay) claimAndStart(ctx, callCtx context.Context, orgs []string, paged bool, turns *runners, before <-chan struct{}, seated chan<- struct{}) bool {
	defer func() {
		// Even a round with no lane waits its turn: a round after it must
		// not be seated before the rounds before it.
		select {
		case <-before:
		case <-ctx.Done():
		}
		close(seated)
	}()
	// The claim is not interrupted once sent: a claim the server committed
	// while the client gave up would hold the lanes until their leases
	// expired.
	claimCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), r.cfg.LeaseDuration/2)
	rd, reached := r.claimRound(claimCtx, ctx, orgs, paged)
	cancel()
	if !reached {
		return false
	}
	for org, until := range rd.waiting {
		r.finish(org, turnReport{}, until, false)
	}
	for _, org := range rd.held {
		r.recheckAfter(org, rd.waiting[org])
	}
	for _, org := range rd.again {
		r.finish(org, turnReport{more: true}, time.Time{}, true)
	}
	for _, org := range rd.empty {
		// Settled: a signal that arrived during the claim may be for an
		// event its snapshot did not see, so it goes back in the queue.
		r.finish(org, turnReport{empty: true}, time.Time{}, true)
	}
	order := make(map[string]int, len(orgs))
	for i, org := range orgs {
		order[org] = i
	}
	slices.SortFunc(rd.lanes, func(a, b *lane) int { return cmp.Compare(order[a.org], order[b.org]) })
	var sending []*lane
	for _, ln := range rd.lanes {
		if len(ln.events) == 0 {
			// Taken with nothing due (its head waits for a retry): it
			// sends nothing, so it is released at once, without a slot.
			turns.Go(func() { r.runLane(ctx, callCtx, ln, false) })
			continue
		}
		sending = append(sending, ln)
	}
	// The lanes of one round share their claim time, so they give up
	// waiting together: for the round before, or for a slot.
	inTime := len(sending) == 0 || r.awaitTurn(ctx, before, sending[0].claimedAt)
	for _, ln := range sending {
		slot := inTime && ctx.Err() == nil && r.awaitTurnSlot(ctx, ln)
		turns.Go(func() { r.runLane(ctx, callCtx, ln, slot) })
	}
	return true
}

// claimRound claims orgs: a page first, in a round that holds a page slot
// (paged: claimPage), then the lanes of those the page did not take. An
// organization whose claim failed is finished at once (it goes back to the
// sweep). It reports whether the database answered, the page or the lane
// claim.
func (r *Relay) claimRound(claimCtx, ctx context.Context, orgs []string, paged bool) (round, bool) {
	pg, rest := (*page)(nil), orgs
	if paged {
		pg, rest = r.claimPage(claimCtx, orgs)
	}
	var rd round
	if len(rest) > 0 {
		var err error
		rd, err = r.claim(claimCtx, rest)
		if err != nil {
			if ctx.Err() == nil {
				r.log.WarnContext(ctx, "relay: claim failed", "organizations", len(rest), "error", err)
			}
			for _, org := range rest {
				r.finish(org, turnReport{}, time.Time{}, false)
			}
			if pg == nil {
				return round{}, false
			}
			rd = round{}
		}
	}
	if pg != nil {
		rd.lanes = append(rd.lanes, pg.lanes...)
	}
	return rd, true
}

// runLane sends a claimed lane's events (when it holds a turn slot: slot;
// a lane with nothing due needs none), has the settler settle them with
// other lanes', gives the slot back once its calls are done, and puts the
// organization back in the queue when it has more to do now or was
// signalled meanwhile.
func (r *Relay) runLane(ctx, callCtx context.Context, ln *lane, slot bool) {
	ctx, span := r.startTurn(ctx, ln)
	switch {
	case len(ln.events) == 0:
		r.work(ctx, callCtx, ln, time.Time{})
	case slot:
		r.work(ctx, callCtx, ln, time.Time{})
		<-r.turnSlots
	default:
		// Nothing sent, no attempt counted: the lane is released, and goes
		// back in the queue unless the relay is stopping.
		ln.results = make([]result, len(ln.events))
		ln.rep = turnReport{leased: true, more: ctx.Err() == nil, gaveUp: true}
		if ctx.Err() == nil {
			r.testSignals.SlotGivenUp.Signal(ln.org)
		}
	}
	r.settling.Add(1)
	r.poke() // room for a claim while this lane is settled
	var res settled
	if ln.page != nil {
		res = r.finishPage(ln)
	} else {
		req := &settleRequest{ln: ln, done: make(chan settled, 1)}
		r.settles <- req
		res = <-req.done
	}
	r.settling.Add(-1)
	endTurn(span, ln, res.err)
	if res.err != nil && ctx.Err() == nil {
		r.log.WarnContext(callCtx, "relay: lane turn failed", "organization_id", ln.org, "error", res.err)
	}
	if res.err != nil && ln.page != nil {
		// The page was rolled back: nothing of it was written, and its
		// organizations are free now, not after a lease. They are queued
		// again by the first sweep after PollInterval, not at once: a
		// failure that repeats must not resend them in a loop.
		until := r.clock.Now().Add(r.cfg.PollInterval)
		r.finish(ln.org, turnReport{}, until, false)
		r.recheckAfter(ln.org, until)
		return
	}
	r.finish(ln.org, ln.rep, res.due, res.err == nil)
}

// awaitTurnSlot waits for one of the Concurrency turn slots for a lane
// claimed ahead of them. It gives up (false) when ctx ends, or when a
// quarter of the lane's lease has gone by: turns that hold every slot for
// long must not keep the lanes waiting behind them leased, and idle, while
// other replicas could work them.
func (r *Relay) awaitTurnSlot(ctx context.Context, ln *lane) bool {
	select {
	case r.turnSlots <- struct{}{}:
		return true
	default:
	}
	return r.awaitTurn(ctx, nil, ln.claimedAt)
}

// awaitTurn waits until ready closes, or (ready nil) until it takes a turn
// slot, for lanes claimed at claimedAt. It gives up (false) when ctx ends
// or a quarter of their lease has gone by.
func (r *Relay) awaitTurn(ctx context.Context, ready <-chan struct{}, claimedAt time.Time) bool {
	giveUp := r.clock.NewTimer(r.clock.Until(claimedAt.Add(r.cfg.LeaseDuration / 4)))
	defer giveUp.Stop()
	var slot chan<- struct{}
	if ready == nil {
		slot = r.turnSlots
	}
	select {
	case slot <- struct{}{}:
		return true
	case <-ready:
		return true
	case <-giveUp.Chan():
		return false
	case <-ctx.Done():
		return false
	}
}

// finish ends an organization's turn: it leaves the working set, waits
// until its due time if that is ahead, and goes back in the queue at once
// if it has more due now or was signalled during the turn.
func (r *Relay) finish(org string, rep turnReport, due time.Time, settled bool) {
	r.mu.Lock()
	w := r.working[org]
	delete(r.working, org)
	signalled := w != nil && w.signalledAgain
	r.mu.Unlock()
	r.wait(org, due)
	if settled && (rep.more || (signalled && !rep.rateLimited && !rep.authFailed)) {
		r.enqueue(org)
	} else {
		r.poke()
	}
}
