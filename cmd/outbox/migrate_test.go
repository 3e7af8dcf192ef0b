package main_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os/exec"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/outboxrelay/outbox"
	"github.com/outboxrelay/outbox/internal/pgtest"
	"github.com/outboxrelay/outbox/migrations"
)

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
	require.Equal(t, versionLines("applied", false), r.stdout)
	r = runOutbox(t, env, "", "migrate", "up", "--schema", schema)
	require.Equal(t, "migrate up: nothing to do\n", r.stdout)

	r = runOutbox(t, env, "", "migrate", "status", "--schema", schema, "--json")
	require.Equal(t, 0, r.code, r.stderr)
	var states []struct {
		Version int
		Applied bool
	}
	require.NoError(t, json.Unmarshal([]byte(r.stdout), &states))
	require.Len(t, states, len(migrations.All()))
	for _, s := range states {
		require.True(t, s.Applied)
	}

	r = runOutbox(t, env, "", "migrate", "down", "1", "--schema", schema, "--yes")
	require.Equal(t, 0, r.code, r.stderr)
	require.Equal(t, fmt.Sprintf("reverted %04d\n", len(migrations.All())), r.stdout)

	r = runOutbox(t, env, "", "migrate", "down", "zero")
	require.Equal(t, 2, r.code)
	require.Contains(t, r.stderr, "N must be a positive number")
}

// migrate down drops tables with their rows: it needs N or --all, says what
// it would drop, and asks unless --yes.
func TestMigrateDownAsksFirst(t *testing.T) {
	t.Parallel()
	b := setup(t)
	_, err := outbox.Append(b.ctx, b.db.Pool, outbox.AppendParams{OrganizationID: "org_a", EventType: "x.y", Payload: map[string]any{}})
	require.NoError(t, err)
	b.insertDeadLetter(t, 7, "org_a", "x.y")
	tablesLeft := func() int {
		var n int
		require.NoError(t, b.db.Pool.QueryRow(b.ctx, "SELECT count(*) FROM information_schema.tables WHERE table_schema = $1 AND table_name LIKE 'outbox_%'", b.schema).Scan(&n))
		return n
	}
	before := tablesLeft()

	r := runOutbox(t, b.env, "", "migrate", "down", "--schema", b.schema)
	require.Equal(t, 2, r.code)
	require.Contains(t, r.stderr, "migrate down needs N (how many migrations to revert) or --all")
	require.Equal(t, before, tablesLeft(), "nothing reverted")

	r = runOutbox(t, b.env, "no\n", "migrate", "down", "--all", "--schema", b.schema)
	require.Equal(t, 1, r.code)
	require.Contains(t, r.stderr, fmt.Sprintf("Reverting migration(s) %v may drop outbox's tables, with 1 pending event(s) and 1 dead letter(s) for good.", newestFirst()))
	require.Contains(t, r.stderr, "not confirmed; nothing reverted")
	require.Equal(t, before, tablesLeft(), "nothing reverted")

	r = runOutbox(t, b.env, "yes\n", "migrate", "down", "--all", "--schema", b.schema)
	require.Equal(t, 0, r.code, r.stderr)
	require.Equal(t, versionLines("reverted", true), r.stdout)
	require.Equal(t, 1, tablesLeft(), "only the version table is left")
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
	require.Equal(t, len(migrations.All()), applied, "each migration was applied exactly once")
}

// newestFirst lists the shipped migrations' versions, newest first.
func newestFirst() []int {
	var vs []int
	for _, m := range migrations.All() {
		vs = append([]int{m.Version}, vs...)
	}
	return vs
}

// versionLines is what migrate up (or down --all) prints for every shipped
// migration.
func versionLines(verb string, reverse bool) string {
	var b strings.Builder
	all := migrations.All()
	for i := range all {
		m := all[i]
		if reverse {
			m = all[len(all)-1-i]
		}
		fmt.Fprintf(&b, "%s %04d\n", verb, m.Version)
	}
	return b.String()
}
