package main

import (
	"bytes"
	"context"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/outboxrelay/outbox/internal/pgtest"
	"github.com/outboxrelay/outbox/internal/syncbuf"
	"github.com/outboxrelay/outbox/outboxtest/svixtest"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// runDemoCmd runs the command line in-process with only vars as its
// environment and returns the exit status and both outputs.
func runDemoCmd(t *testing.T, vars map[string]string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out bytes.Buffer
	errOut := &syncbuf.Buffer{}
	env := &environment{stdout: &out, stderr: errOut, getenv: func(k string) string { return vars[k] }}
	code = run(context.Background(), env, args)
	return code, out.String(), errOut.String()
}

func requireAuditPassed(t *testing.T, stdout string) {
	t.Helper()
	require.Contains(t, stdout, "result            OK: every committed event delivered exactly once")
	require.Contains(t, stdout, "duplicates        0")
	require.Regexp(t, `commit→Svix +p50 \S+ +p95 \S+ +p99 \S+`, stdout)
}

func TestDemoOnADatabaseURL(t *testing.T) {
	t.Parallel()
	code, stdout, stderr := runDemoCmd(t, map[string]string{"DATABASE_URL": pgtest.ServerURL(t)},
		"--events", "300", "--orgs", "7", "--fault-rate", "0.1")
	require.Equal(t, 0, code, stderr)
	requireAuditPassed(t, stdout)
	require.Contains(t, stderr, "schema outbox_demo_")
	require.Contains(t, stderr, "PostgreSQL from DATABASE_URL")
}

// With nothing set, the demo starts a PostgreSQL of its own: what a new
// user's first command does.
func TestDemoWithNothingSetUp(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a PostgreSQL cluster of its own (a few seconds)")
	}
	t.Parallel()
	code, stdout, stderr := runDemoCmd(t, nil, "--events", "200", "--orgs", "5")
	require.Equal(t, 0, code, stderr)
	requireAuditPassed(t, stdout)
	require.Contains(t, stderr, "no DATABASE_URL; starting a throwaway PostgreSQL")
}

func TestDemoUsageErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"argument", []string{"now"}, `takes no arguments, got ["now"]`},
		{"no events", []string{"--events", "0"}, "--events, --orgs and --handlers must be at least 1"},
		{"rate out of range", []string{"--fault-rate", "1"}, "--rollback-rate and --fault-rate must be in [0, 1)"},
		{"unknown flag", []string{"--nope"}, "flag provided but not defined: -nope"},
	}
	for _, tt := range tests {
		code, _, stderr := runDemoCmd(t, nil, tt.args...)
		require.Equal(t, 2, code, tt.name)
		require.Contains(t, stderr, tt.want, tt.name)
		require.Equal(t, 1, strings.Count(stderr, "\n"), "%s: one line: %q", tt.name, stderr)
	}
	code, stdout, _ := runDemoCmd(t, nil, "--help")
	require.Equal(t, 0, code)
	require.Contains(t, stdout, "Usage: outbox-demo")
	require.Contains(t, stdout, "Examples:")
}

// A token in the environment is not enough to send the demo's messages to
// Svix: that takes --real-svix.
func TestDemoIgnoresATokenWithoutRealSvix(t *testing.T) {
	t.Parallel()
	elsewhere := svixtest.NewT(t, svixtest.Options{}) // stands in for real Svix
	code, stdout, stderr := runDemoCmd(t, map[string]string{"DATABASE_URL": pgtest.ServerURL(t),
		"SVIX_AUTH_TOKEN": elsewhere.Token(), "SVIX_SERVER_URL": elsewhere.URL()}, "--events", "50", "--orgs", "3")
	require.Equal(t, 0, code, stderr)
	requireAuditPassed(t, stdout)
	require.Contains(t, stderr, "SVIX_AUTH_TOKEN is set but not used; pass --real-svix")
	require.Zero(t, elsewhere.MessageCount(), "nothing reached the Svix the token is for")
}

// With --real-svix the demo's applications and events say what they are.
func TestDemoOnRealSvixNamesItsApps(t *testing.T) {
	t.Parallel()
	svix := svixtest.NewT(t, svixtest.Options{}) // stands in for real Svix
	code, stdout, stderr := runDemoCmd(t, map[string]string{"DATABASE_URL": pgtest.ServerURL(t),
		"SVIX_AUTH_TOKEN": svix.Token(), "SVIX_SERVER_URL": svix.URL()}, "--real-svix", "--events", "60", "--orgs", "3", "--rollback-rate", "0")
	require.Equal(t, 0, code, stderr)
	require.Contains(t, stdout, "delivered         60")
	require.Equal(t, 60, svix.MessageCount())
	for _, m := range svix.Messages() {
		require.Regexp(t, `^outbox-demo-[0-9a-f]{8}-org-00[0-2]$`, m.App)
		require.Equal(t, "outbox_demo.order.created", m.EventType)
	}
	apps := svix.Apps()
	require.Len(t, apps, 3)
	client := svix.Client(t)
	for _, uid := range apps {
		app, err := client.Application.Get(context.Background(), uid)
		require.NoError(t, err)
		require.Regexp(t, `^outbox demo run [0-9a-f]{8} \(safe to delete\)$`, app.Name)
	}

	code, _, stderr = runDemoCmd(t, map[string]string{"DATABASE_URL": pgtest.ServerURL(t)}, "--real-svix")
	require.Equal(t, 1, code)
	require.Contains(t, stderr, "--real-svix needs SVIX_AUTH_TOKEN")
}
