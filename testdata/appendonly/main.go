// Command appendonly is a service handler's whole use of the producer: one
// outbox.Append in a transaction. deps_test.go checks what it links and
// scripts/footprint measures its size beside appendraw, the same insert
// written with pgx, uuid and encoding/json alone.
package main

import (
	"context"
	"fmt"
	"os"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/outboxrelay/outbox"
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
		res, err := outbox.Append(ctx, tx, outbox.AppendParams{
			OrganizationID: "org_42",
			EventType:      "audit_log.created",
			Payload:        auditLog{ID: "log_1", Action: "login", At: time.Now()},
		})
		if err != nil {
			return err
		}
		fmt.Println(res.ID, res.EventID)
		return nil
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}
