package outbox_test

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/outboxrelay/outbox"
)

func TestEventTypeValidate(t *testing.T) {
	t.Parallel()
	require.NoError(t, outbox.EventTypeAuditLogCreated.Validate())
	require.NoError(t, outbox.EventType("a-b_c.D9").Validate())
	err := outbox.EventType("audit_log:created").Validate()
	require.ErrorIs(t, err, outbox.ErrInvalidEventType)
	require.Contains(t, err.Error(), `':'`)
	require.NoError(t, outbox.ValidateOrganizationID(strings.Repeat("z", 256)))
	require.ErrorIs(t, outbox.ValidateOrganizationID("app_x"), outbox.ErrInvalidOrganizationID)
}
