package main_test

import (
	"encoding/json"
	"os"
	"regexp"
	"strings"
	"testing"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/outboxrelay/outbox"
)

// seedEvents writes, as the relay would have, one event of org_a in each
// state: pending after a failed attempt, delivered, dead-lettered; and
// returns their event ids by state.
func (b *bundle) seedEvents(t *testing.T) map[string]uuid.UUID {
	t.Helper()
	pending, err := outbox.Append(b.ctx, b.db.Pool, outbox.AppendParams{OrganizationID: "org_a", EventType: "x.y", Payload: map[string]any{"k": 1}})
	require.NoError(t, err)
	_, err = b.db.Pool.Exec(b.ctx, `UPDATE outbox_events SET attempts = 1, last_attempt_at = now(),
		next_attempt_at = now() + interval '1 hour', last_error = '503 {}' WHERE id = $1`, pending.ID)
	require.NoError(t, err)
	delivered := uuid.New()
	_, err = b.db.Pool.Exec(b.ctx, `INSERT INTO outbox_deliveries (id, event_id, organization_id, event_type, outcome, svix_message_id, attempts, created_at)
		VALUES (7, $1, 'org_a', 'x.y', 'delivered', 'msg_2abc', 1, now() - interval '1 minute')`, delivered)
	require.NoError(t, err)
	b.insertDeadLetter(t, 9, "org_a", "x.z")
	var dead uuid.UUID
	require.NoError(t, b.db.Pool.QueryRow(b.ctx, "SELECT event_id FROM outbox_dead_letters WHERE id = 9").Scan(&dead))
	return map[string]uuid.UUID{"pending": pending.EventID, "delivered": delivered, "dead_lettered": dead}
}

func TestEventsShow(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ids := b.seedEvents(t)
	show := func(args ...string) result {
		return runOutbox(t, b.env, "", append([]string{"events", "show", "--schema", b.schema}, args...)...)
	}

	r := show(ids["delivered"].String())
	require.Equal(t, 0, r.code, r.stderr)
	require.True(t, strings.HasPrefix(r.stdout, "state:"), "state first: %q", r.stdout)
	require.Regexp(t, `(?m)^state:\s+delivered$`, r.stdout)
	require.Regexp(t, `(?m)^svix_message_id:\s+msg_2abc$`, r.stdout)
	require.Regexp(t, `(?m)^organization_id:\s+org_a$`, r.stdout)
	require.Regexp(t, `(?m)^settled_at:\s+\S+ \((now|\d+s ago)\)$`, r.stdout)

	r = show(ids["pending"].String())
	require.Equal(t, 0, r.code, r.stderr)
	require.Regexp(t, `(?m)^state:\s+pending$`, r.stdout)
	require.Regexp(t, `(?m)^attempts:\s+1$`, r.stdout)
	require.Regexp(t, `(?m)^next_attempt_at:\s+\S+ \(in (59m\d+s|1h0m0s)\)$`, r.stdout)
	require.Regexp(t, `(?m)^last_error:\s+503 \{\}$`, r.stdout)

	r = show(ids["dead_lettered"].String(), "--json")
	require.Equal(t, 0, r.code, r.stderr)
	var dead map[string]any
	require.NoError(t, json.Unmarshal([]byte(r.stdout), &dead))
	require.Equal(t, "dead_lettered", dead["state"])
	require.Equal(t, ids["dead_lettered"].String(), dead["event_id"])
	require.EqualValues(t, 9, dead["id"])
	require.EqualValues(t, 422, dead["status_code"])
	require.Equal(t, `{"detail": []}`, dead["response_body"])
	require.Equal(t, "svix refused the message: 422", dead["last_error"])
	require.Contains(t, dead, "dead_at")
	require.NotContains(t, dead, "settled_at")

	t.Run("unknown", func(t *testing.T) {
		t.Parallel()
		id := uuid.New()
		r := show(id.String())
		require.Equal(t, 1, r.code, "unknown exits 1, like grep finding nothing")
		require.Empty(t, r.stdout)
		require.Equal(t, "outbox: event "+id.String()+": unknown: not pending, not dead-lettered, and not in the delivery history (kept for --retention)\n", r.stderr)

		r = show(id.String(), "--json")
		require.Equal(t, 1, r.code)
		require.JSONEq(t, `{"state": "unknown", "event_id": "`+id.String()+`", "attempts": 0}`, r.stdout, "a script reads the answer on stdout")
	})

	t.Run("usage errors", func(t *testing.T) {
		t.Parallel()
		for _, tt := range []struct {
			args []string
			want string
		}{
			{[]string{"not-a-uuid"}, `<event-id> "not-a-uuid" is not an event id`},
			{nil, "events show needs <event-id>"},
			{[]string{ids["pending"].String(), ids["delivered"].String()}, "events show takes one <event-id>"},
			{[]string{ids["pending"].String(), "--org", "org_a"}, "--org is for events list"},
		} {
			r := show(tt.args...)
			require.Equal(t, 2, r.code, "%v: %s", tt.args, r.stderr)
			require.Contains(t, r.stderr, tt.want)
			require.Equal(t, 1, strings.Count(r.stderr, "\n"), "one line: %q", r.stderr)
		}
	})
}

func TestEventsList(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ids := b.seedEvents(t)
	b.insertDeadLetter(t, 10, "org_b", "x.y")
	list := func(args ...string) result {
		return runOutbox(t, b.env, "", append([]string{"events", "list", "--schema", b.schema}, args...)...)
	}

	type listed struct {
		State         string    `json:"state"`
		EventID       uuid.UUID `json:"event_id"`
		ID            int64     `json:"id"`
		SvixMessageID string    `json:"svix_message_id"`
	}
	decode := func(r result) (out []listed) {
		t.Helper()
		require.Equal(t, 0, r.code, r.stderr)
		require.NoError(t, json.Unmarshal([]byte(r.stdout), &out))
		return out
	}
	all := decode(list("--org", "org_a", "--json"))
	require.Len(t, all, 3)
	// Newest (highest id) first: the dead letter (9), the delivery (7), the
	// pending event (1, the schema's first).
	require.Equal(t, "dead_lettered", all[0].State)
	require.Equal(t, ids["dead_lettered"], all[0].EventID)
	require.Equal(t, "delivered", all[1].State)
	require.Equal(t, "msg_2abc", all[1].SvixMessageID)
	require.Equal(t, "pending", all[2].State)
	require.Equal(t, ids["pending"], all[2].EventID)

	r := list("--org", "org_a")
	require.Equal(t, 0, r.code, r.stderr)
	lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
	require.Len(t, lines, 4)
	require.Regexp(t, `^ID\s+EVENT ID\s+EVENT TYPE\s+STATE\s+ATTEMPTS\s+CREATED\s+DETAIL$`, lines[0])
	require.Regexp(t, `^9\s+`+ids["dead_lettered"].String()+`\s+x\.z\s+dead_lettered\s+1\s+\S+\s+svix refused the message: 422$`, lines[1])
	require.Regexp(t, `^7\s+\S+\s+x\.y\s+delivered\s+1\s+\S+\s+msg_2abc$`, lines[2])
	require.Regexp(t, `^1\s+\S+\s+x\.y\s+pending\s+1\s+\S+\s+retry in (59m\d+s|1h0m0s): 503 \{\}$`, lines[3])

	all = decode(list("--org", "org_a", "--state", "delivered", "--since", "1h", "--json"))
	require.Len(t, all, 1)
	require.Equal(t, ids["delivered"], all[0].EventID)

	all = decode(list("--org", "org_a", "--since", "30s", "--json"))
	require.Len(t, all, 2, "the delivered event was created a minute ago")
	require.Equal(t, "pending", all[1].State)
	all = decode(list("--org", "org_a", "--since", "30s", "--limit", "1", "--json"))
	require.Len(t, all, 1, "the limit keeps the newest")
	require.Equal(t, "dead_lettered", all[0].State)

	r = list("--org", "org_nobody", "--json")
	require.Equal(t, 0, r.code, r.stderr)
	require.Equal(t, "[]\n", r.stdout)

	for _, tt := range []struct {
		args []string
		want string
	}{
		{nil, "events list needs --org"},
		{[]string{"--org", "org_a", "--state", "unknown"}, `--state must be pending, delivered, skipped or dead_lettered, got "unknown"`},
		{[]string{"--org", "org_a", "--limit", "5000"}, "--limit must be 1 to 1000"},
		{[]string{"--org", "org_a", "--since", "yesterday"}, "want an RFC 3339 time or a duration"},
		{[]string{"--org", "org_a", "extra"}, "events list takes no arguments"},
	} {
		r := list(tt.args...)
		require.Equal(t, 2, r.code, "%v: %s", tt.args, r.stderr)
		require.Contains(t, r.stderr, tt.want)
		require.Equal(t, 1, strings.Count(r.stderr, "\n"), "one line: %q", r.stderr)
	}
	r = runOutbox(t, b.env, "", "events", "--schema", b.schema)
	require.Equal(t, 2, r.code)
	require.Contains(t, r.stderr, "events needs show or list")
}

// events --help documents the exit status and every flag, and docs/cli.md
// lists each of its own flags with the default --help prints.
func TestEventsHelpMatchesTheDocs(t *testing.T) {
	t.Parallel()
	r := runOutbox(t, nil, "", "events", "--help")
	require.Equal(t, 0, r.code)
	require.Contains(t, r.stdout, "Usage: outbox events")
	require.Contains(t, r.stdout, "Examples:")
	require.Contains(t, r.stdout, "Exit status of show: 0 when the event is found")
	require.Contains(t, runOutbox(t, nil, "", "--help").stdout, "events")

	page, err := os.ReadFile("../../docs/cli.md")
	require.NoError(t, err)
	_, section, ok := strings.Cut(string(page), "### `outbox events`")
	require.True(t, ok, "docs/cli.md has a section on outbox events")
	section, _, _ = strings.Cut(section, "\n## ")
	flags := regexp.MustCompile(`(?m)^  -(\S+)(?: \S+)?\n((?:    \t.*\n)+)`).FindAllStringSubmatch(r.stdout, -1)
	require.Greater(t, len(flags), 5)
	for _, f := range flags {
		name := f[1]
		if name == "database-url" || name == "schema" {
			continue // the relay's table lists them
		}
		row := regexp.MustCompile("(?m)^\\| `--" + regexp.QuoteMeta(name) + "` \\|([^|]*)\\|").FindStringSubmatch(section)
		require.NotNil(t, row, "docs/cli.md's events section lists --%s", name)
		def := ""
		if m := regexp.MustCompile(`\(default (\S+)\)\n$`).FindStringSubmatch(f[2]); m != nil {
			def = "`" + m[1] + "`"
		}
		if name == "since" {
			def = "`24h`" // the library's default, said in its usage text
		}
		require.Equal(t, def, strings.TrimSpace(row[1]), "docs/cli.md: the default of --%s", name)
	}
}
