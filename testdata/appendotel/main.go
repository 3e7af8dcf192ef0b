// Command appendotel is appendraw plus the OpenTelemetry API calls the
// producer makes (a counter from the global meter provider, the caller's
// span context): the smallest program that links what package outbox is
// allowed to link, for scripts/footprint.
package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"
)

// auditLog is the payload.
type auditLog struct {
	ID     string    `json:"id"`
	Action string    `json:"action"`
	At     time.Time `json:"at"`
}

func main() {
	ctx := context.Background()
	appended, err := otel.GetMeterProvider().Meter("appendotel").Int64Counter("events.appended")
	if err != nil {
		otel.Handle(err)
	}
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
		var traceparent *string
		if sc := trace.SpanContextFromContext(ctx); sc.IsValid() {
			s := "00-" + sc.TraceID().String() + "-" + sc.SpanID().String() + "-" + sc.TraceFlags().String()
			traceparent = &s
		}
		var id int64
		err = tx.QueryRow(ctx, "INSERT INTO outbox_events (event_id, organization_id, event_type, payload, traceparent) VALUES ($1, $2, $3, $4::jsonb, $5) RETURNING id",
			eventID, "org_42", "audit_log.created", string(payload), traceparent).Scan(&id)
		if err != nil {
			return err
		}
		appended.Add(ctx, 1, metric.WithAttributes(attribute.String("outbox.event.type", "audit_log.created")))
		fmt.Println(id, eventID)
		return nil
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}
