package outbox_test

import (
	"encoding/json"
	"errors"
	"net/netip"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/outboxrelay/outbox"
	"github.com/outboxrelay/outbox/eventtypes"
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

var auditLogCreated = outbox.DefineEventIn[AuditLog](auditLogs, "audit_log.created", outbox.EventTypeInfo{
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
			outbox.DefineEventIn[AuditLog](c, "audit:created", outbox.EventTypeInfo{Description: "x"})
		}, "Name: must contain only"},
		{"no description", func(c *outbox.Catalog) { outbox.DefineEventIn[AuditLog](c, "a.b", outbox.EventTypeInfo{}) }, "Description"},
		{"bad group", func(c *outbox.Catalog) {
			outbox.DefineEventIn[AuditLog](c, "a.b", outbox.EventTypeInfo{Description: "x", Group: "a group"})
		}, "Group"},
		{"bad schema version", func(c *outbox.Catalog) {
			outbox.DefineEventIn[AuditLog](c, "a.b", outbox.EventTypeInfo{Description: "x", SchemaVersion: "v 2"})
		}, "SchemaVersion"},
		{"not an object", func(c *outbox.Catalog) {
			outbox.DefineEventIn[[]string](c, "a.b", outbox.EventTypeInfo{Description: "x"})
		}, "PayloadType: must marshal to a JSON object (a struct or a map with string keys), and []string is a JSON array"},
		{"a time", func(c *outbox.Catalog) {
			outbox.DefineEventIn[*time.Time](c, "a.b", outbox.EventTypeInfo{Description: "x"})
		}, "time.Time is a string"},
		{"a text marshaler", func(c *outbox.Catalog) {
			outbox.DefineEventIn[netip.Addr](c, "a.b", outbox.EventTypeInfo{Description: "x"})
		}, "netip.Addr is a string (MarshalText)"},
		{"map with struct keys", func(c *outbox.Catalog) {
			outbox.DefineEventIn[map[Actor]int](c, "a.b", outbox.EventTypeInfo{Description: "x"})
		}, "is a map whose keys cannot be JSON object keys"},
		{"an interface", func(c *outbox.Catalog) { outbox.DefineEventIn[any](c, "a.b", outbox.EventTypeInfo{Description: "x"}) }, "interface"},
		{"defined twice", func(c *outbox.Catalog) {
			outbox.DefineEventIn[AuditLog](c, "a.b", outbox.EventTypeInfo{Description: "x"})
			outbox.DefineEventIn[Actor](c, "a.b", outbox.EventTypeInfo{Description: "y"})
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

// The cheap check at definition time accepts what marshals to a JSON
// object, and the types that say their own shape (the schema generator,
// in package eventtypes, judges those).
func TestDefineEventAcceptsObjects(t *testing.T) {
	t.Parallel()
	c := outbox.NewCatalog()
	outbox.DefineEventIn[AuditLog](c, "a.struct", outbox.EventTypeInfo{Description: "x"})
	outbox.DefineEventIn[**AuditLog](c, "a.pointer", outbox.EventTypeInfo{Description: "x"})
	outbox.DefineEventIn[map[string]any](c, "a.map", outbox.EventTypeInfo{Description: "x"})
	outbox.DefineEventIn[map[int]string](c, "a.int_map", outbox.EventTypeInfo{Description: "x"})
	outbox.DefineEventIn[json.RawMessage](c, "a.marshaler", outbox.EventTypeInfo{Description: "x"})
	outbox.DefineEventIn[hooked](c, "a.hook", outbox.EventTypeInfo{Description: "x"})
	spec, ok := c.Lookup("a.pointer")
	require.True(t, ok)
	require.Equal(t, reflect.TypeFor[**AuditLog](), spec.PayloadType, "the Go type, for the schema generator")
	require.Nil(t, spec.JSONSchema)
	require.Equal(t, outbox.DefaultSchemaVersion, spec.SchemaVersion)
	require.Len(t, c.Specs(), 6)
}

// hooked is a string with a schema hook: accepted, the generator judges it.
type hooked string

// JSONSchema is the generator's hook (its real signature returns a
// *jsonschema.Schema; the cheap check looks at the name only).
func (hooked) JSONSchema() any { return nil }

// Catalog.Add takes a spec with its JSON Schema (as a catalog file holds
// it) or its payload type, and refuses one with neither or a schema that is
// not an object.
func TestCatalogAdd(t *testing.T) {
	t.Parallel()
	c := outbox.NewCatalog()
	info := outbox.EventTypeInfo{Description: "x"}
	require.NoError(t, c.Add(outbox.EventTypeSpec{Name: "a.schema", EventTypeInfo: info, JSONSchema: json.RawMessage(`{"type":"object"}`)}))
	require.NoError(t, c.Add(outbox.EventTypeSpec{Name: "a.type", EventTypeInfo: info, PayloadType: reflect.TypeFor[Actor]()}))
	for _, tc := range []struct {
		spec outbox.EventTypeSpec
		want string
	}{
		{outbox.EventTypeSpec{Name: "a.none", EventTypeInfo: info}, `outbox: event type "a.none": JSONSchema: required when PayloadType is nil: invalid event definition`},
		{outbox.EventTypeSpec{Name: "a.array", EventTypeInfo: info, JSONSchema: json.RawMessage(`[]`)}, `outbox: event type "a.array": JSONSchema: must be a JSON Schema object: invalid event definition`},
		{outbox.EventTypeSpec{Name: "a.slice", EventTypeInfo: info, PayloadType: reflect.TypeFor[[]Actor]()}, "PayloadType: must marshal to a JSON object"},
		{outbox.EventTypeSpec{Name: "a.schema", EventTypeInfo: info, PayloadType: reflect.TypeFor[Actor]()}, `outbox: event type "a.schema" is defined twice: invalid event definition`},
	} {
		err := c.Add(tc.spec)
		require.ErrorIs(t, err, outbox.ErrInvalidEventDefinition, tc.want)
		require.ErrorContains(t, err, tc.want)
	}
}

// With eventtypes' Validator as the PayloadValidator, a payload its event
// type's schema refuses is not appended, and the error says where; event
// types outside the catalog and payloads that fit go through.
func TestPayloadValidator(t *testing.T) {
	t.Parallel()
	b := setup(t)
	p, err := outbox.NewProducer(outbox.Config{PayloadValidator: eventtypes.NewValidator(auditLogs)})
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
		require.True(t, strings.HasPrefix(err.Error(), "outbox: Payload: must match the schema of audit_log.created: at /"), "one prefix: %s", err)
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

// refusal is a PayloadValidator's own error type.
type refusal struct{ reason string }

func (r *refusal) Error() string { return "mine: " + r.reason }

// refuseAll is a PayloadValidator that refuses every payload, recording
// what it saw.
type refuseAll struct{ seen chan string }

func (v refuseAll) ValidatePayload(eventType outbox.EventType, payload []byte) error {
	v.seen <- string(eventType) + " " + string(payload)
	return &refusal{reason: "no"}
}

// Any PayloadValidator plugs in: its error becomes a *ValidationError
// (Field "Payload") wrapping ErrInvalidPayload and the error itself, and
// nothing is written; without one nothing is checked.
func TestPayloadValidatorIsPluggable(t *testing.T) {
	t.Parallel()
	b := setup(t)
	v := refuseAll{seen: make(chan string, 2)}
	p, err := outbox.NewProducer(outbox.Config{PayloadValidator: v})
	require.NoError(t, err)
	_, err = p.Append(b.ctx, b.pool, params("org-pv", map[string]any{"a": 1}))
	require.EqualError(t, err, "outbox: Payload: mine: no")
	require.ErrorIs(t, err, outbox.ErrInvalidPayload)
	var mine *refusal
	require.ErrorAs(t, err, &mine)
	var verr *outbox.ValidationError
	require.ErrorAs(t, err, &verr)
	require.Equal(t, "Payload", verr.Field)
	_, err = p.AppendBatch(b.ctx, b.pool, []outbox.AppendParams{params("org-pv", map[string]any{"b": 2})})
	require.EqualError(t, err, "outbox: batch element 0: Payload: mine: no")
	require.Equal(t, `audit_log.created {"a":1}`, <-v.seen, "the event type and the encoded payload")
	require.Equal(t, `audit_log.created {"b":2}`, <-v.seen)
	require.Equal(t, 0, b.countEvents(t, "org-pv"), "nothing refused was written")

	_, err = outbox.Append(b.ctx, b.pool, params("org-pv", map[string]any{"a": 1}))
	require.NoError(t, err, "no PayloadValidator by default")
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
