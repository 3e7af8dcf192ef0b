// Command appendraw is appendonly's insert written by hand with pgx, uuid
// and encoding/json: the baseline scripts/footprint compares the
// producer's size with.
package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
)

// auditLog is the payload.
type auditLog struct {
	ID     string    `json:"id"`
	Action string    `json:"action"`
	At     time.Time `json:"at"`
}

func main() {
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, os.Getenv("DATABASE_URL"))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	defer conn.Close(ctx)
	err = pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
		payload, err := json.Marshal(auditLog{ID: "log_1", Action: "login", At: time.Now()})
		if err != nil {
			return err
		}
		eventID, err := uuid.NewV7()
		if err != nil {
			return err
		}
		var id int64
		err = tx.QueryRow(ctx, "INSERT INTO outbox_events (event_id, organization_id, event_type, payload) VALUES ($1, $2, $3, $4::jsonb) RETURNING id",
			eventID, "org_42", "audit_log.created", string(payload)).Scan(&id)
		if err != nil {
			return err
		}
		fmt.Println(id, eventID)
		return nil
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}
