package outboxtemporal

// The names the workflow, its activity and its signal are registered and
// started under. They are part of the contract with running workflows and
// with producers of other versions: they never change.
const (
	// WorkflowName is the relay workflow's type: one run drains one
	// organization.
	WorkflowName = "outbox.RelayOrganization"
	// ActivityName is the drain activity's type.
	ActivityName = "outbox.DrainOrganization"
	// SignalName is the wake-up signal the Signaler sends (its payload is
	// empty).
	SignalName = "outbox.wake"
)

// Defaults the Signaler and the worker share.
const (
	// DefaultTaskQueue is the task queue workflows are started on.
	DefaultTaskQueue = "outbox"
	// DefaultWorkflowIDPrefix is prepended to an organization id to name
	// its workflow: organization "acme" is workflow "outbox-relay-acme".
	DefaultWorkflowIDPrefix = "outbox-relay-"
)

// WorkflowID returns the id of organizationID's relay workflow under prefix
// (DefaultWorkflowIDPrefix when empty), for looking it up in the Temporal
// UI or with the client.
func WorkflowID(prefix, organizationID string) string {
	if prefix == "" {
		prefix = DefaultWorkflowIDPrefix
	}
	return prefix + organizationID
}

// RelayInput is the relay workflow's input.
type RelayInput struct {
	// OrganizationID is the organization whose lane the workflow drains.
	OrganizationID string `json:"organizationId"`
}

// DrainInput is the drain activity's input.
type DrainInput struct {
	// OrganizationID is the organization to drain.
	OrganizationID string `json:"organizationId"`
	// BudgetMillis is how long the drain may work, in milliseconds.
	BudgetMillis int64 `json:"budgetMillis"`
}
