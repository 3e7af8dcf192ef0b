//go:build temporal

package main_test

import (
	"strconv"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/outboxrelay/outbox/internal/testnet"
)

// buildTags are the tags the tests build the binary with: this file is in
// the build with the Temporal mode. (test/temporal runs that mode against
// a real Temporal server.)
const buildTags = "temporal"

// sdkRoots are the Temporal SDK packages the Temporal mode imports.
var sdkRoots = []string{"go.temporal.io/sdk/client", "go.temporal.io/sdk/worker", "go.temporal.io/sdk/contrib/envconfig"}

func TestTemporalModeReportsAnUnreachableServer(t *testing.T) {
	t.Parallel()
	b := setup(t)
	addr := "127.0.0.1:" + strconv.Itoa(testnet.FreePort(t))
	r := runOutbox(t, append(b.env, "SVIX_AUTH_TOKEN=x", "TEMPORAL_ADDRESS="+addr, "TEMPORAL_NAMESPACE=payments"), "",
		"relay", "--temporal", "--schema", b.schema)
	require.Equal(t, 1, r.code, r.stderr)
	require.Contains(t, r.stderr, "cannot reach Temporal at "+addr+" (namespace payments)", "TEMPORAL_* settings are read")

	r = runOutbox(t, append(b.env, "SVIX_AUTH_TOKEN=x", "TEMPORAL_ADDRESS="+addr), "",
		"relay", "--temporal", "--schema", b.schema, "--temporal-address", "127.0.0.1:1", "--temporal-namespace", "other")
	require.Equal(t, 1, r.code, r.stderr)
	require.Contains(t, r.stderr, "cannot reach Temporal at 127.0.0.1:1 (namespace other)", "flags override the environment")
}

func TestTemporalFlagsNeedTemporal(t *testing.T) {
	t.Parallel()
	r := runOutbox(t, []string{"SVIX_AUTH_TOKEN=x"}, "", "relay", "--temporal-task-queue", "q", "--temporal-drain-budget", "1s", "--temporal-local-drain", "--temporal-linger", "5s")
	require.Equal(t, 2, r.code)
	require.Contains(t, r.stderr, "--temporal-drain-budget, --temporal-linger, --temporal-local-drain, --temporal-task-queue needs --temporal")
}

func TestTemporalModeRejectsBadDurations(t *testing.T) {
	t.Parallel()
	r := runOutbox(t, []string{"SVIX_AUTH_TOKEN=x"}, "", "relay", "--temporal", "--temporal-drain-budget", "-1s")
	require.Equal(t, 2, r.code)
	require.Contains(t, r.stderr, "--temporal-drain-budget must be positive, got -1s")

	r = runOutbox(t, []string{"SVIX_AUTH_TOKEN=x"}, "", "relay", "--temporal", "--temporal-linger", "-1s")
	require.Equal(t, 2, r.code)
	require.Contains(t, r.stderr, "--temporal-linger must not be negative, got -1s")
}
