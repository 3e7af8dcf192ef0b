// Package eventtypes publishes an outbox event catalog: Sync creates or
// updates its event types in Svix (description, group, JSON Schemas), so
// the customers reading the Svix App Portal see what each webhook holds;
// OpenAPI and WriteSchemas export it for customers who build on it.
//
//	var AuditLogCreated = outbox.DefineEvent[AuditLog]("audit_log.created", outbox.EventInfo{
//		Description: "An audit log entry was written.",
//		Group:       "audit_log",
//	})
//
//	report, err := eventtypes.Sync(ctx, svixClient, outbox.DefaultCatalog, eventtypes.SyncOptions{})
//	// report.Created: [audit_log.created]; run again: report.Unchanged
//
// `outbox event-types sync` and `outbox event-types export` do the same
// from a catalog file (json.Marshal(outbox.DefaultCatalog)).
package eventtypes
