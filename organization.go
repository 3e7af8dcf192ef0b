package outbox

import (
	"fmt"

	"github.com/outboxrelay/outbox/internal/svixid"
)

// ValidateOrganizationID reports whether id can be used as a Svix
// application uid (1 to 256 characters of [a-zA-Z0-9-_.], not starting with
// "app_", not "." or "..", which would change the route of Svix's URL
// paths), with an error wrapping ErrInvalidOrganizationID that says why not.
func ValidateOrganizationID(id string) error {
	if err := validateOrganizationID(id); err != nil {
		return fmt.Errorf("outbox: %w", err)
	}
	return nil
}

func validateOrganizationID(id string) *ValidationError {
	if rule := svixid.AppUIDRule(id); rule != "" {
		return &ValidationError{Index: -1, Field: "OrganizationID", Rule: rule + " (got " + svixid.Quote(id) + ")", Err: ErrInvalidOrganizationID}
	}
	return nil
}
