package outbox_test

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/outboxrelay/outbox"
)

// AuditLog is the payload of the example event type.
type AuditLog struct {
	ID     string    `json:"id"`
	Action string    `json:"action" jsonschema:"enum=login,enum=logout,enum=export"`
	Actor  Actor     `json:"actor"`
	At     time.Time `json:"at"`
	Note   string    `json:"note,omitempty"`
}

// Actor is who did it.
type Actor struct {
	ID   string `json:"id"`
	Kind string `json:"kind" jsonschema:"enum=user,enum=api_key"`
}

var auditLogs = outbox.NewCatalog()

var auditLogCreated = outbox.DefineEventIn[AuditLog](auditLogs, "audit_log.created", outbox.EventInfo{
	Description: "An audit log entry was written.",
	Group:       "audit_log",
})

// A typed append goes through Append: the row is what an untyped append
// of the same payload writes.
func TestTypedAppend(t *testing.T) {
	t.Parallel()
	b := setup(t)
	at := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	entry := AuditLog{ID: "log_1", Action: "login", Actor: Actor{ID: "u_1", Kind: "user"}, At: at}
	res, err := auditLogCreated.Append(b.ctx, b.pool, "org-typed", entry)
	require.NoError(t, err)
	require.Equal(t, "org-typed", res.OrganizationID)
	batch, err := auditLogCreated.AppendBatch(b.ctx, b.pool, "org-typed", []AuditLog{entry, entry})
	require.NoError(t, err)
	require.Equal(t, int64(2), batch.Count)

	var typ string
	var payload map[string]any
	require.NoError(t, b.pool.QueryRow(b.ctx, "SELECT event_type, payload FROM outbox_events WHERE event_id = $1", res.EventID).Scan(&typ, &payload))
	require.Equal(t, "audit_log.created", typ)
	want, err := json.Marshal(entry)
	require.NoError(t, err)
	var wantMap map[string]any
	require.NoError(t, json.Unmarshal(want, &wantMap))
	require.Equal(t, wantMap, payload)
	require.Equal(t, 3, b.countEvents(t, "org-typed"))

	_, err = auditLogCreated.Append(b.ctx, b.pool, "app_not_an_org", entry)
	require.ErrorIs(t, err, outbox.ErrInvalidOrganizationID, "the same validation as Append")
	require.Equal(t, outbox.EventType("audit_log.created"), auditLogCreated.Name())
}

// A bad definition fails when it is made, naming what is wrong.
func TestDefineEventRefusesBadDefinitions(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name   string
		define func(c *outbox.Catalog)
		want   string
	}{
		{"bad name", func(c *outbox.Catalog) {
			outbox.DefineEventIn[AuditLog](c, "audit:created", outbox.EventInfo{Description: "x"})
		}, "name"},
		{"no description", func(c *outbox.Catalog) { outbox.DefineEventIn[AuditLog](c, "a.b", outbox.EventInfo{}) }, "Description"},
		{"bad group", func(c *outbox.Catalog) {
			outbox.DefineEventIn[AuditLog](c, "a.b", outbox.EventInfo{Description: "x", Group: "a group"})
		}, "Group"},
		{"bad schema version", func(c *outbox.Catalog) {
			outbox.DefineEventIn[AuditLog](c, "a.b", outbox.EventInfo{Description: "x", SchemaVersion: "v 2"})
		}, "SchemaVersion"},
		{"not an object", func(c *outbox.Catalog) { outbox.DefineEventIn[[]string](c, "a.b", outbox.EventInfo{Description: "x"}) }, "JSON object"},
		{"defined twice", func(c *outbox.Catalog) {
			outbox.DefineEventIn[AuditLog](c, "a.b", outbox.EventInfo{Description: "x"})
			outbox.DefineEventIn[Actor](c, "a.b", outbox.EventInfo{Description: "y"})
		}, "defined twice (first at "},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c := outbox.NewCatalog()
			defer func() {
				v := recover()
				require.NotNil(t, v, "DefineEvent must panic")
				err, ok := v.(error)
				require.True(t, ok)
				require.ErrorIs(t, err, outbox.ErrInvalidEventDefinition)
				require.Contains(t, err.Error(), tc.want)
			}()
			tc.define(c)
		})
	}
}

// A catalog written as JSON reads back the same, and a bad file says why.
func TestCatalogJSONRoundTrip(t *testing.T) {
	t.Parallel()
	data, err := json.Marshal(auditLogs)
	require.NoError(t, err)
	back := outbox.NewCatalog()
	require.NoError(t, json.Unmarshal(data, back))
	require.Equal(t, auditLogs.Specs(), back.Specs())
	spec, ok := back.Lookup("audit_log.created")
	require.True(t, ok)
	require.Equal(t, "1", spec.SchemaVersion, "schema version 1 unless the definition says otherwise")
	require.Equal(t, "audit_log", spec.Group)

	err = json.Unmarshal([]byte(`{"eventTypes":[{"name":"a:b","description":"x","schemaVersion":"1","schema":{}}]}`), outbox.NewCatalog())
	require.ErrorIs(t, err, outbox.ErrInvalidEventDefinition)
	err = json.Unmarshal([]byte(`{"eventTypes":[{"nmae":"a.b"}]}`), outbox.NewCatalog())
	require.ErrorContains(t, err, "nmae")
}

// With ValidatePayloads a payload its event type's schema refuses is not
// appended, and the error says where; event types outside the catalog
// and payloads that fit go through.
func TestValidatePayloads(t *testing.T) {
	t.Parallel()
	b := setup(t)
	p, err := outbox.NewProducer(outbox.Config{ValidatePayloads: true, Catalog: auditLogs})
	require.NoError(t, err)
	good := map[string]any{"id": "log_1", "action": "login", "actor": map[string]any{"id": "u", "kind": "user"}, "at": "2026-12-01T12:00:00Z"}
	_, err = p.Append(b.ctx, b.pool, outbox.AppendParams{OrganizationID: "org-v", EventType: "audit_log.created", Payload: good})
	require.NoError(t, err)

	for _, tc := range []struct {
		name    string
		payload map[string]any
		where   string
	}{
		{"missing required", map[string]any{"id": "log_1", "action": "login", "at": "2026-12-01T12:00:00Z"}, "at /: missing property 'actor'"},
		{"outside the enum", merge(good, map[string]any{"action": "delete"}), "/action"},
		{"nested wrong type", merge(good, map[string]any{"actor": map[string]any{"id": 7, "kind": "user"}}), "/actor/id"},
		{"not a date-time", merge(good, map[string]any{"at": "yesterday"}), "/at"},
	} {
		_, err := p.Append(b.ctx, b.pool, outbox.AppendParams{OrganizationID: "org-v", EventType: "audit_log.created", Payload: tc.payload})
		require.ErrorIs(t, err, outbox.ErrInvalidPayload, tc.name)
		var verr *outbox.ValidationError
		require.True(t, errors.As(err, &verr), tc.name)
		require.Equal(t, "Payload", verr.Field)
		require.Contains(t, verr.Rule, tc.where, tc.name)
		for _, v := range []string{"delete", "yesterday"} {
			require.NotContains(t, err.Error(), v, "%s: a payload's values stay out of the message", tc.name)
		}
	}
	_, err = p.AppendBatch(b.ctx, b.pool, []outbox.AppendParams{
		{OrganizationID: "org-v", EventType: "audit_log.created", Payload: good},
		{OrganizationID: "org-v", EventType: "audit_log.created", Payload: map[string]any{"id": 1}},
	})
	require.ErrorIs(t, err, outbox.ErrInvalidPayload)
	require.Contains(t, err.Error(), "batch element 1")
	_, err = p.Append(b.ctx, b.pool, outbox.AppendParams{OrganizationID: "org-v", EventType: "not.in.catalog", Payload: map[string]any{"any": "thing"}})
	require.NoError(t, err, "types outside the catalog are not checked")
	require.Equal(t, 2, b.countEvents(t, "org-v"), "nothing refused was written")
}

func merge(a, b map[string]any) map[string]any {
	out := map[string]any{}
	for k, v := range a {
		out[k] = v
	}
	for k, v := range b {
		out[k] = v
	}
	return out
}

// Channels and tags are checked against Svix's rules and stored.
func TestChannelsAndTags(t *testing.T) {
	t.Parallel()
	b := setup(t)
	long := strings.Repeat("c", 129)
	for _, tc := range []struct {
		name     string
		channels []string
		tags     []string
		sentinel error
	}{
		{"too many channels", []string{"a", "b", "c", "d", "e", "f", "g", "h", "i", "j", "k"}, nil, outbox.ErrInvalidChannels},
		{"empty channel", []string{""}, nil, outbox.ErrInvalidChannels},
		{"long channel", []string{long}, nil, outbox.ErrInvalidChannels},
		{"channel with a slash", []string{"project/1"}, nil, outbox.ErrInvalidChannels},
		{"repeated channel", []string{"p1", "p1"}, nil, outbox.ErrInvalidChannels},
		{"too many tags", nil, []string{"a", "b", "c", "d", "e", "f"}, outbox.ErrInvalidTags},
		{"tag with a colon", nil, []string{"a:b"}, outbox.ErrInvalidTags},
		{"repeated tag", nil, []string{"t", "t"}, outbox.ErrInvalidTags},
	} {
		ap := params("org-ct", map[string]any{"a": 1})
		ap.Channels, ap.Tags = tc.channels, tc.tags
		_, err := outbox.Append(b.ctx, b.pool, ap)
		require.ErrorIs(t, err, tc.sentinel, tc.name)
		_, err = outbox.AppendBatch(b.ctx, b.pool, []outbox.AppendParams{ap})
		require.ErrorIs(t, err, tc.sentinel, tc.name)
	}
	require.Equal(t, 0, b.countEvents(t, "org-ct"), "nothing refused was written")

	ap := params("org-ct", map[string]any{"a": 1})
	ap.Channels, ap.Tags = []string{"project_1", "org:42"}, []string{"billing/v2", `a\b#c`}
	_, err := outbox.Append(b.ctx, b.pool, ap)
	require.NoError(t, err)
	_, err = outbox.AppendBatch(b.ctx, b.pool, []outbox.AppendParams{ap, params("org-ct", map[string]any{"b": 1})})
	require.NoError(t, err)
	rows, err := b.pool.Query(b.ctx, "SELECT channels, tags FROM outbox_events WHERE organization_id = 'org-ct' ORDER BY id")
	require.NoError(t, err)
	var got [][2][]string
	for rows.Next() {
		var ch, tg []string
		require.NoError(t, rows.Scan(&ch, &tg))
		got = append(got, [2][]string{ch, tg})
	}
	require.NoError(t, rows.Err())
	want := [2][]string{{"project_1", "org:42"}, {"billing/v2", `a\b#c`}}
	require.Equal(t, [][2][]string{want, want, {nil, nil}}, got, "stored; none is NULL")
}
