package outbox

import (
	"context"
	"errors"
	"fmt"

	"github.com/outboxrelay/outbox/internal/sqlname"
)

// Signaler wakes the relay for an organization after events were committed
// for it. A signal is only a hint: a lost one delays delivery until the
// relay's next sweep, it never loses an event.
type Signaler interface {
	SignalRelay(ctx context.Context, organizationID string) error
}

// BatchSignaler is a Signaler that can wake the relay for many
// organizations in one call (one round trip for NotifySignaler). WithTx
// uses it, when the signaler has it, after a commit that touched several
// organizations.
type BatchSignaler interface {
	Signaler
	SignalRelays(ctx context.Context, organizationIDs []string) error
}

// SignalerFunc adapts a function to Signaler.
type SignalerFunc func(ctx context.Context, organizationID string) error

// SignalRelay calls f.
func (f SignalerFunc) SignalRelay(ctx context.Context, organizationID string) error {
	return f(ctx, organizationID)
}

// NopSignaler signals nothing, for deployments where the relay only polls.
var NopSignaler Signaler = SignalerFunc(func(context.Context, string) error { return nil })

// MultiSignaler returns a Signaler that signals through each of signalers in
// turn, and returns their errors joined. It is a BatchSignaler: a batch goes
// to each signaler whole when it can take one, one organization at a time
// otherwise.
func MultiSignaler(signalers ...Signaler) Signaler {
	return multiSignaler(append([]Signaler(nil), signalers...))
}

type multiSignaler []Signaler

func (m multiSignaler) SignalRelay(ctx context.Context, organizationID string) error {
	var errs []error
	for _, s := range m {
		if err := s.SignalRelay(ctx, organizationID); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

func (m multiSignaler) SignalRelays(ctx context.Context, organizationIDs []string) error {
	var errs []error
	for _, s := range m {
		if err := signalAll(ctx, s, organizationIDs); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// signalAll signals orgs through s: in one call if s is a BatchSignaler,
// one organization at a time otherwise.
func signalAll(ctx context.Context, s Signaler, orgs []string) error {
	if b, ok := s.(BatchSignaler); ok {
		return b.SignalRelays(ctx, orgs)
	}
	var errs []error
	for _, org := range orgs {
		if err := s.SignalRelay(ctx, org); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", org, err))
		}
	}
	return errors.Join(errs...)
}

// DefaultNotifyChannel is the PostgreSQL NOTIFY channel NotifySignaler uses
// and the relay listens on by default.
const DefaultNotifyChannel = "outbox_relay"

// NotifySignaler signals with PostgreSQL's NOTIFY: pg_notify(channel,
// organizationID). Every relay LISTENing on the channel (on any host) wakes.
//
// Used on a pool after the commit, it wakes listeners at once. Used on the
// transaction before the commit, PostgreSQL delivers the notification only
// if the transaction commits, and drops duplicates within it.
type NotifySignaler struct {
	db      DBTX
	channel string
}

// NewNotifySignaler returns a NotifySignaler that notifies through db on
// channel. channel defaults to DefaultNotifyChannel when empty and must be
// at most 63 bytes without NUL (PostgreSQL's identifier limit), else the
// error is a *ConfigError; it is passed as a parameter, never spliced into
// SQL.
func NewNotifySignaler(db DBTX, channel string) (*NotifySignaler, error) {
	if channel == "" {
		channel = DefaultNotifyChannel
	}
	if rule := sqlname.ChannelRule(channel); rule != "" {
		return nil, fmt.Errorf("outbox: %w", &ConfigError{Field: "channel", Rule: rule})
	}
	return &NotifySignaler{db: db, channel: channel}, nil
}

// Channel returns the channel notified.
func (s *NotifySignaler) Channel() string { return s.channel }

// SignalRelay runs pg_notify(channel, organizationID).
func (s *NotifySignaler) SignalRelay(ctx context.Context, organizationID string) error {
	if _, err := s.db.Exec(ctx, "SELECT pg_notify($1, $2)", s.channel, organizationID); err != nil {
		return fmt.Errorf("outbox: notify %s: %w", s.channel, err)
	}
	return nil
}

// SignalRelays notifies every organization in one round trip.
func (s *NotifySignaler) SignalRelays(ctx context.Context, organizationIDs []string) error {
	if len(organizationIDs) == 0 {
		return nil
	}
	if _, err := s.db.Exec(ctx, "SELECT pg_notify($1, o) FROM unnest($2::text[]) AS o", s.channel, organizationIDs); err != nil {
		return fmt.Errorf("outbox: notify %s: %w", s.channel, err)
	}
	return nil
}
