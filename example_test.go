package outbox_test

import (
	"context"
	"errors"
	"fmt"

	"github.com/outboxrelay/outbox"
	"github.com/outboxrelay/outbox/internal/pgtest"
)

// Write a business row and its event in one transaction, then wake the
// relay for the organization once the transaction has committed.
func Example() {
	ctx := context.Background()
	db := pgtest.ForExample() // a migrated schema; use your own *pgxpool.Pool
	pool := db.Pool
	_, _ = pool.Exec(ctx, "CREATE TABLE audit_logs (id bigint PRIMARY KEY, action text)")

	signaler, err := outbox.NewNotifySignaler(pool, outbox.DefaultNotifyChannel)
	if err != nil {
		panic(err)
	}
	err = outbox.WithTx(ctx, pool, signaler, func(tx *outbox.Tx) error {
		if _, err := tx.Exec(ctx, "INSERT INTO audit_logs VALUES (1, 'login')"); err != nil {
			return err
		}
		_, err := outbox.Append(ctx, tx, outbox.AppendParams{
			OrganizationID: "org_42",
			EventType:      outbox.EventTypeAuditLogCreated,
			Payload:        map[string]any{"id": 1, "action": "login"},
		})
		return err
	})
	if err != nil {
		panic(err)
	}

	var pending int
	_ = pool.QueryRow(ctx, "SELECT count(*) FROM outbox_events WHERE organization_id = 'org_42'").Scan(&pending)
	fmt.Println("events waiting for the relay:", pending)
	// Output: events waiting for the relay: 1
}

func ExampleAppend() {
	ctx := context.Background()
	pool := pgtest.ForExample().Pool

	tx, err := pool.Begin(ctx)
	if err != nil {
		panic(err)
	}
	defer tx.Rollback(ctx)
	res, err := outbox.Append(ctx, tx, outbox.AppendParams{
		OrganizationID: "org_42",
		EventType:      outbox.EventTypeAuditLogCreated,
		Payload:        map[string]any{"actor": "ana"},
	})
	if err != nil {
		panic(err)
	}
	if err := tx.Commit(ctx); err != nil {
		panic(err)
	}
	// Commit done: now signal, e.g. signaler.SignalRelay(ctx, res.OrganizationID).
	fmt.Println(res.OrganizationID, res.EventID.Version())
	// Output: org_42 VERSION_7
}

func ExampleAppendBatch() {
	ctx := context.Background()
	pool := pgtest.ForExample().Pool

	var events []outbox.AppendParams
	for i := range 3 {
		events = append(events, outbox.AppendParams{
			OrganizationID: fmt.Sprintf("org_%d", i%2),
			EventType:      "invoice.paid",
			Payload:        map[string]any{"invoice": i},
		})
	}
	tx, err := pool.Begin(ctx)
	if err != nil {
		panic(err)
	}
	defer tx.Rollback(ctx)
	res, err := outbox.AppendBatch(ctx, tx, events)
	if err != nil {
		panic(err)
	}
	if err := tx.Commit(ctx); err != nil {
		panic(err)
	}
	fmt.Println("appended", res.Count)
	// Output: appended 3
}

func ExampleValidationError() {
	_, err := outbox.Append(context.Background(), nil, outbox.AppendParams{
		OrganizationID: "org_42",
		EventType:      "audit_log:created",
		Payload:        map[string]any{},
	})
	fmt.Println(errors.Is(err, outbox.ErrInvalidEventType))
	fmt.Println(err)
	// Output:
	// true
	// outbox: EventType: must contain only [a-zA-Z0-9-_.], has ':' at byte 9 (got "audit_log:created")
}
