// Package outbox is the producer side of a transactional outbox for services
// that send webhooks through Svix.
//
// A handler writes its business rows and the events that describe them in
// one PostgreSQL transaction with [Append] (or [AppendBatch] for many
// events, through COPY), so an event exists if and only if the work
// committed. After the commit it wakes the relay for the organization with a
// [Signaler]; [WithTx] does both safely by construction. The relay (package
// relay) then creates every committed event in Svix once, in order per
// organization.
//
//	err := outbox.WithTx(ctx, pool, signaler, func(tx *outbox.Tx) error {
//		if _, err := tx.Exec(ctx, "INSERT INTO audit_logs ..."); err != nil {
//			return err
//		}
//		_, err := outbox.Append(ctx, tx, outbox.AppendParams{
//			OrganizationID: orgID,
//			EventType:      outbox.EventTypeAuditLogCreated,
//			Payload:        map[string]any{"id": logID},
//		})
//		return err
//	})
//
// Called with an explicit transaction instead, Append and AppendBatch must
// run inside it, and the signal must be sent after the commit: a signal sent
// earlier can wake the relay before the rows are visible, and a signal for a
// transaction that rolls back wakes it for nothing. (The relay's periodic
// sweep finds unsignalled events anyway; the signal only makes delivery
// immediate.)
//
// An event definition ([DefineEvent]) binds an event type to its payload's
// Go type and adds it to [DefaultCatalog]:
//
//	var AuditLogCreated = outbox.DefineEvent[AuditLog]("audit_log.created", outbox.EventTypeInfo{
//		Description: "An audit log entry was written.",
//	})
//	res, err := AuditLogCreated.Append(ctx, tx, orgID, AuditLog{ID: id, Action: "login"})
//
// Package eventtypes generates the payload types' JSON Schemas, syncs the
// catalog to Svix and can check payloads against it
// ([Config.PayloadValidator]); this package links no JSON Schema code,
// only pgx, google/uuid and the OpenTelemetry API.
//
// Bad input is rejected before it is written (before any SQL runs, but for
// a large AppendBatch in a transaction: validated while COPY streams it,
// inside a savepoint a bad element rolls back), with an error that names the
// field and the rule and wraps one of the sentinels [ErrInvalidOrganizationID],
// [ErrInvalidEventType], [ErrInvalidPayload], [ErrPayloadTooLarge],
// [ErrInvalidChannels] or [ErrInvalidTags].
//
// The tables come from package migrations. The package-level functions use
// unqualified table names, resolved through the connection's search_path;
// a [Producer] made with [Config.Schema] names its schema explicitly.
package outbox

import (
	"context"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// DBTX is what Append needs from a database handle: pgx.Tx, *pgx.Conn and
// *pgxpool.Pool satisfy it. Pass the caller's transaction so the event
// commits or rolls back with the business rows.
type DBTX interface {
	Exec(context.Context, string, ...any) (pgconn.CommandTag, error)
	Query(context.Context, string, ...any) (pgx.Rows, error)
	QueryRow(context.Context, string, ...any) pgx.Row
}

// CopyDBTX is a DBTX that can also run COPY, which AppendBatch uses. pgx.Tx,
// *pgx.Conn and *pgxpool.Pool satisfy it.
type CopyDBTX interface {
	DBTX
	CopyFrom(ctx context.Context, tableName pgx.Identifier, columnNames []string, rowSrc pgx.CopyFromSource) (int64, error)
}
