package eventtypes_test

import (
	"encoding/json"
	"errors"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/outboxrelay/outbox"
	"github.com/outboxrelay/outbox/eventtypes"
)

// A catalog file reads back as the catalog it was written from, schemas
// and all, and a bad file says why.
func TestCatalogFileRoundTrip(t *testing.T) {
	t.Parallel()
	c := catalog(t)
	data, err := eventtypes.MarshalCatalog(c)
	require.NoError(t, err)
	back, err := eventtypes.UnmarshalCatalog(data)
	require.NoError(t, err)
	require.Len(t, back.Specs(), 2)
	for _, spec := range c.Specs() {
		read, ok := back.Lookup(spec.Name)
		require.True(t, ok, spec.Name)
		require.Equal(t, spec.EventTypeInfo, read.EventTypeInfo)
		require.Nil(t, read.PayloadType, "a file knows no Go types")
		want, err := eventtypes.SchemaOf(spec)
		require.NoError(t, err)
		require.JSONEq(t, string(want), string(read.JSONSchema), "the generated schema, as the file holds it")
	}
	spec, _ := back.Lookup("invoice.paid")
	require.Equal(t, "1", spec.SchemaVersion, "schema version 1 unless the definition says otherwise")
	require.Equal(t, "invoice", spec.Group)
	again, err := eventtypes.MarshalCatalog(back)
	require.NoError(t, err)
	require.Equal(t, string(data), string(again), "a file read and written again is the same file")

	var file struct {
		EventTypes []map[string]any `json:"eventTypes"`
	}
	require.NoError(t, json.Unmarshal(data, &file))
	require.Equal(t, "audit_log.created", file.EventTypes[0]["name"], "by name")
	require.Contains(t, file.EventTypes[0], "schema")

	for _, tc := range []struct {
		file, want string
		sentinel   error
	}{
		{`{"eventTypes":[{"name":"a:b","description":"x","schemaVersion":"1","schema":{}}]}`, `eventtypes: catalog: eventTypes[0]: outbox: event type "a:b": Name: must contain only`, outbox.ErrInvalidEventDefinition},
		{`{"eventTypes":[{"name":"a.b","description":"x","schemaVersion":"1"}]}`, `eventTypes[0]: outbox: event type "a.b": JSONSchema: must be a JSON Schema object`, outbox.ErrInvalidEventDefinition},
		{`{"eventTypes":[{"name":"a.b","description":"x","schema":null}]}`, "JSONSchema: must be a JSON Schema object", outbox.ErrInvalidEventDefinition},
		{`{"eventTypes":[{"nmae":"a.b"}]}`, `eventtypes: catalog: json: unknown field "nmae"`, nil},
	} {
		_, err := eventtypes.UnmarshalCatalog([]byte(tc.file))
		require.ErrorContains(t, err, tc.want, tc.file)
		if tc.sentinel != nil {
			require.ErrorIs(t, err, tc.sentinel, tc.file)
		}
	}
	empty, err := eventtypes.MarshalCatalog(outbox.NewCatalog())
	require.NoError(t, err)
	require.JSONEq(t, `{"eventTypes":[]}`, string(empty))
}

// selfMarshaling marshals itself and says nothing of its shape: the
// definition-time check lets it through, the generator refuses it.
type selfMarshaling struct{}

func (selfMarshaling) MarshalJSON() ([]byte, error) { return []byte(`{}`), nil }

// A type DefineEvent accepts but the generator cannot describe fails
// wherever its schema is needed, naming the event type and the Go type,
// and changes nothing in Svix.
func TestSchemaTheGeneratorRefuses(t *testing.T) {
	t.Parallel()
	c := catalog(t)
	outbox.DefineEventIn[selfMarshaling](c, "opaque.thing", outbox.EventTypeInfo{Description: "d"})
	spec, _ := c.Lookup("opaque.thing")
	_, err := eventtypes.SchemaOf(spec)
	require.ErrorIs(t, err, outbox.ErrInvalidEventDefinition)
	require.ErrorContains(t, err, "eventtypes: the schema of opaque.thing (payload type eventtypes_test.selfMarshaling): it marshals itself")

	_, err = eventtypes.MarshalCatalog(c)
	require.ErrorIs(t, err, outbox.ErrInvalidEventDefinition)
	_, err = eventtypes.OpenAPI(c, eventtypes.OpenAPIInfo{})
	require.ErrorIs(t, err, outbox.ErrInvalidEventDefinition)

	b := setup(t)
	_, err = eventtypes.Sync(b.ctx, b.client, c, eventtypes.SyncOptions{})
	require.ErrorIs(t, err, outbox.ErrInvalidEventDefinition)
	require.Empty(t, b.fake.EventTypes(), "every schema is generated before anything changes in Svix")

	err = eventtypes.NewValidator(c).ValidatePayload("opaque.thing", []byte(`{}`))
	require.ErrorIs(t, err, outbox.ErrInvalidPayload, "a type whose schema cannot be made refuses every payload")
	require.ErrorContains(t, err, "eventtypes: Payload: the schema of opaque.thing (payload type eventtypes_test.selfMarshaling): it marshals itself")
}

// The Validator's errors say where and which rule, once prefixed, and
// never quote the payload's values; what the catalog does not define
// passes, and a nil catalog is DefaultCatalog.
func TestValidatorMessages(t *testing.T) {
	t.Parallel()
	v := eventtypes.NewValidator(catalog(t))
	require.NoError(t, v.ValidatePayload("invoice.paid", []byte(`{"id":"i","amount":1,"paidAt":"2026-12-01T00:00:00Z"}`)))
	err := v.ValidatePayload("invoice.paid", []byte(`{"id":"secret-id","amount":"secret-amount","paidAt":"2026-12-01T00:00:00Z"}`))
	require.EqualError(t, err, `eventtypes: Payload: must match the schema of invoice.paid: at /amount: got string, want integer`)
	var verr *outbox.ValidationError
	require.True(t, errors.As(err, &verr))
	require.Equal(t, "Payload", verr.Field)
	require.ErrorIs(t, err, outbox.ErrInvalidPayload)
	err = v.ValidatePayload("invoice.paid", []byte(`{"id":"i","amount":1,"paidAt":"secret-time"}`))
	require.EqualError(t, err, `eventtypes: Payload: must match the schema of invoice.paid: at /paidAt: breaks "format"`)
	err = v.ValidatePayload("invoice.paid", []byte(`{"id":"i",`))
	require.ErrorIs(t, err, outbox.ErrInvalidPayload)
	require.ErrorContains(t, err, "eventtypes: Payload: valid JSON: ")
	require.NoError(t, v.ValidatePayload("not.in.catalog", []byte(`{"a":1}`)))
	require.NoError(t, eventtypes.NewValidator(nil).ValidatePayload("not.in.the.default.catalog", []byte(`{"a":1}`)))
}
