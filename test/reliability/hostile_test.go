package reliability

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/outboxrelay/outbox"
	"github.com/outboxrelay/outbox/internal/syncbuf"
	"github.com/outboxrelay/outbox/internal/testnet"
	"github.com/outboxrelay/outbox/outboxtest/svixtest"
)

// 8. SQL injection through every user-supplied identifier: the schema (Go
// API and --schema) and the NOTIFY channel (signaler, relay --channel) are
// quoted or passed as parameters, never spliced into SQL. (Payload, event
// type and organization id validation is fuzzed in the root package.)
func TestHostileIdentifiers(t *testing.T) {
	e := newEnv(t, svixtest.Options{})
	schema := `evil"; DROP TABLE canary; --`
	channel := `chan"; DROP TABLE canary; --`
	_, err := e.pool.Exec(e.ctx, "CREATE TABLE public.canary (id int)")
	require.NoError(t, err)
	t.Cleanup(func() {
		ctx := context.Background()
		_, _ = e.pool.Exec(ctx, "DROP TABLE IF EXISTS public.canary")
		_, _ = e.pool.Exec(ctx, "DROP SCHEMA IF EXISTS "+pgx.Identifier{schema}.Sanitize()+" CASCADE")
	})

	cmd := exec.Command(binary, "migrate", "up", "--schema", schema)
	cmd.Env = []string{"DATABASE_URL=" + e.url}
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "%s", out)
	require.Contains(t, string(out), "applied 0001")

	addr := fmt.Sprintf("127.0.0.1:%d", testnet.FreePort(t))
	cmd = exec.Command(binary, "relay", "--schema", schema, "--channel", channel, "--poll-interval", "1h", "--log-format", "json", "--http-addr", addr)
	cmd.Env = []string{"DATABASE_URL=" + e.url, "SVIX_AUTH_TOKEN=" + e.token, "SVIX_SERVER_URL=" + e.fake.URL(), "PATH=" + os.Getenv("PATH")}
	logs := &syncbuf.Buffer{}
	cmd.Stderr = logs
	require.NoError(t, cmd.Start())
	p := &relayProc{name: "hostile", cmd: cmd, stderr: logs, done: make(chan struct{})}
	go func() { p.exit = cmd.Wait(); close(p.done) }()
	e.mu.Lock()
	e.relays = append(e.relays, p)
	e.mu.Unlock()
	// Ready means LISTEN is up (the sweep runs once at start, then hourly).
	require.Eventually(t, func() bool { return !p.exited() && testnet.Status("http://"+addr+"/readyz") == http.StatusOK },
		10*time.Second, 10*time.Millisecond, "relay never ready: %s", logs.String())

	producer, err := outbox.NewProducer(outbox.Config{Schema: schema})
	require.NoError(t, err)
	signaler, err := outbox.NewNotifySignaler(e.pool, channel)
	require.NoError(t, err)
	err = outbox.WithTx(e.ctx, e.pool, signaler, func(tx *outbox.Tx) error {
		_, err := producer.Append(e.ctx, tx, outbox.AppendParams{OrganizationID: "org_x", EventType: "x.y", Payload: map[string]any{}})
		return err
	})
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(e.ctx, 10*time.Second)
	defer cancel()
	require.NoError(t, e.fake.WaitForMessages(ctx, 1), "delivered through the quoted channel: %s", logs)
	e.stop(p)

	var canary bool
	require.NoError(t, e.pool.QueryRow(e.ctx, "SELECT to_regclass('public.canary') IS NOT NULL").Scan(&canary))
	require.True(t, canary, "an identifier was spliced into SQL")
	report(t, "hostile identifiers", map[string]any{"schema": schema, "channel": channel, "delivered": e.fake.MessageCount()})
}
