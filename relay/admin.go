package relay

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/outboxrelay/outbox"
	"github.com/outboxrelay/outbox/internal/config"
	"github.com/outboxrelay/outbox/internal/sqlname"
)

// AdminConfig tunes an Admin. The zero value is ready to use.
type AdminConfig struct {
	// Schema is the PostgreSQL schema holding outbox's tables. Defaults to
	// "", which leaves names unqualified so the connection's search_path
	// decides.
	Schema string
}

// Admin reads and repairs an outbox installation: its status and its dead
// letters. It needs no Svix token, so operators' tools (the outbox command
// among them) use it alone. It is safe for concurrent use.
type Admin struct {
	db outbox.DBTX
	q  queries
	// onRequeue, when set, is told the organizations of requeued events and
	// resumed lanes, so a running Relay delivers them at once, whatever it
	// thought they were waiting for.
	onRequeue func(orgs ...string)
}

// NewAdmin returns an Admin reading outbox's tables through db, or an error
// wrapping ErrInvalidConfig (a *ConfigError) that names the bad field.
func NewAdmin(db outbox.DBTX, cfg AdminConfig) (*Admin, error) {
	var errs []error
	if db == nil {
		errs = append(errs, &ConfigError{Field: "db", Rule: "must not be nil"})
	}
	if rule := sqlname.SchemaRule(cfg.Schema); rule != "" {
		errs = append(errs, &ConfigError{Field: "Schema", Rule: rule, Err: sqlname.ErrInvalidSchema})
	}
	if err := config.Join("relay", errs); err != nil {
		return nil, err
	}
	return &Admin{db: db, q: newQueries(cfg.Schema)}, nil
}

// Admin returns an Admin on the relay's tables; what it requeues is queued
// for delivery at once.
func (r *Relay) Admin() *Admin {
	return &Admin{db: r.pool, q: r.q, onRequeue: r.enqueueDue}
}

// OrganizationStatus is one organization's backlog.
type OrganizationStatus struct {
	// OrganizationID is the organization, or "TOTAL" in Status.Totals.
	OrganizationID string `json:"organization_id"`
	// Pending counts events not yet settled.
	Pending int `json:"pending"`
	// OldestPendingAge is the age, in seconds, of the oldest pending event
	// (0 when none is pending).
	OldestPendingAge float64 `json:"oldest_pending_age_seconds"`
	// WaitingRetry counts pending events waiting for their retry time.
	WaitingRetry int `json:"waiting_for_retry"`
	// DeadLetters counts dead letters.
	DeadLetters int `json:"dead_letters"`
}

// Status is an installation's backlog, per organization and in total.
type Status struct {
	// Organizations lists every organization with pending events or dead
	// letters, most pending first.
	Organizations []OrganizationStatus `json:"organizations"`
	// Totals adds them up; its OldestPendingAge is the oldest of all.
	Totals OrganizationStatus `json:"totals"`
}

// Status reads the backlog of every organization: one query over the
// pending events and the dead letters (not the delivery history).
func (a *Admin) Status(ctx context.Context) (Status, error) {
	rows, err := a.db.Query(ctx, a.q.status)
	if err != nil {
		return Status{}, fmt.Errorf("relay: read status: %w", err)
	}
	st := Status{Organizations: []OrganizationStatus{}, Totals: OrganizationStatus{OrganizationID: "TOTAL"}}
	var o OrganizationStatus
	_, err = pgx.ForEachRow(rows, []any{&o.OrganizationID, &o.Pending, &o.OldestPendingAge, &o.WaitingRetry, &o.DeadLetters}, func() error {
		st.Organizations = append(st.Organizations, o)
		st.Totals.Pending += o.Pending
		st.Totals.WaitingRetry += o.WaitingRetry
		st.Totals.DeadLetters += o.DeadLetters
		st.Totals.OldestPendingAge = max(st.Totals.OldestPendingAge, o.OldestPendingAge)
		return nil
	})
	if err != nil {
		return Status{}, fmt.Errorf("relay: read status: %w", err)
	}
	return st, nil
}
