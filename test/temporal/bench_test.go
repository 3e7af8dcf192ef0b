package temporale2e

import (
	"context"
	"fmt"
	"log/slog"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/worker"
	"go.temporal.io/server/temporaltest"

	"github.com/outboxrelay/outbox"
	"github.com/outboxrelay/outbox/internal/pgtest"
	"github.com/outboxrelay/outbox/outboxtemporal"
	"github.com/outboxrelay/outbox/outboxtest/svixtest"
	"github.com/outboxrelay/outbox/relay"
)

// BenchmarkDelivery delivers batches of events for many organizations,
// appended in one transaction per organization and signalled after it,
// once through relay.Run woken by NOTIFY (the baseline) and once through
// the Temporal workflows; events/s is committed events over the time until
// the last is in Svix.
//
//	cd test/temporal && GOWORK=off go test -run '^$' -bench Delivery -benchtime 5x .
func BenchmarkDelivery(b *testing.B) {
	const orgs, perOrg = 50, 40
	for _, mode := range []string{"relay", "temporal"} {
		b.Run(fmt.Sprintf("mode=%s/orgs=%d", mode, orgs), func(b *testing.B) {
			db := pgtest.New(b)
			fake := svixtest.New(svixtest.Options{})
			b.Cleanup(fake.Close)
			quiet := slog.New(slog.DiscardHandler)
			cfg := relay.Config{SvixToken: fake.Token(), SvixServerURL: fake.URL(), Logger: quiet, Channel: "outbox_" + db.Schema}
			var signaler outbox.Signaler
			ctx, cancel := context.WithCancel(context.Background())
			if mode == "temporal" {
				ts := temporaltest.NewServer()
				b.Cleanup(ts.Stop)
				s, err := outboxtemporal.NewSignaler(outboxtemporal.SignalerConfig{Client: ts.GetDefaultClient(), Logger: quiet})
				require.NoError(b, err)
				b.Cleanup(func() { _ = s.Close() })
				signaler, cfg.Delegate = s, s
				r, err := relay.New(db.Pool, cfg)
				require.NoError(b, err)
				w := worker.New(ts.GetDefaultClient(), outboxtemporal.DefaultTaskQueue, worker.Options{})
				require.NoError(b, outboxtemporal.Register(w, r, outboxtemporal.Options{}))
				require.NoError(b, w.Start())
				b.Cleanup(w.Stop)
				go func() { _ = r.Run(ctx) }()
			} else {
				n, err := outbox.NewNotifySignaler(db.Pool, cfg.Channel)
				require.NoError(b, err)
				signaler = n
				r, err := relay.New(db.Pool, cfg)
				require.NoError(b, err)
				go func() { _ = r.Run(ctx) }()
			}
			b.Cleanup(cancel)
			time.Sleep(500 * time.Millisecond) // LISTEN up, first sweep done

			b.ResetTimer()
			var elapsed time.Duration
			for range b.N {
				want := fake.MessageCount() + orgs*perOrg
				start := time.Now()
				for o := range orgs {
					err := outbox.WithTx(ctx, db.Pool, signaler, func(tx *outbox.Tx) error {
						params := make([]outbox.AppendParams, perOrg)
						for i := range params {
							params[i] = outbox.AppendParams{OrganizationID: fmt.Sprintf("org-%03d", o), EventType: "invoice.paid", Payload: map[string]any{"i": i}}
						}
						_, err := outbox.AppendBatch(ctx, tx, params)
						return err
					})
					require.NoError(b, err)
				}
				waitCtx, stop := context.WithTimeout(ctx, 2*time.Minute)
				require.NoError(b, fake.WaitForMessages(waitCtx, want))
				stop()
				elapsed += time.Since(start)
			}
			b.ReportMetric(float64(b.N*orgs*perOrg)/elapsed.Seconds(), "events/s")
		})
	}
}
