package relay

import (
	"context"
	"errors"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/outboxrelay/outbox"
)

// listenPing is how long the listener waits in silence before it pings the
// server, so a dead connection is noticed.
const listenPing = 30 * time.Second

// listen holds a dedicated connection LISTENing on the channel and queues
// the organization each notification names. It reconnects with backoff
// and sweeps after every (re)connect, since notifications sent while it
// was away are lost.
func (r *Relay) listen(ctx context.Context) {
	backoff := 100 * time.Millisecond
	for ctx.Err() == nil {
		connected := r.clock.Now()
		err := r.listenOnce(ctx)
		r.listening.Store(false)
		if ctx.Err() != nil {
			return
		}
		if r.clock.Since(connected) > time.Minute {
			backoff = 100 * time.Millisecond // it was healthy: start over
		}
		r.log.WarnContext(ctx, "relay: LISTEN connection lost, reconnecting", "error", err, "backoff", backoff)
		select {
		case <-ctx.Done():
			return
		case <-r.clock.After(backoff):
		}
		backoff = min(backoff*2, 5*time.Second)
	}
}

// listenAppName names the LISTEN connection in pg_stat_activity: it is
// dialled apart from the pool (one more server connection than the pool's
// MaxConns), so that it never holds a pool connection for good.
const listenAppName = "outbox relay LISTEN"

func (r *Relay) listenOnce(ctx context.Context) error {
	cfg := r.pool.Config().ConnConfig.Copy()
	cfg.RuntimeParams["application_name"] = listenAppName
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return err
	}
	defer func() {
		closeCtx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		_ = conn.Close(closeCtx)
	}()
	if _, err := conn.Exec(ctx, "LISTEN "+pgx.Identifier{r.cfg.Channel}.Sanitize()); err != nil {
		return err
	}
	r.listening.Store(true)
	r.log.DebugContext(ctx, "relay: listening", "channel", r.cfg.Channel)
	r.sweeper.requestFull() // what was notified while nobody listened is lost
	r.sweeper.sweep(ctx)
	for {
		waitCtx, cancel := context.WithTimeout(ctx, listenPing)
		n, err := conn.WaitForNotification(waitCtx)
		cancel()
		switch {
		case err == nil:
			if outbox.ValidateOrganizationID(n.Payload) == nil {
				r.enqueue(n.Payload)
			}
		case ctx.Err() != nil:
			return ctx.Err()
		case errors.Is(err, context.DeadlineExceeded):
			pingCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
			err := conn.Ping(pingCtx)
			cancel()
			if err != nil {
				return err
			}
		default:
			return err
		}
	}
}
