package outbox

import (
	"context"
	"errors"
	"fmt"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/outboxrelay/outbox/internal/telemetry"
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
	// EventID is the event's public id, sent to Svix as eventId. Defaults to
	// a new UUIDv7. Pass your own, derived from the operation (a request's
	// idempotency key, uuid.NewSHA1 of a business key), to make a retry
	// safe: if a commit's reply was lost and the transaction did commit, the
	// retry's Append fails with ErrDuplicateEventID while the first event is
	// pending, and Svix deduplicates it by eventId once it was delivered.
	EventID uuid.UUID
	// Channels are the Svix channels of the message, which endpoints can
	// filter by: at most 10, distinct, each 1 to 128 characters of
	// [a-zA-Z0-9-_.:]. Defaults to none.
	Channels []string
	// Tags are the Svix tags of the message, which messages can be listed
	// by: at most 5, distinct, each 1 to 128 characters of
	// [a-zA-Z0-9-_./\#]. Defaults to none.
	Tags []string
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
		return AppendResult{}, fmt.Errorf("outbox: %w", verr)
	}
	eventID, err := eventIDFor(&ap)
	if err != nil {
		return AppendResult{}, err
	}
	var id int64
	// The caller's span context goes with the event: the relay's delivery
	// span is its child.
	traceparent, tracestate := telemetry.TraceContext(ctx)
	// The payload goes as text so every pgx query mode (including exec and
	// simple_protocol, used behind PgBouncer) sends it as JSON, not bytea.
	err = dbtx.QueryRow(ctx, p.insertSQL, pgtype.UUID{Bytes: eventID, Valid: true},
		ap.OrganizationID, string(ap.EventType), string(payload), text(traceparent), text(tracestate), textArray(ap.Channels), textArray(ap.Tags)).Scan(&id)
	if err != nil {
		return AppendResult{}, fmt.Errorf("outbox: append event: %w", duplicateEventID(err))
	}
	p.tel.countAppended(ctx, ap.EventType, 1)
	if r, ok := dbtx.(appendRecorder); ok {
		r.recordAppend(ap.OrganizationID)
	}
	return AppendResult{ID: id, OrganizationID: ap.OrganizationID, EventID: eventID}, nil
}

// text is s as a nullable text parameter: NULL when empty.
func text(s string) pgtype.Text { return pgtype.Text{String: s, Valid: s != ""} }

// textArray is ss as a nullable text[] parameter: NULL (a nil slice)
// when empty.
func textArray(ss []string) []string {
	if len(ss) == 0 {
		return nil
	}
	return ss
}

// eventIDFor returns the caller's event id, or a new one.
func eventIDFor(ap *AppendParams) (uuid.UUID, error) {
	if ap.EventID != (uuid.UUID{}) {
		return ap.EventID, nil
	}
	return newEventID()
}

const (
	// uniqueEventIDIndex is the index migration 0002 makes.
	uniqueEventIDIndex = "outbox_events_event_id_key"
	// uniqueViolation is PostgreSQL's SQLSTATE unique_violation.
	uniqueViolation = "23505"
)

// duplicateEventID adds ErrDuplicateEventID to a unique violation of the
// event id.
func duplicateEventID(err error) error {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && pgErr.Code == uniqueViolation && pgErr.ConstraintName == uniqueEventIDIndex {
		return fmt.Errorf("%w: %w", ErrDuplicateEventID, err)
	}
	return err
}

func newEventID() (uuid.UUID, error) {
	id, err := uuid.NewV7()
	if err != nil {
		return uuid.UUID{}, fmt.Errorf("outbox: mint event id: %w", err)
	}
	return id, nil
}
