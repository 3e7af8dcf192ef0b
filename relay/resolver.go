package relay

import (
	"context"

	"github.com/outboxrelay/outbox/internal/svixid"
)

// Destination says where an organization's events go.
type Destination struct {
	// App is the Svix application id ("app_...") or uid the messages are
	// created in.
	App string
	// CreateName, when set, creates the application on first use with this
	// name and App as its uid (sent as MessageIn.Application, so no extra
	// call). Leave it empty for applications that must already exist: a
	// missing one then dead-letters the event (Svix answers 404).
	CreateName string
	// Skip says the organization has no webhooks: its events are settled as
	// skipped (recorded in outbox_deliveries), not sent and not retried.
	Skip bool
}

// rule returns "" when d.App can go into a Svix URL path, and the rule it
// breaks otherwise: Svix's identifier characters, and never "." or "..",
// which the SDK would splice unescaped (/api/v1/app/../msg).
func (d Destination) rule() string {
	rule := svixid.Rule(d.App)
	if rule == "" && (d.CreateName != "" || d.App == "." || d.App == "..") {
		rule = svixid.AppUIDRule(d.App) // a uid, or a path segment of its own
	}
	if rule == "" {
		return ""
	}
	return "App " + rule + " (got " + svixid.Quote(d.App) + ")"
}

// Resolver maps an organization to its Destination. An error is treated as
// a transient failure of the lane's head event: it is retried with backoff.
type Resolver interface {
	Resolve(ctx context.Context, organizationID string) (Destination, error)
}

// ResolverFunc adapts a function to Resolver.
type ResolverFunc func(ctx context.Context, organizationID string) (Destination, error)

// Resolve calls f.
func (f ResolverFunc) Resolve(ctx context.Context, organizationID string) (Destination, error) {
	return f(ctx, organizationID)
}

// DefaultResolver sends an organization's events to the Svix application
// whose uid is the organization id, creating it (named after the id) on
// first use.
var DefaultResolver Resolver = ResolverFunc(func(_ context.Context, organizationID string) (Destination, error) {
	return Destination{App: organizationID, CreateName: organizationID}, nil
})
