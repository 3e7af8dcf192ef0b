package main_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/outboxrelay/outbox"
	"github.com/outboxrelay/outbox/internal/pgtest"
	"github.com/outboxrelay/outbox/internal/syncbuf"
	"github.com/outboxrelay/outbox/outboxtest/svixtest"
)

// binary is the outbox command, built once for the package's tests.
var binary string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "outbox-cli-")
	if err != nil {
		panic(err)
	}
	binary = filepath.Join(dir, "outbox")
	if out, err := exec.Command("go", "build", "-o", binary, ".").CombinedOutput(); err != nil {
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
	if exitErr, ok := err.(*exec.ExitError); ok {
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

func TestMigrateUpStatusDown(t *testing.T) {
	t.Parallel()
	db := pgtest.NewEmpty(t)
	env := []string{"DATABASE_URL=" + pgtest.ServerURL(t)}
	schema := db.Schema + "_cli"
	t.Cleanup(func() { _, _ = db.Pool.Exec(context.Background(), "DROP SCHEMA IF EXISTS "+schema+" CASCADE") })

	r := runOutbox(t, env, "", "migrate", "status", "--schema", schema)
	require.Equal(t, 0, r.code, r.stderr)
	require.Regexp(t, `0001 +create_outbox +no`, r.stdout)

	r = runOutbox(t, env, "", "migrate", "up", "--schema", schema)
	require.Equal(t, 0, r.code, r.stderr)
	require.Equal(t, "applied 0001\n", r.stdout)
	r = runOutbox(t, env, "", "migrate", "up", "--schema", schema)
	require.Equal(t, "migrate up: nothing to do\n", r.stdout)

	r = runOutbox(t, env, "", "migrate", "status", "--schema", schema, "--json")
	require.Equal(t, 0, r.code, r.stderr)
	var states []struct {
		Version int
		Applied bool
	}
	require.NoError(t, json.Unmarshal([]byte(r.stdout), &states))
	require.Equal(t, 1, states[0].Version)
	require.True(t, states[0].Applied)

	r = runOutbox(t, env, "", "migrate", "down", "1", "--schema", schema)
	require.Equal(t, 0, r.code, r.stderr)
	require.Equal(t, "reverted 0001\n", r.stdout)

	r = runOutbox(t, env, "", "migrate", "down", "zero")
	require.Equal(t, 2, r.code)
	require.Contains(t, r.stderr, "N must be a positive number")
}

func TestMigrateFromSeveralProcessesAtOnce(t *testing.T) {
	t.Parallel()
	db := pgtest.NewEmpty(t)
	env := []string{"DATABASE_URL=" + pgtest.ServerURL(t)}
	var cmds []*exec.Cmd
	var outs []*bytes.Buffer
	for range 4 {
		cmd := exec.Command(binary, "migrate", "up", "--schema", db.Schema, "--json")
		cmd.Env = env
		out := &bytes.Buffer{}
		cmd.Stdout = out
		require.NoError(t, cmd.Start())
		cmds, outs = append(cmds, cmd), append(outs, out)
	}
	applied := 0
	for i, cmd := range cmds {
		require.NoError(t, cmd.Wait())
		var res struct{ Versions []int }
		require.NoError(t, json.Unmarshal(outs[i].Bytes(), &res))
		applied += len(res.Versions)
	}
	require.Equal(t, 1, applied, "the migration was applied exactly once")
}

func TestStatus(t *testing.T) {
	t.Parallel()
	b := setup(t)
	for i, org := range []string{"org_a", "org_a", "org_b"} {
		_, err := outbox.Append(b.ctx, b.db.Pool, outbox.AppendParams{OrganizationID: org, EventType: "x.y", Payload: map[string]any{"i": i}})
		require.NoError(t, err)
	}
	_, err := b.db.Pool.Exec(b.ctx, "UPDATE outbox_events SET next_attempt_at = now() + interval '1 hour' WHERE organization_id = 'org_b'")
	require.NoError(t, err)
	b.insertDeadLetter(t, 9001, "org_c", "x.y")

	r := runOutbox(t, b.env, "", "status", "--schema", b.schema, "--json")
	require.Equal(t, 0, r.code, r.stderr)
	var rep struct {
		Organizations []struct {
			OrganizationID string  `json:"organization_id"`
			Pending        int     `json:"pending"`
			Oldest         float64 `json:"oldest_pending_age_seconds"`
			Retrying       int     `json:"waiting_for_retry"`
			Dead           int     `json:"dead_letters"`
		}
		Totals struct {
			Pending, Dead int
		}
	}
	require.NoError(t, json.Unmarshal([]byte(r.stdout), &rep))
	require.Len(t, rep.Organizations, 3)
	byOrg := map[string]int{}
	for i, o := range rep.Organizations {
		byOrg[o.OrganizationID] = i
	}
	a, bb, c := rep.Organizations[byOrg["org_a"]], rep.Organizations[byOrg["org_b"]], rep.Organizations[byOrg["org_c"]]
	require.Equal(t, 2, a.Pending)
	require.Greater(t, a.Oldest, 0.0)
	require.Equal(t, 1, bb.Retrying)
	require.Equal(t, 1, c.Dead)
	require.Equal(t, 3, rep.Totals.Pending)

	r = runOutbox(t, b.env, "", "status", "--schema", b.schema)
	require.Equal(t, 0, r.code, r.stderr)
	require.Contains(t, r.stdout, "ORGANIZATION")
	require.Contains(t, r.stdout, "TOTAL")
}

func (b *bundle) insertDeadLetter(t *testing.T, id int64, org, typ string) {
	t.Helper()
	_, err := b.db.Pool.Exec(b.ctx, `INSERT INTO outbox_dead_letters
		(id, event_id, organization_id, event_type, payload, created_at, attempts, last_error, status_code, response_body)
		VALUES ($1, gen_random_uuid(), $2, $3, '{"k": 1}', now(), 1, 'svix refused the message: 422', 422, '{"detail": []}')`, id, org, typ)
	require.NoError(t, err)
}

func TestDeadLetters(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.insertDeadLetter(t, 1, "org_a", "x.y")
	b.insertDeadLetter(t, 2, "org_a", "x.z")
	b.insertDeadLetter(t, 3, "org_b", "x.y")
	b.insertDeadLetter(t, 4, "org_c", "x.y")
	s := []string{"--schema", b.schema}

	r := runOutbox(t, b.env, "", append([]string{"dead-letters", "list", "--org", "org_a", "--json"}, s...)...)
	require.Equal(t, 0, r.code, r.stderr)
	var list []struct {
		ID         int64  `json:"id"`
		StatusCode int    `json:"status_code"`
		LastError  string `json:"last_error"`
	}
	require.NoError(t, json.Unmarshal([]byte(r.stdout), &list))
	require.Len(t, list, 2)
	require.Equal(t, 422, list[0].StatusCode)

	r = runOutbox(t, b.env, "", append([]string{"dead-letters", "list"}, s...)...)
	require.Contains(t, r.stdout, "svix refused the message: 422")

	r = runOutbox(t, b.env, "", append([]string{"dead-letters", "requeue"}, s...)...)
	require.Equal(t, 2, r.code)
	require.Contains(t, r.stderr, "give a filter")

	r = runOutbox(t, b.env, "", append([]string{"dead-letters", "requeue", "--id", "1", "--event-type", "x.y"}, s...)...)
	require.Equal(t, 0, r.code, r.stderr)
	require.Equal(t, "requeued 1 dead letter(s)\n", r.stdout)
	var back int
	require.NoError(t, b.db.Pool.QueryRow(b.ctx, "SELECT count(*) FROM outbox_events WHERE id = 1 AND attempts = 0").Scan(&back))
	require.Equal(t, 1, back, "requeued with its id and a fresh attempt count")

	r = runOutbox(t, b.env, "no\n", append([]string{"dead-letters", "purge", "--org", "org_b"}, s...)...)
	require.Equal(t, 1, r.code)
	require.Contains(t, r.stderr, "purge not confirmed; nothing deleted")
	r = runOutbox(t, b.env, "yes\n", append([]string{"dead-letters", "purge", "--org", "org_b"}, s...)...)
	require.Equal(t, 0, r.code, r.stderr)
	require.Equal(t, "purged 1 dead letter(s)\n", r.stdout)
	r = runOutbox(t, b.env, "", append([]string{"dead-letters", "purge", "--all", "--yes", "--since", "1h", "--json"}, s...)...)
	require.Equal(t, 0, r.code, r.stderr)
	require.JSONEq(t, `{"purged": 2}`, r.stdout)
}

// startRelay starts `outbox relay` and returns a function that stops it
// with SIGTERM, checks it exited 0, and returns its stderr.
func startRelay(t *testing.T, env []string, args ...string) (stop func() string, stderr *syncbuf.Buffer) {
	t.Helper()
	cmd := exec.Command(binary, append([]string{"relay"}, args...)...)
	cmd.Env = env
	stderr = &syncbuf.Buffer{}
	cmd.Stderr = stderr
	require.NoError(t, cmd.Start())
	// It handles SIGTERM once it has logged its start.
	require.Eventually(t, func() bool { return strings.Contains(stderr.String(), "relay: starting") }, 20*time.Second, 5*time.Millisecond,
		"relay did not start: %s", stderr)
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
	port := freePort(t)
	stop, stderr := startRelay(t, env, "--schema", b.schema, "--channel", "outbox_"+b.schema,
		"--poll-interval", "100ms", "--http-addr", fmt.Sprintf("127.0.0.1:%d", port), "--log-format", "json")

	base := fmt.Sprintf("http://127.0.0.1:%d", port)
	require.Eventually(t, func() bool { return httpStatus(base+"/readyz") == 200 }, 20*time.Second, 20*time.Millisecond, "relay not ready: %s", stderr)
	require.Equal(t, 200, httpStatus(base+"/healthz"))

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

func TestDemo(t *testing.T) {
	t.Parallel()
	r := runOutbox(t, []string{"DATABASE_URL=" + pgtest.ServerURL(t)}, "", "demo", "--events", "300", "--orgs", "7", "--fault-rate", "0.1")
	require.Equal(t, 0, r.code, r.stderr)
	require.Contains(t, r.stdout, "result            OK: every committed event delivered exactly once")
	require.Contains(t, r.stdout, "duplicates        0")
	require.Regexp(t, `commit→Svix +p50 \S+ +p95 \S+ +p99 \S+`, r.stdout)
	require.Contains(t, r.stderr, "schema outbox_demo_")
}

func TestErrorsAreOneClearLine(t *testing.T) {
	t.Parallel()
	port := freePort(t) // nothing listens there
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
	for _, c := range []string{"migrate", "relay", "status", "dead-letters", "demo"} {
		require.Contains(t, r.stdout, c)
		h := runOutbox(t, nil, "", c, "--help")
		require.Equal(t, 0, h.code, c)
		require.Contains(t, h.stdout, "Usage: outbox "+c, c)
		require.Contains(t, h.stdout, "Examples:", c)
		if c != "demo" { // the demo makes its own schema
			require.Contains(t, h.stdout, "-schema", c)
		}
	}
}

func httpStatus(url string) int {
	resp, err := http.Get(url)
	if err != nil {
		return 0
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	return resp.StatusCode
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}
