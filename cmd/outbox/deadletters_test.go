package main_test

import (
	"encoding/json"
	"testing"

	"github.com/stretchr/testify/require"
)

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
