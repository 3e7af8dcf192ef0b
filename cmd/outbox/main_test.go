package main_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/outboxrelay/outbox/internal/pgtest"
	"github.com/outboxrelay/outbox/internal/testnet"
)

// binary is the outbox command, built once for the package's tests.
var binary string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "outbox-cli-")
	if err != nil {
		panic(err)
	}
	binary = filepath.Join(dir, "outbox")
	if out, err := exec.Command("go", "build", "-tags", buildTags, "-o", binary, ".").CombinedOutput(); err != nil {
		panic(fmt.Sprintf("build outbox: %v\n%s", err, out))
	}
	defer os.RemoveAll(dir)
	pgtest.Main(m)
}

type result struct {
	code           int
	stdout, stderr string
}

// outbox runs the binary with env added to a clean environment.
func runOutbox(t *testing.T, env []string, stdin string, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, binary, args...)
	cmd.Env = append([]string{"PATH=" + os.Getenv("PATH"), "HOME=" + os.Getenv("HOME")}, env...)
	cmd.Stdin = strings.NewReader(stdin)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	code := 0
	if exitErr := (*exec.ExitError)(nil); errors.As(err, &exitErr) {
		code = exitErr.ExitCode()
	} else {
		require.NoError(t, err)
	}
	return result{code: code, stdout: stdout.String(), stderr: stderr.String()}
}

type bundle struct {
	ctx    context.Context
	db     *pgtest.DB
	env    []string // DATABASE_URL of the server, schema passed as --schema
	schema string
}

// setup returns a migrated schema and the environment to reach it.
func setup(t *testing.T) *bundle {
	t.Helper()
	db := pgtest.New(t)
	return &bundle{ctx: context.Background(), db: db, env: []string{"DATABASE_URL=" + pgtest.ServerURL(t)}, schema: db.Schema}
}

func TestErrorsAreOneClearLine(t *testing.T) {
	t.Parallel()
	port := testnet.FreePort(t) // nothing listens there
	tests := []struct {
		name string
		env  []string
		args []string
		code int
		want string
	}{
		{"no database", nil, []string{"status"}, 2, "no database: set DATABASE_URL or pass --database-url"},
		{"bad URL", []string{"DATABASE_URL=postgres://%zz"}, []string{"status"}, 1, "invalid database URL"},
		{"unreachable database", []string{fmt.Sprintf("DATABASE_URL=postgres://u@127.0.0.1:%d/db?connect_timeout=2", port)}, []string{"migrate", "up"}, 1, fmt.Sprintf("cannot reach the database at 127.0.0.1:%d", port)},
		{"missing token", []string{"DATABASE_URL=postgres://u@127.0.0.1/db"}, []string{"relay"}, 2, "SVIX_AUTH_TOKEN is not set"},
		{"unknown flag", nil, []string{"status", "--nope"}, 2, "flag provided but not defined: -nope"},
		{"unknown command", nil, []string{"frobnicate"}, 2, `unknown command "frobnicate"`},
		{"missing action", nil, []string{"migrate"}, 2, "migrate needs up, down [N] or status"},
		{"bad log format", []string{"SVIX_AUTH_TOKEN=x"}, []string{"relay", "--log-format", "xml"}, 2, "--log-format must be text or json"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			r := runOutbox(t, tt.env, "", tt.args...)
			require.Equal(t, tt.code, r.code, r.stderr)
			require.Contains(t, r.stderr, tt.want)
			require.Equal(t, 1, strings.Count(r.stderr, "\n"), "one line: %q", r.stderr)
			require.True(t, strings.HasPrefix(r.stderr, "outbox: "))
		})
	}
}

func TestHelp(t *testing.T) {
	t.Parallel()
	r := runOutbox(t, nil, "", "--help")
	require.Equal(t, 0, r.code)
	for _, c := range []string{"migrate", "relay", "status", "dead-letters"} {
		require.Contains(t, r.stdout, c)
		h := runOutbox(t, nil, "", c, "--help")
		require.Equal(t, 0, h.code, c)
		require.Contains(t, h.stdout, "Usage: outbox "+c, c)
		require.Contains(t, h.stdout, "Examples:", c)
		require.Contains(t, h.stdout, "-schema", c)
	}
	require.NotContains(t, r.stdout, "demo")
}

// The demo left this binary; its old name says where it went.
func TestDemoSaysWhereItWent(t *testing.T) {
	t.Parallel()
	r := runOutbox(t, nil, "", "demo")
	require.Equal(t, 2, r.code)
	require.Contains(t, r.stderr, "go run ./cmd/outbox-demo")
}

// The binary operators deploy links no test infrastructure: no testing
// package, no testcontainers or Docker client, none of the project's test
// helpers (the in-process Svix API, the PostgreSQL finder). This is the lint
// rule that keeps it so; .golangci.yml's depguard says the same per file.
func TestBinaryLinksNoTestInfrastructure(t *testing.T) {
	t.Parallel()
	out, err := exec.Command("go", "list", "-tags", buildTags, "-deps", ".").Output()
	require.NoError(t, err)
	deps := strings.Fields(string(out))
	require.Greater(t, len(deps), 100, "go list -deps answered")
	// What the Temporal SDK brings is its own doing: its internal package
	// imports testing, testify and httptest (for its test suite).
	exempt := map[string]bool{}
	if len(sdkRoots) > 0 {
		out, err := exec.Command("go", append([]string{"list", "-deps"}, sdkRoots...)...).Output()
		require.NoError(t, err)
		for _, dep := range strings.Fields(string(out)) {
			exempt[dep] = true
		}
	}
	forbidden := []string{
		"testing", "github.com/testcontainers/", "github.com/docker/", "github.com/moby/",
		"github.com/stretchr/testify", "github.com/outboxrelay/outbox/outboxtest",
		"github.com/outboxrelay/outbox/internal/pgtest", "github.com/outboxrelay/outbox/internal/pgserver", "github.com/outboxrelay/outbox/internal/pgcontainer",
		"github.com/outboxrelay/outbox/internal/syncbuf", "github.com/outboxrelay/outbox/internal/testnet",
		"net/http/httptest",
	}
	for _, dep := range deps {
		if exempt[dep] {
			continue
		}
		for _, f := range forbidden {
			require.False(t, dep == f || strings.HasPrefix(dep, f+"/") || (strings.HasSuffix(f, "/") && strings.HasPrefix(dep, f)),
				"the outbox binary links %s", dep)
		}
	}
}
