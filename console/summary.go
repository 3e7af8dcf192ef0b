package console

import (
	"context"
	"sync"
	"time"

	"github.com/outboxrelay/outbox/relay"
)

// summary is the installation-wide status (one pass over the pending
// events and the dead letters) and the delivery chart (a pass over the
// last three hours of history), kept between pages and refreshed in the
// background, so that no page waits for a pass over a large backlog or a
// busy history but the first.
type summary struct {
	admin    *relay.Admin
	interval time.Duration

	mu         sync.Mutex
	status     relay.Status
	chart      []byte        // the delivery chart, SVG
	at         time.Time     // when the kept status was read
	took       time.Duration // how long that read took
	err        error
	running    chan struct{} // closed when the refresh in flight ends; nil when none
	stale      bool          // a mutation made the kept status wrong
	generation int           // counts mutations
	lifetime   context.Context
}

func newSummary(ctx context.Context, admin *relay.Admin, interval time.Duration) *summary {
	return &summary{admin: admin, interval: interval, lifetime: ctx}
}

// get returns the kept status and when it was read. It starts a refresh
// when the status is older than the interval (and than 20 times the last
// read's duration), and waits for it, within ctx, only when there is none
// yet or a mutation made it stale.
func (s *summary) get(ctx context.Context) (relay.Status, time.Time, error) {
	for {
		s.mu.Lock()
		age := time.Since(s.at)
		due := s.at.IsZero() || s.stale || (age > s.interval && age > 20*s.took)
		if due && s.running == nil {
			s.running = make(chan struct{})
			go s.refresh(s.running, s.generation)
		}
		wait, mustWait := s.running, s.at.IsZero() || s.stale
		status, at, err := s.status, s.at, s.err
		s.mu.Unlock()
		if !mustWait || wait == nil {
			return status, at, err
		}
		select {
		case <-wait:
			s.mu.Lock()
			err := s.err
			s.mu.Unlock()
			if err != nil {
				return relay.Status{}, time.Time{}, err
			}
		case <-ctx.Done():
			return relay.Status{}, time.Time{}, ctx.Err()
		}
	}
}

// invalidate makes the next get wait for a status read after it.
func (s *summary) invalidate() {
	s.mu.Lock()
	s.stale = true
	s.generation++
	s.mu.Unlock()
}

// refresh reads the status; it clears stale only when no mutation came
// after it began (generation unchanged).
func (s *summary) refresh(done chan struct{}, generation int) {
	start := time.Now()
	st, err := s.admin.Status(s.lifetime)
	var chart []byte
	if err == nil {
		chart, err = s.drawChart()
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.err = err
	if err == nil {
		s.status, s.chart, s.at, s.took = st, chart, start, time.Since(start)
		if generation == s.generation {
			s.stale = false
		}
	}
	s.running = nil
	close(done)
}

// drawChart reads the settled events per minute and draws them.
func (s *summary) drawChart() ([]byte, error) {
	rate, err := s.admin.DeliveryRate(s.lifetime, chartMinutes)
	if err != nil {
		return nil, err
	}
	return renderRate(rate)
}

// getChart returns the kept delivery chart, as get returns the status.
func (s *summary) getChart(ctx context.Context) ([]byte, error) {
	if _, _, err := s.get(ctx); err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.chart, nil
}
