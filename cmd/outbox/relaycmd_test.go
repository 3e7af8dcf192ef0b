package main_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/outboxrelay/outbox"
	"github.com/outboxrelay/outbox/internal/pgtest"
	"github.com/outboxrelay/outbox/internal/syncbuf"
	"github.com/outboxrelay/outbox/internal/testnet"
	"github.com/outboxrelay/outbox/outboxtest/svixtest"
)

// startRelay starts `outbox relay` and returns a function that stops it
// with SIGTERM, checks it exited 0, and returns its stderr.
func startRelay(t *testing.T, env []string, args ...string) (stop func() string, stderr *syncbuf.Buffer) {
	t.Helper()
	return startCommand(t, env, "relay: starting", append([]string{"relay"}, args...)...)
}

// startCommand starts a long-running outbox command and waits for it to
// log started (it handles SIGTERM from then on); stop sends SIGTERM, checks
// it exited 0, and returns its stderr.
func startCommand(t *testing.T, env []string, started string, args ...string) (stop func() string, stderr *syncbuf.Buffer) {
	t.Helper()
	cmd := exec.Command(binary, args...)
	cmd.Env = env
	stderr = &syncbuf.Buffer{}
	cmd.Stderr = stderr
	require.NoError(t, cmd.Start())
	require.Eventually(t, func() bool { return strings.Contains(stderr.String(), started) }, 20*time.Second, 5*time.Millisecond,
		"%s did not start: %s", args[0], stderr)
	stopped := false
	stop = func() string {
		if !stopped {
			stopped = true
			require.NoError(t, cmd.Process.Signal(syscall.SIGTERM))
			require.NoError(t, cmd.Wait(), stderr.String())
		}
		return stderr.String()
	}
	t.Cleanup(func() {
		if !stopped {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
		}
	})
	return stop, stderr
}

func TestRelayDeliversAndStopsGracefully(t *testing.T) {
	t.Parallel()
	b := setup(t)
	fake := svixtest.NewT(t, svixtest.Options{Latency: 2 * time.Millisecond})
	env := append(b.env, "SVIX_AUTH_TOKEN="+fake.Token(), "SVIX_SERVER_URL="+fake.URL())
	port := testnet.FreePort(t)
	stop, stderr := startRelay(t, env, "--schema", b.schema, "--channel", "outbox_"+b.schema,
		"--poll-interval", "100ms", "--http-addr", fmt.Sprintf("127.0.0.1:%d", port), "--log-format", "json")

	base := fmt.Sprintf("http://127.0.0.1:%d", port)
	require.Eventually(t, func() bool { return testnet.Status(base+"/readyz") == 200 }, 20*time.Second, 20*time.Millisecond, "relay not ready: %s", stderr)
	require.Equal(t, 200, testnet.Status(base+"/healthz"))

	sig, err := outbox.NewNotifySignaler(b.db.Pool, "outbox_"+b.schema)
	require.NoError(t, err)
	var want []string
	for i := range 200 {
		err := outbox.WithTx(b.ctx, b.db.Pool, sig, func(tx *outbox.Tx) error {
			res, err := outbox.Append(b.ctx, tx, outbox.AppendParams{OrganizationID: fmt.Sprintf("org_%d", i%5), EventType: "x.y", Payload: map[string]any{"i": i}})
			want = append(want, res.EventID.String())
			return err
		})
		require.NoError(t, err)
	}
	// Stop it, possibly mid-flow, then let a second relay process finish.
	logs := stop()
	require.Contains(t, logs, `"msg":"relay: stopped"`)
	require.NotContains(t, logs, fake.Token(), "the token must never be logged")

	stop2, _ := startRelay(t, env, "--schema", b.schema, "--poll-only", "--poll-interval", "50ms")
	ctx, cancel := context.WithTimeout(b.ctx, 20*time.Second)
	defer cancel()
	require.NoError(t, fake.WaitForMessages(ctx, len(want)))
	stop2()
	got := map[string]int{}
	for _, m := range fake.Messages() {
		got[m.EventID]++
	}
	for _, id := range want {
		require.Equal(t, 1, got[id], "event %s", id)
	}
	require.Len(t, got, len(want))
}

// /debug/vars serves nothing that can hold a secret (expvar's cmdline would
// show --database-url with its password), an address without a host binds
// loopback only, and the pool is sized from what the relay needs.
func TestRelayEndpointsLeakNothingAndBindLoopback(t *testing.T) {
	t.Parallel()
	b := setup(t)
	// A role with a password, so the URL on the command line holds one.
	secret := "s3cret-" + strings.ReplaceAll(b.schema, "_", "")
	role := "r_" + b.schema
	_, err := b.db.Pool.Exec(b.ctx, fmt.Sprintf(`CREATE ROLE %s LOGIN SUPERUSER PASSWORD '%s'`, role, secret))
	require.NoError(t, err)
	t.Cleanup(func() { _, _ = b.db.Pool.Exec(context.Background(), "DROP ROLE IF EXISTS "+role) })
	u, err := url.Parse(pgtest.ServerURL(t))
	require.NoError(t, err)
	u.User = url.UserPassword(role, secret)

	fake := svixtest.NewT(t, svixtest.Options{})
	port := testnet.FreePort(t)
	stop, stderr := startRelay(t, []string{"SVIX_AUTH_TOKEN=" + fake.Token(), "SVIX_SERVER_URL=" + fake.URL()},
		"--database-url", u.String(), "--schema", b.schema, "--channel", "outbox_"+b.schema,
		"--concurrency", "64", "--http-addr", fmt.Sprintf(":%d", port), "--log-format", "json")
	base := fmt.Sprintf("http://127.0.0.1:%d", port)
	require.Eventually(t, func() bool { return testnet.Status(base+"/readyz") == 200 }, 20*time.Second, 20*time.Millisecond, "relay not ready: %s", stderr)

	resp, err := http.Get(base + "/debug/vars")
	require.NoError(t, err)
	body, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	require.NoError(t, resp.Body.Close())
	require.NotContains(t, string(body), secret, "/debug/vars serves the database password")
	require.NotContains(t, string(body), "cmdline")
	var vars struct {
		Goroutines int
		Memstats   struct{ HeapAlloc uint64 }
		Relay      struct{ Delivered uint64 }
	}
	require.NoError(t, json.Unmarshal(body, &vars))
	require.Positive(t, vars.Goroutines)
	require.Positive(t, vars.Memstats.HeapAlloc)

	logs := stop()
	require.Contains(t, logs, fmt.Sprintf(`"addr":"127.0.0.1:%d"`, port), "a port alone binds loopback")
	require.Contains(t, logs, `"pool_max_conns":22`, "the pool is sized for 64 in flight and 4 pages: relay.PoolConns")
	require.NotContains(t, logs, secret)
}
