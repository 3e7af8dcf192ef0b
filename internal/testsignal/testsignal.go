// Package testsignal lets a test wait for something a background loop did
// (a sweep, a prune tick, a heartbeat) instead of sleeping and hoping.
//
// A Signal is inert until a test calls Init: production code signals for
// free. Signals beyond the buffer are dropped, never blocking the loop
// that sends them.
package testsignal

import "time"

// TB is the part of testing.TB that Wait uses (the package stays out of
// the testing package, which the relay's binaries must not link).
type TB interface {
	Helper()
	Fatal(args ...any)
}

// buffer is how many signals wait for a test to read them.
const buffer = 100

// timeout is how long Wait waits before failing the test: long enough for
// a loaded machine, so that only a signal that never comes fails.
const timeout = 30 * time.Second

// Signal is one kind of event a test can wait for. The zero value is
// inert.
type Signal[T any] struct{ ch chan T }

// Init arms the signal; call it before the code under test starts.
func (s *Signal[T]) Init() { s.ch = make(chan T, buffer) }

// Signal records v for a test waiting on s; it never blocks.
func (s *Signal[T]) Signal(v T) {
	if s.ch == nil {
		return
	}
	select {
	case s.ch <- v:
	default:
	}
}

// Wait returns the next value signalled, failing tb if none comes within 30
// seconds.
func (s *Signal[T]) Wait(tb TB) T {
	tb.Helper()
	select {
	case v := <-s.ch:
		return v
	case <-time.After(timeout):
		tb.Fatal("testsignal: no signal within", timeout)
		var zero T
		return zero
	}
}

// Drain discards the values signalled so far, so that the next Wait sees
// only what happens after it.
func (s *Signal[T]) Drain() {
	for {
		select {
		case <-s.ch:
		default:
			return
		}
	}
}
