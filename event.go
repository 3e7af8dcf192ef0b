package outbox

import (
	"context"
	"fmt"
	"reflect"
	"runtime"
	"strconv"
)

// Event is a typed event definition: an event type bound to the Go type of
// its payloads. Make one with DefineEvent, as a package-level variable:
//
//	var AuditLogCreated = outbox.DefineEvent[AuditLog]("audit_log.created", outbox.EventInfo{
//		Description: "An audit log entry was written.",
//		Group:       "audit_log",
//	})
//
//	res, err := AuditLogCreated.Append(ctx, tx, orgID, AuditLog{ID: id, Action: "login"})
//
// Its appends go through Append and AppendBatch: the same validation, the
// same single round trip or COPY. The zero Event is not usable.
type Event[T any] struct {
	name EventType
}

// DefineEvent defines the event type name with payloads of type T in
// DefaultCatalog, generating T's JSON Schema (see SchemaFor). It panics,
// with an error wrapping ErrInvalidEventDefinition, when Svix would refuse
// the name or info.Group, info.Description is empty, T does not marshal
// to a JSON object, or name is already defined: a bad catalog fails when
// the program starts, not at its first append.
func DefineEvent[T any](name EventType, info EventInfo) Event[T] {
	return defineEvent[T](DefaultCatalog, name, info)
}

// DefineEventIn is DefineEvent in catalog c.
func DefineEventIn[T any](c *Catalog, name EventType, info EventInfo) Event[T] {
	return defineEvent[T](c, name, info)
}

func defineEvent[T any](c *Catalog, name EventType, info EventInfo) Event[T] {
	where := caller(3)
	schema, err := schemaOf(reflect.TypeFor[T]())
	if err != nil {
		panic(fmt.Errorf("outbox: event %q: %w: %w", name, err, ErrInvalidEventDefinition))
	}
	spec := EventSpec{Name: name, Description: info.Description, Group: info.Group,
		SchemaVersion: info.SchemaVersion, Deprecated: info.Deprecated, Schema: schema}
	if err := c.add(spec, where); err != nil {
		panic(err)
	}
	return Event[T]{name: name}
}

// caller is "file:line" of the function skip frames up.
func caller(skip int) string {
	_, file, line, ok := runtime.Caller(skip)
	if !ok {
		return ""
	}
	return file + ":" + strconv.Itoa(line)
}

// Name returns the event type.
func (e Event[T]) Name() EventType { return e.name }

// Params returns the AppendParams of one event: to set Channels, Tags or
// EventID before appending, to mix event types in one AppendBatch, or to
// append with a Producer of your own (p.Append(ctx, tx, e.Params(org, v))).
func (e Event[T]) Params(organizationID string, payload T) AppendParams {
	return AppendParams{OrganizationID: organizationID, EventType: e.name, Payload: payload}
}

// Append appends one event (see the package-level Append).
func (e Event[T]) Append(ctx context.Context, dbtx DBTX, organizationID string, payload T) (AppendResult, error) {
	return Append(ctx, dbtx, e.Params(organizationID, payload))
}

// AppendBatch appends one event per payload, all of one organization, with
// one COPY (see the package-level AppendBatch).
func (e Event[T]) AppendBatch(ctx context.Context, dbtx CopyDBTX, organizationID string, payloads []T) (AppendBatchResult, error) {
	ps := make([]AppendParams, len(payloads))
	for i := range payloads {
		ps[i] = e.Params(organizationID, payloads[i])
	}
	return AppendBatch(ctx, dbtx, ps)
}
