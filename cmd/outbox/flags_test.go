package main

import (
	"flag"
	"fmt"
	"io"
	"os"
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/outboxrelay/outbox/relay"
)

// The relay's flags default to the relay's own constants, and
// docs/cli.md lists every flag with the default --help prints.
func TestRelayFlagsMatchTheLibraryAndTheDocs(t *testing.T) {
	t.Parallel()
	var o relayOptions
	fs := newRelayFlagSet(&environment{stdout: io.Discard, stderr: io.Discard, getenv: os.Getenv}, &o)
	constants := map[string]any{
		"concurrency":        relay.DefaultConcurrency,
		"per-org-in-flight":  relay.DefaultPerOrgInFlight,
		"batch-size":         relay.DefaultBatchSize,
		"batch-max-bytes":    relay.DefaultBatchMaxBytes,
		"poll-interval":      relay.DefaultPollInterval,
		"channel":            relay.DefaultChannel,
		"max-attempts":       relay.DefaultMaxAttempts,
		"retry-base-delay":   relay.DefaultRetryBaseDelay,
		"retry-max-delay":    relay.DefaultRetryMaxDelay,
		"rate-limit-pause":   relay.DefaultRateLimitPause,
		"quick-retries":      relay.DefaultQuickRetries,
		"quick-retry-delay":  relay.DefaultQuickRetryDelay,
		"heartbeat-interval": relay.DefaultHeartbeatInterval,
		"liveness-timeout":   relay.DefaultLivenessTimeout,
		"auth-pause":         relay.DefaultAuthPause,
		"lease":              relay.DefaultLeaseDuration,
		"send-timeout":       relay.DefaultSendTimeout,
		"shutdown-timeout":   relay.DefaultShutdownTimeout,
		"retention":          relay.DefaultDeliveredRetention,
	}
	for name, want := range constants {
		f := fs.Lookup(name)
		require.NotNil(t, f, "--%s exists", name)
		require.Equal(t, fmt.Sprint(want), f.DefValue, "--%s defaults to the relay's constant", name)
	}

	page, err := os.ReadFile("../../docs/cli.md")
	require.NoError(t, err)
	fs.VisitAll(func(f *flag.Flag) {
		row := regexp.MustCompile("(?m)^\\| `--" + regexp.QuoteMeta(f.Name) + "` \\|([^|]*)\\|").FindSubmatch(page)
		require.NotNil(t, row, "docs/cli.md lists --%s", f.Name)
		def := strings.TrimSpace(string(row[1]))
		if f.DefValue == "" || f.DefValue == "false" {
			require.Equal(t, "", strings.Trim(def, "`"), "docs/cli.md: --%s has no default", f.Name)
			return
		}
		require.Equal(t, "`"+f.DefValue+"`", def, "docs/cli.md: the default of --%s", f.Name)
	})
}

// --pages is on by default and sets Config.DisablePages when turned off.
func TestPagesFlagTurnsPagesOff(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		args     []string
		disabled bool
	}{
		{args: nil, disabled: false},
		{args: []string{"--pages"}, disabled: false},
		{args: []string{"--pages=true"}, disabled: false},
		{args: []string{"--pages=false"}, disabled: true},
	} {
		var o relayOptions
		fs := newRelayFlagSet(&environment{stdout: io.Discard, stderr: io.Discard, getenv: os.Getenv}, &o)
		require.NoError(t, fs.Parse(c.args))
		require.Equal(t, c.disabled, o.cfg.DisablePages, "%v", c.args)
	}
	var o relayOptions
	fs := newRelayFlagSet(&environment{stdout: io.Discard, stderr: io.Discard, getenv: os.Getenv}, &o)
	require.ErrorContains(t, fs.Parse([]string{"--pages=maybe"}), "invalid boolean value")
}
