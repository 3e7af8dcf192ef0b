package relay

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"
)

// ErrInvalidPause is wrapped by PauseOrganization's errors for parameters
// it refuses; the error names the field and the rule.
var ErrInvalidPause = errors.New("invalid pause")

// MaxPauseReason is the longest PauseParams.Reason, in characters.
const MaxPauseReason = 500

// DefaultPausesLimit is how many pauses Pauses lists at most.
const DefaultPausesLimit = 1000

// PauseParams says which organization to pause, why, and until when.
type PauseParams struct {
	// OrganizationID is the organization to pause. Required.
	OrganizationID string
	// Reason says why, for the operators who read it (status, console).
	// Required, at most MaxPauseReason characters.
	Reason string
	// Until ends the pause by itself; it must be in the future (on the
	// database's clock). Defaults to the zero time: until resumed.
	Until time.Time
}

// OrganizationPause is an operator's pause of an organization.
type OrganizationPause struct {
	// OrganizationID is the paused organization.
	OrganizationID string `json:"organization_id"`
	// Reason says why it was paused.
	Reason string `json:"reason"`
	// PausedAt is when the pause began.
	PausedAt time.Time `json:"paused_at"`
	// Until is when the pause ends by itself; nil: until resumed.
	Until *time.Time `json:"until,omitempty"`
}

// PauseOrganization pauses an organization: no relay starts a turn of its
// lane until the pause ends (p.Until) or ResumeOrganization lifts it. A turn
// under way when the pause is set finishes the events it claimed, so the
// pause is in force within one turn, at every relay and in
// DrainOrganization (which reports the lane Busy until the pause's end).
// Its events stay pending, in order, and nothing is lost; producers go on
// appending. Pausing a paused organization replaces its reason and end.
func (a *Admin) PauseOrganization(ctx context.Context, p PauseParams) (OrganizationPause, error) {
	if err := p.validate(); err != nil {
		return OrganizationPause{}, err
	}
	var until pgtype.Timestamptz
	if !p.Until.IsZero() {
		until = pgtype.Timestamptz{Time: p.Until, Valid: true}
	}
	rows, err := a.db.Query(ctx, a.q.pause, p.OrganizationID, p.Reason, until)
	if err != nil {
		return OrganizationPause{}, fmt.Errorf("relay: pause %s: %w", p.OrganizationID, err)
	}
	out, err := pgx.CollectRows(rows, scanPause)
	if err != nil {
		return OrganizationPause{}, fmt.Errorf("relay: pause %s: %w", p.OrganizationID, err)
	}
	if len(out) == 0 {
		return OrganizationPause{}, fmt.Errorf("relay: Until %s is not in the future: %w", p.Until.Format(time.RFC3339), ErrInvalidPause)
	}
	return out[0], nil
}

func (p PauseParams) validate() error {
	var errs []error
	bad := func(field, rule string) {
		errs = append(errs, fmt.Errorf("relay: %s %s: %w", field, rule, ErrInvalidPause))
	}
	if p.OrganizationID == "" {
		bad("OrganizationID", "must not be empty")
	}
	switch reason := strings.TrimSpace(p.Reason); {
	case reason == "":
		bad("Reason", "must not be empty")
	case utf8.RuneCountInString(p.Reason) > MaxPauseReason:
		bad("Reason", fmt.Sprintf("must be at most %d characters", MaxPauseReason))
	}
	return errors.Join(errs...)
}

// ResumeOrganization lifts an organization's pause, and reports whether one
// was in force (an ended pause is cleared too, and reported false). Its
// lane is due at once: a running Relay this Admin came from delivers it
// right away, any other relay at its next sweep.
func (a *Admin) ResumeOrganization(ctx context.Context, organizationID string) (bool, error) {
	rows, err := a.db.Query(ctx, a.q.resume, organizationID)
	if err != nil {
		return false, fmt.Errorf("relay: resume %s: %w", organizationID, err)
	}
	was, err := pgx.CollectRows(rows, pgx.RowTo[bool])
	if err != nil {
		return false, fmt.Errorf("relay: resume %s: %w", organizationID, err)
	}
	if len(was) > 0 && a.onRequeue != nil {
		a.onRequeue(organizationID)
	}
	return len(was) > 0 && was[0], nil
}

// Pauses lists the pauses in force, by organization, at most
// DefaultPausesLimit of them.
func (a *Admin) Pauses(ctx context.Context) ([]OrganizationPause, error) {
	rows, err := a.db.Query(ctx, a.q.pauses, DefaultPausesLimit)
	if err != nil {
		return nil, fmt.Errorf("relay: list pauses: %w", err)
	}
	out, err := pgx.CollectRows(rows, scanPause)
	if err != nil {
		return nil, fmt.Errorf("relay: list pauses: %w", err)
	}
	return out, nil
}

func scanPause(row pgx.CollectableRow) (OrganizationPause, error) {
	var p OrganizationPause
	err := row.Scan(&p.OrganizationID, &p.Reason, &p.PausedAt, &p.Until)
	return p, err
}

// LaneState is an organization's lane: who holds it, and what it waits for.
type LaneState struct {
	// Holder is the relay instance holding the lane (RelayInstance.Instance);
	// nil when no heartbeating relay does.
	Holder *uuid.UUID `json:"holder,omitempty"`
	// LeasedBy names the relay (Config.ID) holding the lane under a live
	// lease; empty when none does.
	LeasedBy string `json:"leased_by,omitempty"`
	// LeasedUntil is when that lease ends; nil when none is live.
	LeasedUntil *time.Time `json:"leased_until,omitempty"`
	// RateLimitedUntil is set while the lane waits out a 429.
	RateLimitedUntil *time.Time `json:"rate_limited_until,omitempty"`
	// DueAt is when a relay scheduled the lane's next turn; nil when none
	// has (nothing pending, or events no sweep has come to yet).
	DueAt *time.Time `json:"due_at,omitempty"`
	// Pause is the operator's pause in force; nil when none is.
	Pause *OrganizationPause `json:"pause,omitempty"`
}

// Lanes reads the lanes of the given organizations (one query, by key);
// an organization with no lane is absent from the map.
func (a *Admin) Lanes(ctx context.Context, organizationIDs []string) (map[string]LaneState, error) {
	out := make(map[string]LaneState, len(organizationIDs))
	if len(organizationIDs) == 0 {
		return out, nil
	}
	rows, err := a.db.Query(ctx, a.q.lanes, organizationIDs)
	if err != nil {
		return nil, fmt.Errorf("relay: read lanes: %w", err)
	}
	var (
		org, leasedBy       string
		holder              pgtype.UUID
		leased, limited     *time.Time
		due, pausedAt, till *time.Time
		suspended           bool
		reason              *string
	)
	_, err = pgx.ForEachRow(rows, []any{&org, &holder, &leasedBy, &leased, &limited, &due, &suspended, &reason, &pausedAt, &till}, func() error {
		// Copies: pgx reuses a non-nil pointer's target for the next row.
		l := LaneState{LeasedBy: leasedBy, LeasedUntil: copyTime(leased), RateLimitedUntil: copyTime(limited), DueAt: copyTime(due)}
		if holder.Valid {
			id := uuid.UUID(holder.Bytes)
			l.Holder = &id
		}
		if leased == nil {
			l.LeasedBy, l.Holder = "", nil
		}
		if suspended && pausedAt != nil {
			l.Pause = &OrganizationPause{OrganizationID: org, Reason: deref0(reason), PausedAt: *pausedAt, Until: copyTime(till)}
		}
		out[org] = l
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("relay: read lanes: %w", err)
	}
	return out, nil
}

func copyTime(t *time.Time) *time.Time {
	if t == nil {
		return nil
	}
	c := *t
	return &c
}
