package relay

import (
	"sync"
	"time"
)

const (
	// maxSettleBatch bounds the lanes one settlement round trip covers.
	maxSettleBatch = 256
	// settlersInFlight is how many settlements may be on their way at once.
	settlersInFlight = 1
)

// settleRequest is a lane done sending, waiting for its settlement.
type settleRequest struct {
	ln   *lane
	done chan settled
}

// settled is what became of a lane's settlement: an error, or the time the
// lane is next due (zero: now or nothing left).
type settled struct {
	due time.Time
	err error
}

// settleLoop settles lanes as they finish, settlersInFlight round trips
// at a time, each taking every lane that finished while the others were on
// their way, until reqs is closed.
func (r *Relay) settleLoop(reqs <-chan *settleRequest) {
	var wg sync.WaitGroup
	for range settlersInFlight {
		wg.Add(1)
		go func() { defer wg.Done(); r.settleWorker(reqs) }()
	}
	wg.Wait()
}

func (r *Relay) settleWorker(reqs <-chan *settleRequest) {
	for req := range reqs {
		batch := []*settleRequest{req}
	gather:
		for len(batch) < maxSettleBatch {
			select {
			case next, ok := <-reqs:
				if !ok {
					break gather
				}
				batch = append(batch, next)
			default:
				break gather
			}
		}
		lanes := make([]*lane, len(batch))
		for i, q := range batch {
			lanes[i] = q.ln
		}
		due, err := r.settle(lanes)
		for _, q := range batch {
			q.done <- settled{due: due[q.ln.org], err: err}
		}
	}
}
