package outbox_test

import (
	"errors"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/outboxrelay/outbox"
)

func TestErrorsDoNotPanicOnNilValidationError(t *testing.T) {
	t.Parallel()
	// Validate returns a nil error interface on success, not a typed nil.
	err := outbox.EventType("ok").Validate()
	require.True(t, err == nil)
	err = outbox.ValidateOrganizationID("ok")
	require.True(t, err == nil)
	require.False(t, errors.Is(err, outbox.ErrInvalidOrganizationID))
}
