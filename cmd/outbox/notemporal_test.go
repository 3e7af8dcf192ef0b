//go:build !temporal

package main_test

import (
	"os/exec"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// buildTags are the tags the tests build the binary with: this file is in
// the default build, without the Temporal mode.
const buildTags = ""

// sdkRoots: the default build links no Temporal SDK.
var sdkRoots []string

func TestDefaultBuildSaysHowToGetTheTemporalMode(t *testing.T) {
	t.Parallel()
	r := runOutbox(t, []string{"SVIX_AUTH_TOKEN=x", "DATABASE_URL=postgres://127.0.0.1:1/x"}, "", "relay", "--temporal")
	require.Equal(t, 2, r.code)
	require.Contains(t, r.stderr, "built without Temporal support")
	require.Contains(t, r.stderr, "-tags temporal")
}

// Operators who do not use Temporal do not carry its SDK.
func TestDefaultBuildLinksNoTemporalSDK(t *testing.T) {
	t.Parallel()
	out, err := exec.Command("go", "list", "-deps", ".").Output()
	require.NoError(t, err)
	for _, dep := range strings.Fields(string(out)) {
		require.False(t, strings.HasPrefix(dep, "go.temporal.io/"),
			"the default outbox binary links %s", dep)
	}
}
