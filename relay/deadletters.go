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

	"github.com/outboxrelay/outbox"
)

// ErrNoFilter is returned by Requeue and Purge when the filter matches
// everything without saying so (DeadLetterFilter.All).
var ErrNoFilter = errors.New("relay: dead-letter filter is empty; set All to act on every dead letter")

// DeadLetter is an event Svix refused for good or that ran out of attempts.
type DeadLetter struct {
	ID             int64           `json:"id"`
	EventID        uuid.UUID       `json:"event_id"`
	OrganizationID string          `json:"organization_id"`
	EventType      string          `json:"event_type"`
	Payload        json.RawMessage `json:"payload"`
	CreatedAt      time.Time       `json:"created_at"`
	Attempts       int             `json:"attempts"`
	// LastError says why it was dead-lettered.
	LastError string `json:"last_error"`
	// StatusCode is Svix's HTTP status, 0 when Svix never answered.
	StatusCode int `json:"status_code,omitempty"`
	// ResponseBody is Svix's answer, when it gave one.
	ResponseBody string    `json:"response_body,omitempty"`
	DeadAt       time.Time `json:"dead_at"`
}

// DeadLetterFilter selects dead letters. Empty fields match everything.
type DeadLetterFilter struct {
	OrganizationID string
	EventType      string
	// Since matches dead letters that died at or after it.
	Since time.Time
	// IDs matches these outbox ids.
	IDs []int64
	// All must be set for Requeue or Purge with no other criterion.
	All bool
	// Limit caps List. Defaults to 100.
	Limit int
}

func (f DeadLetterFilter) empty() bool {
	return f.OrganizationID == "" && f.EventType == "" && f.Since.IsZero() && len(f.IDs) == 0
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
	return []any{f.OrganizationID, f.EventType, since, ids}
}

// DeadLetters lists, requeues and purges dead letters. It needs no Svix
// token, so operators' tools can use it alone.
type DeadLetters struct {
	db        outbox.DBTX
	q         queries
	onRequeue func(orgs ...string)
}

// NewDeadLetters returns the dead-letter API for the tables in schema ("" =
// the connection's search_path).
func NewDeadLetters(db outbox.DBTX, schema string) *DeadLetters {
	return &DeadLetters{db: db, q: newQueries(schema)}
}

// DeadLetters returns the dead-letter API of the relay's tables; what it
// requeues is queued for delivery at once.
func (r *Relay) DeadLetters() *DeadLetters {
	return &DeadLetters{db: r.pool, q: r.q, onRequeue: r.enqueue}
}

// List returns matching dead letters in id order, at most f.Limit.
func (d *DeadLetters) List(ctx context.Context, f DeadLetterFilter) ([]DeadLetter, error) {
	if f.Limit <= 0 {
		f.Limit = 100
	}
	rows, err := d.db.Query(ctx, d.q.listDead, append(f.args(), f.Limit)...)
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
		dl.Payload = nil
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("relay: list dead letters: %w", err)
	}
	return out, nil
}

// Requeue moves matching dead letters back into the outbox with a fresh
// attempt count, keeping their id and event id (so Svix still deduplicates
// them), and returns how many it moved.
func (d *DeadLetters) Requeue(ctx context.Context, f DeadLetterFilter) (int, error) {
	if f.empty() && !f.All {
		return 0, ErrNoFilter
	}
	rows, err := d.db.Query(ctx, d.q.requeueDead, f.args()...)
	if err != nil {
		return 0, fmt.Errorf("relay: requeue dead letters: %w", err)
	}
	orgs, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return 0, fmt.Errorf("relay: requeue dead letters: %w", err)
	}
	if d.onRequeue != nil && len(orgs) > 0 {
		d.onRequeue(orgs...)
	}
	return len(orgs), nil
}

// Purge deletes matching dead letters for good and returns how many.
func (d *DeadLetters) Purge(ctx context.Context, f DeadLetterFilter) (int, error) {
	if f.empty() && !f.All {
		return 0, ErrNoFilter
	}
	tag, err := d.db.Exec(ctx, d.q.purgeDead, f.args()...)
	if err != nil {
		return 0, fmt.Errorf("relay: purge dead letters: %w", err)
	}
	return int(tag.RowsAffected()), nil
}
