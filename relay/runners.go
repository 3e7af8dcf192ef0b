package relay

import "sync"

// runners runs lane turns on goroutines it keeps for the next turn.
//
// A turn's goroutine makes the Svix call, and the HTTP client and the SDK
// under it need a deeper stack than a goroutine starts with: a goroutine
// per turn grows (copies) its stack on every turn, which measured 6–7% of
// the relay's CPU with one event per organization. A runner that ends a
// turn waits for the next one instead, its stack already grown.
//
// Go never waits for a runner: it hands the function to an idle one, or
// starts one more, so a turn never waits for another. The runners grow to
// about the most turns ever running at once (Concurrency × 4, see
// takeQueued; a few more, as a lane's slot frees just before its runner
// is idle again) and stay until Run ends. The garbage collector may shrink
// an idle runner's stack: it then grows once more, not on every turn.
type runners struct {
	idle chan func()   // unbuffered: a send succeeds only to a waiting runner
	stop chan struct{} // closed by close: idle runners return
	once sync.Once
	busy sync.WaitGroup // functions given to Go and not yet returned
	wg   sync.WaitGroup // runners
}

func newRunners() *runners {
	return &runners{idle: make(chan func()), stop: make(chan struct{})}
}

// Go runs f on an idle runner, or on a new one when none is idle. It must
// not be called after close.
func (p *runners) Go(f func()) {
	p.busy.Add(1)
	g := func() { defer p.busy.Done(); f() }
	select {
	case p.idle <- g:
	default:
		p.wg.Add(1)
		go p.run(g)
	}
}

// run runs f, then the functions handed to it until close.
func (p *runners) run(f func()) {
	defer p.wg.Done()
	for {
		f()
		select {
		case f = <-p.idle:
		case <-p.stop:
			return
		}
	}
}

// close waits for the functions running, then ends the runners and waits
// for them.
func (p *runners) close() {
	p.busy.Wait()
	p.once.Do(func() { close(p.stop) })
	p.wg.Wait()
}
