package outbox

import (
	"strconv"
	"unicode/utf8"
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
		return err
	}
	return nil
}

func (t EventType) validate() *ValidationError {
	if rule := identifierRule(string(t)); rule != "" {
		return &ValidationError{Index: -1, Field: "EventType", Rule: rule + " (got " + quote(string(t)) + ")", Err: ErrInvalidEventType}
	}
	return nil
}

// ValidateOrganizationID reports whether id can be used as a Svix
// application uid (1 to 256 characters of [a-zA-Z0-9-_.], not starting with
// "app_"), with an error wrapping ErrInvalidOrganizationID that says why not.
func ValidateOrganizationID(id string) error {
	if err := validateOrganizationID(id); err != nil {
		return err
	}
	return nil
}

func validateOrganizationID(id string) *ValidationError {
	rule := identifierRule(id)
	if rule == "" && len(id) >= 4 && id[:4] == "app_" {
		rule = `must not start with "app_", which Svix reserves for its own application ids`
	}
	if rule != "" {
		return &ValidationError{Index: -1, Field: "OrganizationID", Rule: rule + " (got " + quote(id) + ")", Err: ErrInvalidOrganizationID}
	}
	return nil
}

// maxIdentifierLen is Svix's limit on uids, eventIds and event types.
const maxIdentifierLen = 256

// identifierRule returns "" when s is 1 to 256 characters of
// [a-zA-Z0-9-_.], and the broken rule otherwise.
func identifierRule(s string) string {
	if s == "" {
		return "must not be empty"
	}
	if len(s) > maxIdentifierLen {
		return "must be at most 256 characters, has " + strconv.Itoa(len(s))
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '_' || c == '.') {
			what := strconv.QuoteRune(rune(c))
			if c >= utf8.RuneSelf {
				what = "a non-ASCII character"
			}
			return "must contain only [a-zA-Z0-9-_.], has " + what + " at byte " + strconv.Itoa(i)
		}
	}
	return ""
}

// quote shortens s for an error message.
func quote(s string) string {
	if len(s) > 40 {
		s = s[:40] + "..."
	}
	return strconv.Quote(s)
}
