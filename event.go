package outbox

import (
	"context"
	"reflect"
	"runtime"
	"strconv"
)

// EventDefinition is a typed event definition: an event type bound to the
// Go type of its payloads. Make one with DefineEvent, as a package-level
// variable:
//
//	var AuditLogCreated = outbox.DefineEvent[AuditLog]("audit_log.created", outbox.EventTypeInfo{
//		Description: "An audit log entry was written.",
//		Group:       "audit_log",
//	})
//
//	res, err := AuditLogCreated.Append(ctx, tx, orgID, AuditLog{ID: id, Action: "login"})
//
// Its appends go through Append and AppendBatch: the same validation, the
// same single round trip or COPY. The zero EventDefinition is not usable.
type EventDefinition[T any] struct {
	name EventType
}

// DefineEvent defines the event type name with payloads of type T in
// DefaultCatalog, which records T (EventTypeSpec.PayloadType); package
// eventtypes generates T's JSON Schema from it when it needs one. It
// panics, with an error wrapping ErrInvalidEventDefinition, when Svix
// would refuse the name or info.Group, info.Description is empty, T
// cannot marshal to a JSON object (T, through pointers, must be a struct
// or a map with string or integer keys, or say its own shape with a
// MarshalJSON or JSONSchema method, which the generator judges), or name
// is already defined: a bad catalog fails when the program starts, not at
// its first append.
func DefineEvent[T any](name EventType, info EventTypeInfo) EventDefinition[T] {
	return defineEvent[T](DefaultCatalog, name, info)
}

// DefineEventIn is DefineEvent in catalog c.
func DefineEventIn[T any](c *Catalog, name EventType, info EventTypeInfo) EventDefinition[T] {
	return defineEvent[T](c, name, info)
}

func defineEvent[T any](c *Catalog, name EventType, info EventTypeInfo) EventDefinition[T] {
	spec := EventTypeSpec{Name: name, EventTypeInfo: info, PayloadType: reflect.TypeFor[T]()}
	if err := c.add(spec, caller(3)); err != nil {
		panic(err)
	}
	return EventDefinition[T]{name: name}
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
func (e EventDefinition[T]) Name() EventType { return e.name }

// Params returns the AppendParams of one event: to set Channels, Tags or
// EventID before appending, to mix event types in one AppendBatch, or to
// append with a Producer of your own (p.Append(ctx, tx, e.Params(org, v))).
func (e EventDefinition[T]) Params(organizationID string, payload T) AppendParams {
	return AppendParams{OrganizationID: organizationID, EventType: e.name, Payload: payload}
}

// Append appends one event (see the package-level Append).
func (e EventDefinition[T]) Append(ctx context.Context, dbtx DBTX, organizationID string, payload T) (AppendResult, error) {
	return Append(ctx, dbtx, e.Params(organizationID, payload))
}

// AppendBatch appends one event per payload, all of one organization, with
// one COPY (see the package-level AppendBatch).
func (e EventDefinition[T]) AppendBatch(ctx context.Context, dbtx CopyDBTX, organizationID string, payloads []T) (AppendBatchResult, error) {
	ps := make([]AppendParams, len(payloads))
	for i := range payloads {
		ps[i] = e.Params(organizationID, payloads[i])
	}
	return AppendBatch(ctx, dbtx, ps)
}
