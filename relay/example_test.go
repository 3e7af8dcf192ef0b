package relay_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"time"

	"github.com/outboxrelay/outbox"
	"github.com/outboxrelay/outbox/internal/pgtest"
	"github.com/outboxrelay/outbox/outboxtest/svixtest"
	"github.com/outboxrelay/outbox/relay"
)

// Run a relay beside the producer in one process: the relay is itself the
// Signaler, so no NOTIFY is needed.
func Example() {
	ctx := context.Background()
	pool := pgtest.ForExample().Pool            // your *pgxpool.Pool, migrated
	svixAPI := svixtest.New(svixtest.Options{}) // stands in for Svix here
	defer svixAPI.Close()

	r, err := relay.New(pool, relay.Config{
		SvixToken:     svixAPI.Token(), // your Svix API token
		SvixServerURL: svixAPI.URL(),   // leave empty for Svix's own
		PollOnly:      true,            // in-process signals only (and the sweep)
		Logger:        slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		panic(err)
	}
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- r.Run(runCtx) }()

	err = outbox.WithTx(ctx, pool, r, func(tx *outbox.Tx) error {
		_, err := outbox.Append(ctx, tx, outbox.AppendParams{
			OrganizationID: "org_42",
			EventType:      outbox.EventTypeAuditLogCreated,
			Payload:        map[string]any{"action": "login"},
		})
		return err
	})
	if err != nil {
		panic(err)
	}

	waitCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	_ = svixAPI.WaitForMessages(waitCtx, 1)
	stop()
	<-done
	msg := svixAPI.Messages()[0]
	fmt.Println(msg.App, msg.EventType, string(msg.Payload))
	fmt.Println("delivered:", r.Stats().Delivered)
	// Output:
	// org_42 audit_log.created {"action":"login"}
	// delivered: 1
}
