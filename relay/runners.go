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
// is idle again) and stay until Run ends, each keeping the stack its turns
// grew while it waits for the next (next).
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
	for ok := true; ok; f, ok = p.next() {
		f()
	}
}

// idleStackPad is the stack an idle runner keeps in use (see next). The
// garbage collector halves the stack of a goroutine that uses less than a
// quarter of it: the pad keeps stacks of up to 64 KiB whole.
const idleStackPad = 16 << 10

// next waits for the next function, false after close. It waits deep in
// its stack, below a frame of idleStackPad bytes: the garbage collector
// would otherwise shrink an idle runner's grown stack at each cycle, and
// the runner's next turn copy it back, growing it again. Measured
// 2026-12-07 (pprof, 40,000 events over 20,000 organizations, pages):
// copying and shrinking stacks 250 ms of CPU without the pad, 50 ms with
// it; the process's CPU per event 166 µs against 169 (five interleaved
// rounds, within the noise of each).
//
//go:noinline
func (p *runners) next() (func(), bool) {
	var pad [idleStackPad]byte
	keep(pad[:])
	select {
	case f := <-p.idle:
		return f, true
	case <-p.stop:
		return nil, false
	}
}

// keep makes b's memory used, so the compiler keeps it on the stack.
//
//go:noinline
func keep(b []byte) { b[0] = 1 }

// close waits for the functions running, then ends the runners and waits
// for them.
func (p *runners) close() {
	p.busy.Wait()
	p.once.Do(func() { close(p.stop) })
	p.wg.Wait()
}
