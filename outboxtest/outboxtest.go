// Package outboxtest helps users test code that appends outbox events, in
// the manner of River's rivertest: assert inside the test's own transaction
// that a handler appended (or did not append) the events it should.
//
//	tx, _ := pool.Begin(ctx)
//	defer tx.Rollback(ctx)
//	handler.CreateAuditLog(ctx, tx, ...)
//	ev := outboxtest.RequireAppended(t, tx, outboxtest.Match{
//		OrganizationID: "org_42",
//		EventType:      outbox.EventTypeAuditLogCreated,
//		Payload:        map[string]any{"action": "login"}, // a subset of the payload
//	})
//
// Failure messages list what was appended instead. The package-level
// functions read the tables the connection's search_path finds; a [Checker]
// made with [Config.Schema] names the schema, as outbox.Config does for the
// producer. Package svixtest, beside this one, is an in-process fake of the
// Svix API for tests of the relay.
package outboxtest

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/outboxrelay/outbox"
	"github.com/outboxrelay/outbox/internal/sqlname"
)

// Match selects appended events. Empty fields match everything.
type Match struct {
	// OrganizationID matches the event's organization.
	OrganizationID string
	// EventType matches the event's type.
	EventType outbox.EventType
	// Payload matches events whose payload contains it (PostgreSQL's jsonb
	// @>: every key given must be present with an equal value, nested
	// objects compared the same way). Any value encoding/json marshals to an
	// object, or json.RawMessage.
	Payload any
}

// Config tunes a Checker. The zero value is ready to use.
type Config struct {
	// Schema is the PostgreSQL schema holding outbox's tables. Defaults to
	// "", which leaves the table name unqualified so the connection's
	// search_path decides.
	Schema string
}

// Checker asserts on the events appended to one schema's outbox. It is safe
// for concurrent use.
type Checker struct {
	selectSQL string
}

// New returns a Checker, or an error wrapping outbox.ErrInvalidConfig (and
// migrations.ErrInvalidSchema) when cfg.Schema cannot be a schema name.
func New(cfg Config) (*Checker, error) {
	if rule := sqlname.SchemaRule(cfg.Schema); rule != "" {
		return nil, fmt.Errorf("outboxtest: %w", &outbox.ConfigError{Field: "Schema", Rule: rule, Err: sqlname.ErrInvalidSchema})
	}
	return &Checker{selectSQL: `SELECT id, event_id, organization_id, event_type, payload, created_at
		FROM ` + sqlname.Schema(cfg.Schema).Table(sqlname.Events) + `
		WHERE ($1 = '' OR organization_id = $1)
		  AND ($2 = '' OR event_type = $2)
		  AND ($3::jsonb IS NULL OR payload @> $3::jsonb)
		ORDER BY id`}, nil
}

// defaultChecker serves the package-level functions.
var defaultChecker, _ = New(Config{})

// AppendedEvent is an event waiting in the outbox, as Append stored it.
type AppendedEvent struct {
	ID             int64
	EventID        uuid.UUID
	OrganizationID string
	EventType      outbox.EventType
	Payload        json.RawMessage
	CreatedAt      time.Time
}

// Appended returns the events waiting in the outbox that match m, in the
// order they were appended. It sees what db sees: inside the test's
// transaction, that includes uncommitted events.
func Appended(ctx context.Context, db outbox.DBTX, m Match) ([]AppendedEvent, error) {
	return defaultChecker.Appended(ctx, db, m)
}

// RequireAppended fails the test unless at least one appended event matches
// m, and returns the first (oldest) match.
func RequireAppended(tb testing.TB, db outbox.DBTX, m Match) AppendedEvent {
	tb.Helper()
	return defaultChecker.RequireAppended(tb, db, m)
}

// RequireNotAppended fails the test if any appended event matches m.
func RequireNotAppended(tb testing.TB, db outbox.DBTX, m Match) {
	tb.Helper()
	defaultChecker.RequireNotAppended(tb, db, m)
}

// RequireManyAppended fails the test unless the appended events are
// exactly want, one match per event, in the order they were appended, and
// returns them.
func RequireManyAppended(tb testing.TB, db outbox.DBTX, want []Match) []AppendedEvent {
	tb.Helper()
	return defaultChecker.RequireManyAppended(tb, db, want)
}

// Appended is the package-level Appended on c's schema.
func (c *Checker) Appended(ctx context.Context, db outbox.DBTX, m Match) ([]AppendedEvent, error) {
	var payload []byte
	if m.Payload != nil {
		var err error
		if raw, ok := m.Payload.(json.RawMessage); ok {
			payload = raw
		} else if payload, err = json.Marshal(m.Payload); err != nil {
			return nil, fmt.Errorf("outboxtest: Match.Payload does not marshal: %w", err)
		}
	}
	rows, err := db.Query(ctx, c.selectSQL, m.OrganizationID, string(m.EventType), payload)
	if err != nil {
		return nil, fmt.Errorf("outboxtest: read appended events: %w", err)
	}
	var (
		out []AppendedEvent
		ev  AppendedEvent
		id  pgtype.UUID
		typ string
	)
	_, err = pgx.ForEachRow(rows, []any{&ev.ID, &id, &ev.OrganizationID, &typ, &ev.Payload, &ev.CreatedAt}, func() error {
		ev.EventID, ev.EventType = id.Bytes, outbox.EventType(typ)
		out = append(out, ev)
		ev.Payload = nil
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("outboxtest: read appended events: %w", err)
	}
	return out, nil
}

// RequireAppended is the package-level RequireAppended on c's schema.
func (c *Checker) RequireAppended(tb testing.TB, db outbox.DBTX, m Match) AppendedEvent {
	tb.Helper()
	got, ok := c.find(tb, db, m)
	if !ok {
		return AppendedEvent{}
	}
	if len(got) == 0 {
		tb.Fatalf("outboxtest: no appended event matches %s; appended:\n%s", m, c.listAll(tb, db))
		return AppendedEvent{}
	}
	return got[0]
}

// RequireNotAppended is the package-level RequireNotAppended on c's schema.
func (c *Checker) RequireNotAppended(tb testing.TB, db outbox.DBTX, m Match) {
	tb.Helper()
	got, ok := c.find(tb, db, m)
	if ok && len(got) > 0 {
		tb.Fatalf("outboxtest: %d appended event(s) match %s, want none:\n%s", len(got), m, describe(got))
	}
}

// RequireManyAppended is the package-level RequireManyAppended on c's
// schema.
func (c *Checker) RequireManyAppended(tb testing.TB, db outbox.DBTX, want []Match) []AppendedEvent {
	tb.Helper()
	all, ok := c.find(tb, db, Match{})
	if !ok {
		return nil
	}
	if len(all) != len(want) {
		tb.Fatalf("outboxtest: %d events appended, want %d; appended:\n%s", len(all), len(want), describe(all))
		return nil
	}
	for i, w := range want {
		matches, ok := c.find(tb, db, w)
		if !ok {
			return nil
		}
		if !containsID(matches, all[i].ID) {
			tb.Fatalf("outboxtest: appended event %d does not match %s; appended:\n%s", i, w, describe(all))
			return nil
		}
	}
	return all
}

func (c *Checker) find(tb testing.TB, db outbox.DBTX, m Match) ([]AppendedEvent, bool) {
	tb.Helper()
	got, err := c.Appended(context.Background(), db, m)
	if err != nil {
		tb.Fatalf("%v", err)
		return nil, false
	}
	return got, true
}

func (c *Checker) listAll(tb testing.TB, db outbox.DBTX) string {
	tb.Helper()
	all, err := c.Appended(context.Background(), db, Match{})
	if err != nil {
		return "  (could not read: " + err.Error() + ")"
	}
	return describe(all)
}

func containsID(events []AppendedEvent, id int64) bool {
	for _, e := range events {
		if e.ID == id {
			return true
		}
	}
	return false
}

// describe lists events, one a line, at most 20.
func describe(events []AppendedEvent) string {
	if len(events) == 0 {
		return "  (none)"
	}
	var b strings.Builder
	for i, e := range events {
		if i == 20 {
			fmt.Fprintf(&b, "  ... and %d more\n", len(events)-20)
			break
		}
		fmt.Fprintf(&b, "  #%d org=%s type=%s payload=%s\n", e.ID, e.OrganizationID, e.EventType, e.Payload)
	}
	return strings.TrimSuffix(b.String(), "\n")
}

// String describes the match for failure messages.
func (m Match) String() string {
	var parts []string
	if m.OrganizationID != "" {
		parts = append(parts, "org="+m.OrganizationID)
	}
	if m.EventType != "" {
		parts = append(parts, "type="+string(m.EventType))
	}
	if m.Payload != nil {
		b, _ := json.Marshal(m.Payload)
		if raw, ok := m.Payload.(json.RawMessage); ok {
			b = raw
		}
		parts = append(parts, "payload⊇"+string(b))
	}
	if len(parts) == 0 {
		return "{any event}"
	}
	return "{" + strings.Join(parts, " ") + "}"
}
