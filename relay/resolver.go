package relay

import "context"

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
