package outbox

import (
	"context"
	"fmt"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgtype"
)

// AppendParams is one event to append.
type AppendParams struct {
	// OrganizationID is the organization the event belongs to; by default
	// the relay sends it to the Svix application whose uid is this id, so it
	// must be 1 to 256 characters of [a-zA-Z0-9-_.], not starting with "app_".
	OrganizationID string
	// EventType is the Svix event type; see EventType.Validate.
	EventType EventType
	// Payload is the webhook body: any value encoding/json marshals to a
	// JSON object, or a json.RawMessage or []byte already holding a JSON
	// object (validated, stored as is). At most Config.MaxPayloadBytes.
	Payload any
}

// AppendResult identifies the appended event.
type AppendResult struct {
	// ID is the row's id in the outbox table.
	ID int64
	// OrganizationID is the organization the event belongs to.
	OrganizationID string
	// EventID is the event's public id, a UUIDv7 minted at append time. The
	// relay sends it as the Svix message's eventId, so it finds the message
	// in Svix (Message.Get accepts it in place of the message id).
	EventID uuid.UUID
}

// Append inserts one event in one round trip, with the default Producer.
//
// Call it inside the transaction that writes the business rows, so the
// event commits or rolls back with them, and signal the relay after the
// commit (or use WithTx). Bad input returns a *ValidationError before any
// SQL runs.
func Append(ctx context.Context, dbtx DBTX, p AppendParams) (AppendResult, error) {
	return defaultProducer.Append(ctx, dbtx, p)
}

// Append inserts one event in one round trip; see the package-level Append.
func (p *Producer) Append(ctx context.Context, dbtx DBTX, ap AppendParams) (AppendResult, error) {
	payload, verr := p.validate(&ap)
	if verr != nil {
		return AppendResult{}, verr
	}
	eventID, err := newEventID()
	if err != nil {
		return AppendResult{}, err
	}
	var id int64
	// The payload goes as text so every pgx query mode (including exec and
	// simple_protocol, used behind PgBouncer) sends it as JSON, not bytea.
	err = dbtx.QueryRow(ctx, p.insertSQL, pgtype.UUID{Bytes: eventID, Valid: true},
		ap.OrganizationID, string(ap.EventType), string(payload)).Scan(&id)
	if err != nil {
		return AppendResult{}, fmt.Errorf("outbox: append event: %w", err)
	}
	if r, ok := dbtx.(appendRecorder); ok {
		r.recordAppend(ap.OrganizationID)
	}
	return AppendResult{ID: id, OrganizationID: ap.OrganizationID, EventID: eventID}, nil
}

func newEventID() (uuid.UUID, error) {
	id, err := uuid.NewV7()
	if err != nil {
		return uuid.UUID{}, fmt.Errorf("outbox: mint event id: %w", err)
	}
	return id, nil
}
