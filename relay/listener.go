package relay

import (
	"context"
	"errors"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jonboulle/clockwork"

	"github.com/outboxrelay/outbox"
)

// listenPing is how long the listener waits in silence before it pings the
// server, so a dead connection is noticed.
const listenPing = 30 * time.Second

// listener is the service that holds a dedicated connection LISTENing on
// the channel and queues the organization each notification names. It
// needs the database's address, the channel, a clock, a logger and two
// callbacks, nothing of the lanes.
type listener struct {
	connConfig *pgx.ConnConfig
	channel    string
	clock      clockwork.Clock
	log        *slog.Logger
	// enqueue queues a notified organization for a turn; connected runs
	// after every (re)connect (a full sweep: notifications sent while
	// nobody listened are lost).
	enqueue   func(orgs ...string)
	connected func(ctx context.Context)
	// up: the LISTEN connection is up.
	up atomic.Bool
}

// newListener returns the listener of relay r.
func newListener(r *Relay) *listener {
	return &listener{connConfig: r.pool.Config().ConnConfig, channel: r.cfg.Channel, clock: r.clock, log: r.log,
		enqueue: r.enqueue, connected: func(ctx context.Context) {
			r.sweeper.requestFull()
			r.sweeper.sweep(ctx)
		}}
}

// Run listens until ctx ends, reconnecting with backoff (100 ms doubling
// to 5 s, reset after a connection that lasted a minute).
func (l *listener) Run(ctx context.Context) {
	backoff := 100 * time.Millisecond
	for ctx.Err() == nil {
		connected := l.clock.Now()
		err := l.listenOnce(ctx)
		l.up.Store(false)
		if ctx.Err() != nil {
			return
		}
		if l.clock.Since(connected) > time.Minute {
			backoff = 100 * time.Millisecond // it was healthy: start over
		}
		l.log.WarnContext(ctx, "relay: LISTEN connection lost, reconnecting", "error", err, "backoff", backoff)
		select {
		case <-ctx.Done():
			return
		case <-l.clock.After(backoff):
		}
		backoff = min(backoff*2, 5*time.Second)
	}
}

// listenAppName names the LISTEN connection in pg_stat_activity: it is
// dialled apart from the pool (one more server connection than the pool's
// MaxConns), so that it never holds a pool connection for good.
const listenAppName = "outbox relay LISTEN"

func (l *listener) listenOnce(ctx context.Context) error {
	cfg := l.connConfig.Copy()
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
	if _, err := conn.Exec(ctx, "LISTEN "+pgx.Identifier{l.channel}.Sanitize()); err != nil {
		return err
	}
	l.up.Store(true)
	l.log.DebugContext(ctx, "relay: listening", "channel", l.channel)
	l.connected(ctx)
	for {
		waitCtx, cancel := context.WithTimeout(ctx, listenPing)
		n, err := conn.WaitForNotification(waitCtx)
		cancel()
		switch {
		case err == nil:
			if outbox.ValidateOrganizationID(n.Payload) == nil {
				l.enqueue(n.Payload)
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
