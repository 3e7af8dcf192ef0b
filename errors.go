package outbox

import (
	"errors"
	"strconv"
)

// Sentinels wrapped by validation errors, for errors.Is.
//
// The convention of every package in this module: a sentinel's message is a
// bare phrase naming the condition ("invalid payload"); every error an
// exported function returns starts with its package's name once
// ("outbox: batch element 2: EventType: …", "relay: list events: …"); the
// error types (ValidationError, ConfigError) print no prefix of their own.
var (
	// ErrInvalidOrganizationID: the organization id is empty or cannot be a
	// Svix application uid (1 to 256 characters of [a-zA-Z0-9-_.], not
	// starting with "app_", not "." or "..").
	ErrInvalidOrganizationID = errors.New("invalid organization id")
	// ErrInvalidEventType: the event type breaks Svix's rule (1 to 256
	// characters of [a-zA-Z0-9-_.]).
	ErrInvalidEventType = errors.New("invalid event type")
	// ErrInvalidPayload: the payload does not marshal, is not a JSON object,
	// is invalid JSON or UTF-8, or holds what PostgreSQL's jsonb cannot
	// store or Go cannot read back: the escape \u0000, an unpaired UTF-16
	// surrogate escape, a number outside numeric's range, nesting deeper
	// than 10000.
	ErrInvalidPayload = errors.New("invalid payload")
	// ErrPayloadTooLarge: the encoded payload is over the size limit, as
	// sent or as jsonb writes it back (numbers in full, with no exponent).
	ErrPayloadTooLarge = errors.New("payload too large")
	// ErrDuplicateEventID: an AppendParams.EventID is already pending in the
	// outbox (the event was appended before: after an ambiguous commit, the
	// first attempt committed), or appears twice in one AppendBatch.
	ErrDuplicateEventID = errors.New("duplicate event id")
	// ErrInvalidChannels: AppendParams.Channels breaks Svix's rules (at
	// most 10, distinct, each 1 to 128 characters of [a-zA-Z0-9-_.:]).
	ErrInvalidChannels = errors.New("invalid channels")
	// ErrInvalidTags: AppendParams.Tags breaks Svix's rules (at most 5,
	// distinct, each 1 to 128 characters of [a-zA-Z0-9-_./\#]).
	ErrInvalidTags = errors.New("invalid tags")
	// ErrInvalidConfig: a Config or signaler setting is out of range. It is
	// the one sentinel for a bad setting in every package of this module
	// (relay.ErrInvalidConfig is the same value), wrapped by *ConfigError.
	ErrInvalidConfig = errors.New("invalid config")
)

// ConfigError reports a setting out of range: which field and which rule. It
// unwraps to ErrInvalidConfig and, when set, to Err, a more specific
// sentinel (migrations.ErrInvalidSchema for a bad schema name).
type ConfigError struct {
	// Field is the setting at fault, such as "MaxPayloadBytes".
	Field string
	// Rule says what the setting must be, and what it was.
	Rule string
	// Err is a more specific sentinel, or nil.
	Err error
}

func (e *ConfigError) Error() string { return "invalid config: " + e.Field + ": " + e.Rule }

// Unwrap returns ErrInvalidConfig and Err.
func (e *ConfigError) Unwrap() []error {
	if e.Err == nil {
		return []error{ErrInvalidConfig}
	}
	return []error{ErrInvalidConfig, e.Err}
}

// ValidationError reports bad input to a call: which field of its
// parameters, which rule, and for AppendBatch which element. It unwraps to a
// sentinel: one of the above for AppendParams, or the calling package's
// (relay.ErrInvalidListEventsParams). Match it with errors.As: the returned
// error wraps it behind the package's prefix.
type ValidationError struct {
	// Index is the element of the AppendBatch slice, or -1 for a single
	// value.
	Index int
	// Field is the parameter at fault, such as "OrganizationID".
	Field string
	// Rule says what the field must be.
	Rule string
	// Err is the sentinel.
	Err error
}

// Error is "[batch element N: ]Field: Rule". Like every error type of this
// module it carries no package prefix: the function that returns it adds
// its own ("outbox: ", "relay: ").
func (e *ValidationError) Error() string {
	s := ""
	if e.Index >= 0 {
		s = "batch element " + strconv.Itoa(e.Index) + ": "
	}
	return s + e.Field + ": " + e.Rule
}

// Unwrap returns the sentinel.
func (e *ValidationError) Unwrap() error { return e.Err }

func (e *ValidationError) at(index int) *ValidationError {
	e.Index = index
	return e
}
