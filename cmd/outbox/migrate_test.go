package main_test

import (
	"bytes"
	"context"
	"encoding/json"
	"os/exec"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/outboxrelay/outbox/internal/pgtest"
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
