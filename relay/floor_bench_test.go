package relay_test

import (
	"context"
	"encoding/json"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/svix/svix-webhooks/go/models"

	"github.com/outboxrelay/outbox/internal/pgtest"
	"github.com/outboxrelay/outbox/outboxtest/svixtest"
)

// floorPage bounds the events one read or one settlement of floorDrain
// covers.
const floorPage = 256

// floorEvent is one pending event as floorDrain reads it.
type floorEvent struct {
	id      int64
	eventID string
	org     string
	payload []byte
}

// floorDrain is the least work an outbox with a delivery history does per
// event, as a bound for the relay's figures, not a relay: it reads the hot
// table in id order (no claim, no lease, no lane, no attempt counted, no
// order per organization), creates each event with the SDK from
// benchInFlight goroutines, and moves the created events into the history
// in batches (the relay's delete-into-history statement without its lease
// check). It stops the timer once Svix holds every event, as the relay's
// benchmarks do, and then waits for the last settlement.
func floorDrain(b *testing.B, db *pgtest.DB, fake *svixtest.Server, n int) {
	b.Helper()
	ctx, cancel := context.WithCancel(context.Background()) // see rawRetryingCreatesFrom
	defer cancel()
	client := retryingClient(b, fake)
	todo := make(chan floorEvent, floorPage)
	done := make(chan int64, floorPage)

	read := make(chan error, 1)
	go func() { defer close(todo); read <- floorRead(ctx, db, todo) }()
	// A failure anywhere ends ctx, which every channel send below also
	// waits on: nothing blocks for good.
	fail := func(err error) { b.Error(err); cancel() }

	var senders sync.WaitGroup
	for range benchInFlight {
		senders.Add(1)
		go func() {
			defer senders.Done()
			for ev := range todo {
				var payload map[string]any
				if err := json.Unmarshal(ev.payload, &payload); err != nil {
					fail(err)
					return
				}
				for try := 1; ; try++ { // as the raw loop: the SDK retries, then this
					_, err := client.Message.Create(ctx, ev.org, models.MessageIn{
						EventType: "bench.event", EventId: &ev.eventID, Payload: payload,
						Application: &models.ApplicationIn{Name: ev.org, Uid: &ev.org},
					}, nil)
					if err == nil {
						break
					}
					if try == 100 || ctx.Err() != nil {
						fail(err)
						return
					}
				}
				select {
				case done <- ev.id:
				case <-ctx.Done():
					return
				}
			}
		}()
	}
	settled := make(chan error, 1)
	go func() {
		err := floorSettle(ctx, db, done)
		if err != nil {
			cancel()
		}
		settled <- err
	}()

	wctx, wcancel := context.WithTimeout(ctx, 10*time.Minute)
	defer wcancel()
	if err := fake.WaitForMessages(wctx, n); err != nil {
		b.Fatalf("floor delivered %d of %d: %v", fake.MessageCount(), n, err)
	}
	b.StopTimer()
	senders.Wait()
	close(done)
	if err := <-settled; err != nil {
		b.Fatal(err)
	}
	if err := <-read; err != nil {
		b.Fatal(err)
	}
}

// floorRead sends every pending event to todo, a page at a time in id
// order.
func floorRead(ctx context.Context, db *pgtest.DB, todo chan<- floorEvent) error {
	after := int64(0)
	for {
		rows, err := db.Pool.Query(ctx, `SELECT id, event_id::text, organization_id, payload::text
			FROM outbox_events WHERE id > $1 ORDER BY id LIMIT $2`, after, floorPage)
		if err != nil {
			return err
		}
		page, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (floorEvent, error) {
			var ev floorEvent
			var payload string
			err := row.Scan(&ev.id, &ev.eventID, &ev.org, &payload)
			ev.payload = []byte(payload)
			return ev, err
		})
		if err != nil {
			return err
		}
		if len(page) == 0 {
			return nil
		}
		for _, ev := range page {
			select {
			case todo <- ev:
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		after = page[len(page)-1].id
	}
}

// floorSettle moves the created events named on done into the history, as
// many per statement as have arrived (floorPage at most).
func floorSettle(ctx context.Context, db *pgtest.DB, done <-chan int64) error {
	for {
		var id int64
		select {
		case next, ok := <-done:
			if !ok {
				return nil
			}
			id = next
		case <-ctx.Done():
			return ctx.Err()
		}
		ids := []int64{id}
	gather:
		for len(ids) < floorPage {
			select {
			case id, ok := <-done:
				if !ok {
					break gather
				}
				ids = append(ids, id)
			default:
				break gather
			}
		}
		_, err := db.Pool.Exec(ctx, `WITH done AS (
				DELETE FROM outbox_events e WHERE e.id = ANY($1)
				RETURNING e.id, e.event_id, e.organization_id, e.event_type, e.attempts, e.created_at)
			INSERT INTO outbox_deliveries (id, event_id, organization_id, event_type, outcome, attempts, created_at)
			SELECT id, event_id, organization_id, event_type, 'delivered', attempts, created_at FROM done`, ids)
		if err != nil {
			return err
		}
	}
}
