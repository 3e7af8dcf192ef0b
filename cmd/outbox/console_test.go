package main_test

import (
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/outboxrelay/outbox"
	"github.com/outboxrelay/outbox/internal/testnet"
	"github.com/outboxrelay/outbox/outboxtest/svixtest"
)

func TestConsoleRefusesToServeOffLoopbackWithoutAToken(t *testing.T) {
	t.Parallel()
	b := setup(t)
	port := testnet.FreePort(t)
	for _, tc := range []struct {
		name string
		env  []string
		args []string
		want string
	}{
		{"any address, no token", nil, []string{"--http-addr", fmt.Sprintf("0.0.0.0:%d", port)}, "OUTBOX_CONSOLE_TOKEN"},
		{"short token", nil, []string{"--http-addr", fmt.Sprintf(":%d", port), "--console-token", "short"}, "Token"},
		{"no address", nil, nil, "--http-addr is required"},
		{"half of TLS", nil, []string{"--http-addr", fmt.Sprintf(":%d", port), "--tls-cert", "c.pem"}, "--tls-key"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := runOutbox(t, append(b.env, tc.env...), "", append([]string{"console", "--schema", b.schema}, tc.args...)...)
			require.Equal(t, 2, r.code, r.stderr)
			require.Contains(t, r.stderr, tc.want)
		})
	}
}

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	res, err := client.Get(url)
	require.NoError(t, err)
	defer res.Body.Close()
	body, err := io.ReadAll(res.Body)
	require.NoError(t, err)
	return res.StatusCode, string(body)
}

// A port alone serves on loopback, with no login; the page shows the
// database's backlog.
func TestConsoleServesOnLoopback(t *testing.T) {
	t.Parallel()
	b := setup(t)
	_, err := outbox.Append(b.ctx, b.db.Pool, outbox.AppendParams{OrganizationID: "org_console", EventType: "x.y", Payload: map[string]any{}})
	require.NoError(t, err)
	port := testnet.FreePort(t)
	stop, _ := startCommand(t, b.env, "console: serving", "console", "--schema", b.schema, "--http-addr", fmt.Sprintf(":%d", port))

	code, body := get(t, fmt.Sprintf("http://127.0.0.1:%d/orgs", port))
	require.Equal(t, http.StatusOK, code)
	require.Contains(t, body, "org_console")
	logs := stop()
	require.Contains(t, logs, fmt.Sprintf("127.0.0.1:%d", port), "a port alone is loopback")
}

// Off loopback, with the token from the environment, every page needs a
// login, and the token is never logged.
func TestConsoleWithATokenNeedsALogin(t *testing.T) {
	t.Parallel()
	b := setup(t)
	token := "console-token-" + strings.Repeat("x", 16)
	port := testnet.FreePort(t)
	env := append(b.env, "OUTBOX_CONSOLE_TOKEN="+token)
	stop, _ := startCommand(t, env, "console: serving", "console", "--schema", b.schema, "--http-addr", fmt.Sprintf("0.0.0.0:%d", port))

	code, _ := get(t, fmt.Sprintf("http://127.0.0.1:%d/", port))
	require.Equal(t, http.StatusSeeOther, code, "to the login form")
	code, body := get(t, fmt.Sprintf("http://127.0.0.1:%d/login", port))
	require.Equal(t, http.StatusOK, code)
	require.NotContains(t, body, token)
	require.NotContains(t, stop(), token, "the token must never be logged")
}

// relay --console serves the console under /console/ beside /metrics, with
// the same rule: off loopback only with a token.
func TestRelayServesTheConsole(t *testing.T) {
	t.Parallel()
	b := setup(t)
	fake := svixtest.NewT(t, svixtest.Options{})
	env := append(b.env, "SVIX_AUTH_TOKEN="+fake.Token(), "SVIX_SERVER_URL="+fake.URL())
	port := testnet.FreePort(t)

	r := runOutbox(t, env, "", "relay", "--schema", b.schema, "--console", "--http-addr", fmt.Sprintf("0.0.0.0:%d", port))
	require.Equal(t, 2, r.code, r.stderr)
	require.Contains(t, r.stderr, "OUTBOX_CONSOLE_TOKEN")
	r = runOutbox(t, env, "", "relay", "--schema", b.schema, "--console")
	require.Equal(t, 2, r.code, r.stderr)
	require.Contains(t, r.stderr, "--console needs --http-addr")

	_, err := outbox.Append(b.ctx, b.db.Pool, outbox.AppendParams{OrganizationID: "org_in_relay", EventType: "x.y", Payload: map[string]any{}})
	require.NoError(t, err)
	stop, stderr := startRelay(t, env, "--schema", b.schema, "--poll-only", "--console", "--http-addr", fmt.Sprintf(":%d", port))
	base := fmt.Sprintf("http://127.0.0.1:%d", port)
	require.Eventually(t, func() bool { return testnet.Status(base+"/readyz") == 200 }, 20*time.Second, 20*time.Millisecond, "relay not ready: %s", stderr)
	code, body := get(t, base+"/console/")
	require.Equal(t, http.StatusOK, code)
	require.Contains(t, body, `href="/console/orgs"`, "links start with the prefix")
	require.Equal(t, http.StatusOK, testnet.Status(base+"/metrics"), "beside the metrics")
	require.NotContains(t, stop(), fake.Token())
}
