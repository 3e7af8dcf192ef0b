package relay

import (
	"context"
	"time"

	"github.com/jonboulle/clockwork"
)

// retry calls fn up to tries times while it fails, waiting first, then four
// times as long, between tries (never after the last), and gives up early
// when ctx ends. It returns fn's last error.
func retry(ctx context.Context, clock clockwork.Clock, tries int, first time.Duration, fn func(context.Context) error) error {
	wait := first
	var err error
	for try := 1; ; try++ {
		if err = fn(ctx); err == nil || try == tries || ctx.Err() != nil {
			return err
		}
		t := clock.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return err
		case <-t.Chan():
		}
		wait *= 4
	}
}
