package outboxtemporal

import (
	"errors"

	"github.com/outboxrelay/outbox"
)

// ErrInvalidConfig is wrapped by every Options and SignalerConfig
// validation error. It is outbox.ErrInvalidConfig, re-exported.
var ErrInvalidConfig = outbox.ErrInvalidConfig

// ConfigError is outbox.ConfigError: the field at fault and its rule.
type ConfigError = outbox.ConfigError

// ErrSignalerClosed is returned by a Signaler's methods after Close.
var ErrSignalerClosed = errors.New("signaler closed")

// ErrorTypeInvalidInput is the application error type of a drain that can
// never succeed (a bad organization id, a budget that is not positive): it
// is not retried, and the workflow fails with it.
const ErrorTypeInvalidInput = "OutboxInvalidInput"
