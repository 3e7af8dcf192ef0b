package relay

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"
)

// ErrNoFilter is returned by RequeueDeadLetters and PurgeDeadLetters when
// the selection matches everything without saying so (DeadLetterSelection.All).
var ErrNoFilter = errors.New("empty dead-letter selection (set All to act on every dead letter)")

// DefaultDeadLetterListLimit is how many dead letters DeadLetters returns
// when DeadLetterListParams.Limit is 0.
const DefaultDeadLetterListLimit = 100

// DeadLetter is an event Svix refused for good or that ran out of attempts.
type DeadLetter struct {
	// ID is the event's row id, kept from the outbox.
	ID int64 `json:"id"`
	// EventID is the event's public id (its Svix eventId).
	EventID uuid.UUID `json:"event_id"`
	// OrganizationID is the organization the event belongs to.
	OrganizationID string `json:"organization_id"`
	// EventType is the event's Svix event type.
	EventType string `json:"event_type"`
	// Payload is the event's body, as appended.
	Payload json.RawMessage `json:"payload"`
	// CreatedAt is when the event was appended.
	CreatedAt time.Time `json:"created_at"`
	// Attempts counts the calls made for it.
	Attempts int `json:"attempts"`
	// LastError says why it was dead-lettered.
	LastError string `json:"last_error"`
	// StatusCode is Svix's HTTP status, 0 when Svix never answered.
	StatusCode int `json:"status_code,omitempty"`
	// ResponseBody is Svix's answer, when it gave one.
	ResponseBody string `json:"response_body,omitempty"`
	// DeadAt is when it was dead-lettered.
	DeadAt time.Time `json:"dead_at"`
}

// DeadLetterFilter selects dead letters. Empty fields match everything.
type DeadLetterFilter struct {
	// OrganizationID matches one organization's dead letters.
	OrganizationID string
	// EventType matches one event type.
	EventType string
	// Since matches dead letters that died at or after it.
	Since time.Time
	// IDs matches these outbox ids.
	IDs []int64
	// StatusCode matches dead letters Svix answered with this HTTP status;
	// -1 matches those Svix never answered (status 0). Defaults to 0, all.
	StatusCode int
	// Before matches dead letters that died before it.
	Before time.Time
}

// empty reports whether f matches everything.
func (f DeadLetterFilter) empty() bool {
	return f.OrganizationID == "" && f.EventType == "" && f.Since.IsZero() && len(f.IDs) == 0 &&
		f.StatusCode == 0 && f.Before.IsZero()
}

func (f DeadLetterFilter) args() []any {
	var since pgtype.Timestamptz
	if !f.Since.IsZero() {
		since = pgtype.Timestamptz{Time: f.Since, Valid: true}
	}
	ids := f.IDs
	if ids == nil {
		ids = []int64{}
	}
	var before pgtype.Timestamptz
	if !f.Before.IsZero() {
		before = pgtype.Timestamptz{Time: f.Before, Valid: true}
	}
	status := f.StatusCode
	if status < 0 {
		status = -1 // matched against coalesce(status_code, 0) below
	}
	return []any{f.OrganizationID, f.EventType, since, ids, status, before}
}

// DeadLetterListParams selects the dead letters DeadLetters lists.
type DeadLetterListParams struct {
	DeadLetterFilter
	// Limit caps how many are returned. Defaults to
	// DefaultDeadLetterListLimit (100).
	Limit int
}

// DeadLetterSelection selects the dead letters a bulk action (requeue,
// purge) applies to. An empty filter is refused with ErrNoFilter unless All
// is set, so that "everything" is always said out loud.
type DeadLetterSelection struct {
	DeadLetterFilter
	// All acts on every dead letter the filter matches, even when the
	// filter is empty. Defaults to false.
	All bool
}

// Validate returns ErrNoFilter when s selects everything without All.
func (s DeadLetterSelection) Validate() error {
	if s.empty() && !s.All {
		return fmt.Errorf("relay: %w", ErrNoFilter)
	}
	return nil
}

// DeadLetters returns matching dead letters in id order, at most p.Limit.
func (a *Admin) DeadLetters(ctx context.Context, p DeadLetterListParams) ([]DeadLetter, error) {
	if p.Limit <= 0 {
		p.Limit = DefaultDeadLetterListLimit
	}
	rows, err := a.db.Query(ctx, a.q.listDeadLetters, append(p.args(), p.Limit)...)
	if err != nil {
		return nil, fmt.Errorf("relay: list dead letters: %w", err)
	}
	var (
		out []DeadLetter
		dl  DeadLetter
		id  pgtype.UUID
	)
	_, err = pgx.ForEachRow(rows, []any{&dl.ID, &id, &dl.OrganizationID, &dl.EventType, &dl.Payload,
		&dl.CreatedAt, &dl.Attempts, &dl.LastError, &dl.StatusCode, &dl.ResponseBody, &dl.DeadAt}, func() error {
		dl.EventID = id.Bytes
		out = append(out, dl)
		dl.Payload = nil // ForEachRow reuses the scan targets
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("relay: list dead letters: %w", err)
	}
	return out, nil
}

// RequeueDeadLetters moves the selected dead letters back into the outbox
// with a fresh attempt count, keeping their id and event id (so Svix still
// deduplicates them), and returns how many it moved.
func (a *Admin) RequeueDeadLetters(ctx context.Context, s DeadLetterSelection) (int, error) {
	if err := s.Validate(); err != nil {
		return 0, err
	}
	rows, err := a.db.Query(ctx, a.q.requeueDeadLetters, s.args()...)
	if err != nil {
		return 0, fmt.Errorf("relay: requeue dead letters: %w", err)
	}
	orgs, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return 0, fmt.Errorf("relay: requeue dead letters: %w", err)
	}
	if a.onRequeue != nil && len(orgs) > 0 {
		a.onRequeue(orgs...)
	}
	return len(orgs), nil
}

// CountDeadLetters counts the dead letters f matches: what a requeue or a
// purge of the same filter would act on, for a confirmation that states it.
func (a *Admin) CountDeadLetters(ctx context.Context, f DeadLetterFilter) (int, error) {
	var n int
	if err := a.db.QueryRow(ctx, a.q.countDeadLetters, f.args()...).Scan(&n); err != nil {
		return 0, fmt.Errorf("relay: count dead letters: %w", err)
	}
	return n, nil
}

// PurgeDeadLetters deletes the selected dead letters for good and returns
// how many.
func (a *Admin) PurgeDeadLetters(ctx context.Context, s DeadLetterSelection) (int, error) {
	if err := s.Validate(); err != nil {
		return 0, err
	}
	tag, err := a.db.Exec(ctx, a.q.purgeDeadLetters, s.args()...)
	if err != nil {
		return 0, fmt.Errorf("relay: purge dead letters: %w", err)
	}
	return int(tag.RowsAffected()), nil
}
