package relay

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/outboxrelay/outbox"
)

// EventState is where an event is in its life: pending, delivered,
// skipped, dead-lettered, or unknown to the outbox.
type EventState string

const (
	// EventPending: in outbox_events, not settled yet (never tried, waiting
	// for a retry, or being sent).
	EventPending EventState = "pending"
	// EventDelivered: Svix created the message (EventRecord.SvixMessageID).
	EventDelivered EventState = "delivered"
	// EventSkipped: settled without a call, the Resolver said the
	// organization has no webhooks.
	EventSkipped EventState = "skipped"
	// EventDeadLettered: Svix refused it for good, or it ran out of
	// attempts; it stays until requeued or purged.
	EventDeadLettered EventState = "dead_lettered"
	// EventUnknown: in none of those places. The event was never appended,
	// its transaction rolled back, or it settled longer ago than the
	// delivery history is kept (Config.DeliveredRetention, 24h by default;
	// none at all when it is negative), or it was a dead letter that was
	// purged.
	EventUnknown EventState = "unknown"
)

// valid reports whether s is a state an event can be listed in.
func (s EventState) valid() bool {
	switch s {
	case EventPending, EventDelivered, EventSkipped, EventDeadLettered:
		return true
	}
	return false
}

// EventRecord is what the outbox knows of one event. State says which of
// the other fields are set: each is documented with the states that have
// it; the others are zero.
type EventRecord struct {
	// State is where the event is.
	State EventState `json:"state"`
	// EventID is the event's public id (its Svix eventId), in every state.
	EventID uuid.UUID `json:"event_id"`
	// ID is the event's row id (the one dead-letter commands take). Not
	// unknown.
	ID int64 `json:"id,omitempty"`
	// OrganizationID is the organization the event belongs to. Not unknown.
	OrganizationID string `json:"organization_id,omitempty"`
	// EventType is the event's Svix event type. Not unknown.
	EventType string `json:"event_type,omitempty"`
	// CreatedAt is when the event was appended. Not unknown.
	CreatedAt time.Time `json:"created_at,omitzero"`
	// Attempts counts the attempts to deliver it whose outcome the relay
	// recorded: a delivery, a skip, a retry, a refusal (quick retries within
	// one turn are one attempt). An attempt in flight is counted when it
	// ends; one that made no call or was cut short (a 429, a refused token,
	// a shutdown, a lost lease, a crash) is not counted.
	Attempts int `json:"attempts"`

	// NextAttemptAt is when a pending event is retried; nil (never tried,
	// or its retry was taken back) or a time in the past is due now. Due
	// events still wait for the events before them in their organization,
	// one at a time, and for their lane's pause.
	NextAttemptAt *time.Time `json:"next_attempt_at,omitempty"`
	// LastAttemptAt is when a pending event's last failed attempt was
	// recorded; nil when none was.
	LastAttemptAt *time.Time `json:"last_attempt_at,omitempty"`
	// LastError says why a pending event's last attempt failed, or why a
	// dead-lettered one was refused.
	LastError string `json:"last_error,omitempty"`
	// PausedUntil, for a pending event, is set while its organization's
	// lane is paused after Svix answered 429: nothing of the organization
	// is sent before then.
	PausedUntil *time.Time `json:"paused_until,omitempty"`
	// HeldBy, for a pending event, names the relay (Config.ID) working its
	// organization's lane right now, under a live lease: the event may be
	// in flight. Empty when no relay holds the lane.
	HeldBy string `json:"held_by,omitempty"`

	// SettledAt is when a delivered or skipped event was settled.
	SettledAt *time.Time `json:"settled_at,omitempty"`
	// SvixMessageID is the message Svix created for a delivered event.
	SvixMessageID string `json:"svix_message_id,omitempty"`

	// DeadAt is when a dead-lettered event died.
	DeadAt *time.Time `json:"dead_at,omitempty"`
	// StatusCode is Svix's HTTP status for a dead-lettered event, 0 when
	// Svix never answered (out of attempts on timeouts, a destination that
	// cannot be a Svix path).
	StatusCode int `json:"status_code,omitempty"`
	// ResponseBody is Svix's answer for a dead-lettered event, when it gave
	// one.
	ResponseBody string `json:"response_body,omitempty"`
}

// FindEvent reports what the outbox knows of the event whose public id is
// eventID (outbox.AppendResult.EventID, which is also its Svix eventId):
// pending, delivered, skipped or dead-lettered, with the fields of that
// state. It reads the pending events, the dead letters and the delivery
// history in one query.
//
// An event found nowhere is EventUnknown with a nil error: that is an
// answer, not a failure (never appended, rolled back, purged, or settled
// before the delivery history's retention window, Config.DeliveredRetention,
// 24h by default). The error is for the query alone.
//
// When a producer appended the same event id again after it had settled
// or died, the pending row is its state, or else the latest settlement or
// death.
func (a *Admin) FindEvent(ctx context.Context, eventID uuid.UUID) (EventRecord, error) {
	rows, err := a.db.Query(ctx, a.q.events.find, eventID)
	if err != nil {
		return EventRecord{}, fmt.Errorf("relay: find event %s: %w", eventID, err)
	}
	found, err := pgx.CollectRows(rows, scanEvent)
	if err != nil {
		return EventRecord{}, fmt.Errorf("relay: find event %s: %w", eventID, err)
	}
	if len(found) == 0 {
		return EventRecord{State: EventUnknown, EventID: eventID}, nil
	}
	return found[0], nil
}

// ListEvents defaults and bounds.
const (
	// DefaultListEventsLimit is how many events ListEvents returns when
	// ListEventsParams.Limit is 0.
	DefaultListEventsLimit = 100
	// MaxListEventsLimit is the most ListEventsParams.Limit may ask for.
	MaxListEventsLimit = 1000
	// DefaultListEventsSince is how far back ListEvents looks when
	// ListEventsParams.Since is zero.
	DefaultListEventsSince = 24 * time.Hour
)

// ErrInvalidListEventsParams is wrapped by the *outbox.ValidationError that
// ListEvents (and ListEventsParams.Validate) returns for a bad parameter,
// whose Field names it (match it with errors.As).
var ErrInvalidListEventsParams = errors.New("invalid ListEventsParams")

// ListEventsParams selects the events ListEvents lists.
type ListEventsParams struct {
	// OrganizationID is the organization whose events to list. Required.
	OrganizationID string
	// Since lists the events created at or after it. Defaults to zero:
	// DefaultListEventsSince (24h) ago. A pending event older than that is
	// not listed; FindEvent finds it by id whatever its age.
	Since time.Time
	// State lists the events in this state only. Defaults to "": every
	// state. EventUnknown is refused (nothing is listed as unknown).
	State EventState
	// Limit caps how many are returned, 1 to MaxListEventsLimit (1000).
	// Defaults to 0: DefaultListEventsLimit (100).
	Limit int
}

// Validate returns an error wrapping a *outbox.ValidationError that wraps
// ErrInvalidListEventsParams and naming the first bad field, or nil.
func (p ListEventsParams) Validate() error {
	bad := func(field, rule string) error {
		return fmt.Errorf("relay: %w", &outbox.ValidationError{Index: -1, Field: field, Rule: rule, Err: ErrInvalidListEventsParams})
	}
	switch {
	case p.OrganizationID == "":
		return bad("OrganizationID", "must be set: the organization whose events to list")
	case p.State != "" && !p.State.valid():
		return bad("State", fmt.Sprintf("must be empty (any), %s, %s, %s or %s (got %q)",
			EventPending, EventDelivered, EventSkipped, EventDeadLettered, p.State))
	case p.Limit < 0 || p.Limit > MaxListEventsLimit:
		return bad("Limit", fmt.Sprintf("must be 1 to %d, or 0 for %d (got %d)", MaxListEventsLimit, DefaultListEventsLimit, p.Limit))
	}
	return nil
}

// ListEvents lists an organization's events created since p.Since, newest
// (highest id) first, at most p.Limit, from the pending events, the dead
// letters and the delivery history (one query; settled events only for the
// history's retention window, 24h by default). An event appended again
// with its own id after it settled or died is listed once per record. A
// bad parameter is refused before any SQL runs (see
// ListEventsParams.Validate).
//
// Pending events and dead letters are read through their
// (organization_id, id) indexes. The history has no index by organization:
// its hourly partitions settled since p.Since are scanned, so a long Since
// on a busy installation reads that much of the history.
func (a *Admin) ListEvents(ctx context.Context, p ListEventsParams) ([]EventRecord, error) {
	if err := p.Validate(); err != nil {
		return nil, err
	}
	if p.Limit == 0 {
		p.Limit = DefaultListEventsLimit
	}
	var since *time.Time // NULL: DefaultListEventsSince before the database's now()
	if !p.Since.IsZero() {
		since = &p.Since
	}
	rows, err := a.db.Query(ctx, a.q.events.list, p.OrganizationID, since, string(p.State), p.Limit, DefaultListEventsSince.Seconds())
	if err != nil {
		return nil, fmt.Errorf("relay: list events of %s: %w", p.OrganizationID, err)
	}
	out, err := pgx.CollectRows(rows, scanEvent)
	if err != nil {
		return nil, fmt.Errorf("relay: list events of %s: %w", p.OrganizationID, err)
	}
	return out, nil
}

// scanEvent reads one row of eventColumns.
func scanEvent(row pgx.CollectableRow) (EventRecord, error) {
	var (
		ev                                 EventRecord
		state                              string
		id                                 pgtype.UUID
		lastError, heldBy, messageID, body *string
		statusCode                         *int
	)
	err := row.Scan(&state, &ev.ID, &id, &ev.OrganizationID, &ev.EventType, &ev.CreatedAt, &ev.Attempts,
		&ev.NextAttemptAt, &ev.LastAttemptAt, &lastError, &ev.PausedUntil, &heldBy,
		&ev.SettledAt, &messageID, &ev.DeadAt, &statusCode, &body)
	if err != nil {
		return EventRecord{}, err
	}
	ev.State, ev.EventID = EventState(state), id.Bytes
	ev.LastError, ev.HeldBy, ev.SvixMessageID, ev.ResponseBody = deref0(lastError), deref0(heldBy), deref0(messageID), deref0(body)
	ev.StatusCode = deref0(statusCode)
	return ev, nil
}

// deref0 returns *p, or the zero value when p is nil.
func deref0[T any](p *T) T {
	var zero T
	if p == nil {
		return zero
	}
	return *p
}
