package main_test

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/outboxrelay/outbox/relay"
)

// pause and resume go through relay.Admin (tested in the library); the
// commands print what they did, status lists the pauses, and bad input is
// a usage error that writes nothing.
func TestPauseAndResume(t *testing.T) {
	t.Parallel()
	b := setup(t)
	r := runOutbox(t, b.env, "", "pause", "org_p", "--schema", b.schema, "--reason", "tenant flooding", "--for", "2h", "--json")
	require.Equal(t, 0, r.code, r.stderr)
	var p relay.OrganizationPause
	require.NoError(t, json.Unmarshal([]byte(r.stdout), &p))
	require.Equal(t, "org_p", p.OrganizationID)
	require.Equal(t, "tenant flooding", p.Reason)
	require.NotNil(t, p.Until)
	require.WithinDuration(t, time.Now().Add(2*time.Hour), *p.Until, time.Minute)

	r = runOutbox(t, b.env, "", "pause", "org_q", "--schema", b.schema, "--reason", "customer asked to hold")
	require.Equal(t, 0, r.code, r.stderr)
	require.Contains(t, r.stdout, "paused org_q until resumed: customer asked to hold")

	r = runOutbox(t, b.env, "", "status", "--schema", b.schema)
	require.Equal(t, 0, r.code, r.stderr)
	require.Contains(t, r.stdout, "PAUSED")
	require.Contains(t, r.stdout, "org_q")
	r = runOutbox(t, b.env, "", "status", "--schema", b.schema, "--json")
	require.Equal(t, 0, r.code, r.stderr)
	var st struct {
		relay.Status
		Paused []relay.OrganizationPause `json:"paused"`
	}
	require.NoError(t, json.Unmarshal([]byte(r.stdout), &st))
	require.Len(t, st.Paused, 2)
	require.Equal(t, "TOTAL", st.Totals.OrganizationID, "the status fields are where they were")

	r = runOutbox(t, b.env, "", "resume", "org_q", "--schema", b.schema)
	require.Equal(t, 0, r.code, r.stderr)
	require.Equal(t, "resumed org_q\n", r.stdout)
	r = runOutbox(t, b.env, "", "resume", "org_q", "--schema", b.schema)
	require.Equal(t, 0, r.code, r.stderr)
	require.Equal(t, "org_q was not paused\n", r.stdout)
}

func TestPauseRefusesBadInput(t *testing.T) {
	t.Parallel()
	b := setup(t)
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"no organization", []string{"pause", "--reason", "r"}, "give the organization"},
		{"no reason", []string{"pause", "org_v"}, "Reason must not be empty"},
		{"both ends", []string{"pause", "org_v", "--reason", "r", "--for", "1h", "--until", "2030-01-01T00:00:00Z"}, "--until and --for"},
		{"bad time", []string{"pause", "org_v", "--reason", "r", "--until", "tomorrow"}, "RFC 3339"},
		{"past end", []string{"pause", "org_v", "--reason", "r", "--until", "2020-01-01T00:00:00Z"}, "not in the future"},
		{"negative", []string{"pause", "org_v", "--reason", "r", "--for", "-1h"}, "must be positive"},
		{"resume two", []string{"resume", "org_v", "org_w"}, "takes one organization"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := runOutbox(t, b.env, "", append(tc.args, "--schema", b.schema)...)
			require.Equal(t, 2, r.code, r.stderr)
			require.Contains(t, r.stderr, tc.want)
		})
	}
	var lanes int
	require.NoError(t, b.db.Pool.QueryRow(b.ctx, "SELECT count(*) FROM outbox_lanes").Scan(&lanes))
	require.Zero(t, lanes, "a refused pause wrote nothing")
}
