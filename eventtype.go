package outbox

import (
	"fmt"

	"github.com/outboxrelay/outbox/internal/svixid"
)

// EventType names the kind of an event, as Svix's eventType: 1 to 256
// characters of [a-zA-Z0-9-_.] (Svix rejects anything else, colons included).
type EventType string

// Event types used by the services this package serves.
const (
	// EventTypeAuditLogCreated is sent when an audit log entry is written.
	EventTypeAuditLogCreated EventType = "audit_log.created"
)

// Validate reports whether Svix accepts t, with an error wrapping
// ErrInvalidEventType that says why not.
func (t EventType) Validate() error {
	if err := t.validate(); err != nil {
		return fmt.Errorf("outbox: %w", err)
	}
	return nil
}

func (t EventType) validate() *ValidationError {
	if rule := svixid.Rule(string(t)); rule != "" {
		return &ValidationError{Index: -1, Field: "EventType", Rule: rule + " (got " + svixid.Quote(string(t)) + ")", Err: ErrInvalidEventType}
	}
	return nil
}
