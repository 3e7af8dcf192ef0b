// Package eventtypes publishes an outbox event catalog and checks payloads
// against it; it holds everything about JSON Schemas, so that package
// outbox, which services link to append events, links none of it.
//
// SchemaFor and SchemaOf generate the JSON Schema of a payload type (with
// github.com/invopop/jsonschema); Sync creates or updates a catalog's event
// types in Svix (description, group, JSON Schemas), so the customers
// reading the Svix App Portal see what each webhook holds; OpenAPI and
// WriteSchemas export it for customers who build on it; MarshalCatalog and
// UnmarshalCatalog write and read the catalog file `outbox event-types`
// works from; a Validator (NewValidator) is the outbox.PayloadValidator
// that refuses payloads their schema does not allow.
//
//	var AuditLogCreated = outbox.DefineEvent[AuditLog]("audit_log.created", outbox.EventTypeInfo{
//		Description: "An audit log entry was written.",
//		Group:       "audit_log",
//	})
//
//	report, err := eventtypes.Sync(ctx, svixClient, outbox.DefaultCatalog, eventtypes.SyncOptions{})
//	// report.Created: [audit_log.created]; run again: report.Unchanged
//
// `outbox event-types sync` and `outbox event-types export` do the same
// from a catalog file (eventtypes.MarshalCatalog(outbox.DefaultCatalog)).
package eventtypes
