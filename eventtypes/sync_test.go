package eventtypes_test

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	svix "github.com/svix/svix-webhooks/go"
	"github.com/svix/svix-webhooks/go/models"
	"github.com/svix/svix-webhooks/go/utils"

	"github.com/outboxrelay/outbox"
	"github.com/outboxrelay/outbox/eventtypes"
	"github.com/outboxrelay/outbox/outboxtest/svixtest"
)

type invoice struct {
	ID     string    `json:"id"`
	Amount int       `json:"amount"`
	PaidAt time.Time `json:"paidAt"`
}

type auditLog struct {
	ID     string `json:"id"`
	Action string `json:"action"`
}

type bundle struct {
	ctx    context.Context
	fake   *svixtest.Server
	client *svix.Svix
}

func setup(t *testing.T) *bundle {
	t.Helper()
	fake := svixtest.NewT(t, svixtest.Options{})
	return &bundle{ctx: context.Background(), fake: fake, client: fake.Client(t)}
}

func catalog(t *testing.T) *outbox.Catalog {
	t.Helper()
	c := outbox.NewCatalog()
	outbox.DefineEventIn[invoice](c, "invoice.paid", outbox.EventTypeInfo{Description: "An invoice was paid.", Group: "invoice"})
	outbox.DefineEventIn[auditLog](c, "audit_log.created", outbox.EventTypeInfo{Description: "An audit log entry was written.", Group: "audit_log"})
	return c
}

// The first sync creates, the second finds nothing to do, a changed type
// is updated, and what Svix holds is what the catalog says.
func TestSyncIsIdempotent(t *testing.T) {
	t.Parallel()
	b := setup(t)
	c := catalog(t)

	report, err := eventtypes.Sync(b.ctx, b.client, c, eventtypes.SyncOptions{})
	require.NoError(t, err)
	require.Equal(t, []string{"audit_log.created", "invoice.paid"}, report.Created)
	require.Empty(t, report.Updated)
	require.Empty(t, report.Unchanged)

	got, err := b.client.EventType.Get(b.ctx, "invoice.paid")
	require.NoError(t, err)
	require.Equal(t, "An invoice was paid.", got.Description)
	require.Equal(t, "invoice", *got.GroupName)
	spec, _ := c.Lookup("invoice.paid")
	raw, err := eventtypes.SchemaOf(spec)
	require.NoError(t, err)
	var want map[string]any
	require.NoError(t, json.Unmarshal(raw, &want))
	require.NotNil(t, got.Schemas)
	require.Equal(t, want, (*got.Schemas)["1"], "the schema under version 1")

	report, err = eventtypes.Sync(b.ctx, b.client, c, eventtypes.SyncOptions{})
	require.NoError(t, err)
	require.Equal(t, []string{"audit_log.created", "invoice.paid"}, report.Unchanged, "a second run changes nothing")
	require.Empty(t, report.Created)
	require.Empty(t, report.Updated)

	changed := outbox.NewCatalog()
	outbox.DefineEventIn[invoice](changed, "invoice.paid", outbox.EventTypeInfo{Description: "An invoice was paid in full.", Group: "invoice"})
	outbox.DefineEventIn[invoice](changed, "audit_log.created", outbox.EventTypeInfo{Description: "An audit log entry was written.", Group: "audit_log", SchemaVersion: "2"})
	report, err = eventtypes.Sync(b.ctx, b.client, changed, eventtypes.SyncOptions{})
	require.NoError(t, err)
	require.Equal(t, []string{"audit_log.created", "invoice.paid"}, report.Updated)
	got, err = b.client.EventType.Get(b.ctx, "invoice.paid")
	require.NoError(t, err)
	require.Equal(t, "An invoice was paid in full.", got.Description)
	audit, err := b.client.EventType.Get(b.ctx, "audit_log.created")
	require.NoError(t, err)
	require.Contains(t, *audit.Schemas, "1", "a new schema version keeps the old one")
	require.Contains(t, *audit.Schemas, "2")
}

// An update keeps the feature flags an operator set in Svix: the catalog
// does not own them, and a PUT replaces every field.
func TestSyncKeepsFeatureFlags(t *testing.T) {
	t.Parallel()
	b := setup(t)
	_, err := eventtypes.Sync(b.ctx, b.client, catalog(t), eventtypes.SyncOptions{})
	require.NoError(t, err)
	_, err = b.client.EventType.Patch(b.ctx, "invoice.paid", models.EventTypePatch{FeatureFlags: utils.NewNullable([]string{"beta-billing"})})
	require.NoError(t, err)
	changed := outbox.NewCatalog()
	outbox.DefineEventIn[invoice](changed, "invoice.paid", outbox.EventTypeInfo{Description: "An invoice was paid in full.", Group: "invoice"})
	report, err := eventtypes.Sync(b.ctx, b.client, changed, eventtypes.SyncOptions{})
	require.NoError(t, err)
	require.Equal(t, []string{"invoice.paid"}, report.Updated)
	et, ok := b.fake.EventType("invoice.paid")
	require.True(t, ok)
	require.Equal(t, "An invoice was paid in full.", et.Description)
	require.Equal(t, []string{"beta-billing"}, et.FeatureFlags)
}

// A dry run reports and changes nothing; types outside the catalog are
// left alone, or archived with ArchiveMissing (never deleted), and an
// archived type that comes back is unarchived.
func TestSyncDryRunAndArchiveMissing(t *testing.T) {
	t.Parallel()
	b := setup(t)
	_, err := b.client.EventType.Create(b.ctx, models.EventTypeIn{Name: "legacy.thing", Description: "Old."}, nil)
	require.NoError(t, err)
	c := catalog(t)

	report, err := eventtypes.Sync(b.ctx, b.client, c, eventtypes.SyncOptions{DryRun: true, ArchiveMissing: true})
	require.NoError(t, err)
	require.Equal(t, []string{"audit_log.created", "invoice.paid"}, report.Created)
	require.Equal(t, []string{"legacy.thing"}, report.Archived)
	require.Equal(t, []string{"legacy.thing"}, b.fake.EventTypes(), "a dry run changes nothing")

	report, err = eventtypes.Sync(b.ctx, b.client, c, eventtypes.SyncOptions{})
	require.NoError(t, err)
	require.Empty(t, report.Archived, "without ArchiveMissing, other types are left alone")
	legacy, ok := b.fake.EventType("legacy.thing")
	require.True(t, ok)
	require.False(t, legacy.Archived)

	report, err = eventtypes.Sync(b.ctx, b.client, c, eventtypes.SyncOptions{ArchiveMissing: true})
	require.NoError(t, err)
	require.Equal(t, []string{"legacy.thing"}, report.Archived)
	legacy, ok = b.fake.EventType("legacy.thing")
	require.True(t, ok, "archived, not deleted")
	require.True(t, legacy.Archived)

	report, err = eventtypes.Sync(b.ctx, b.client, c, eventtypes.SyncOptions{ArchiveMissing: true})
	require.NoError(t, err)
	require.Empty(t, report.Archived, "already archived")

	back := catalog(t)
	outbox.DefineEventIn[auditLog](back, "legacy.thing", outbox.EventTypeInfo{Description: "Back."})
	report, err = eventtypes.Sync(b.ctx, b.client, back, eventtypes.SyncOptions{})
	require.NoError(t, err)
	require.Equal(t, []string{"legacy.thing"}, report.Updated)
	legacy, _ = b.fake.EventType("legacy.thing")
	require.False(t, legacy.Archived, "unarchived")
	require.Equal(t, "Back.", legacy.Description)
}

// Sync pages through more event types than one List call returns.
func TestSyncPagesThroughSvix(t *testing.T) {
	t.Parallel()
	b := setup(t)
	c := outbox.NewCatalog()
	for i := range 300 {
		name := outbox.EventType("type.n" + string(rune('a'+i/26/26%26)) + string(rune('a'+i/26%26)) + string(rune('a'+i%26)))
		outbox.DefineEventIn[auditLog](c, name, outbox.EventTypeInfo{Description: "d"})
	}
	report, err := eventtypes.Sync(b.ctx, b.client, c, eventtypes.SyncOptions{})
	require.NoError(t, err)
	require.Len(t, report.Created, 300)
	report, err = eventtypes.Sync(b.ctx, b.client, c, eventtypes.SyncOptions{ArchiveMissing: true})
	require.NoError(t, err)
	require.Len(t, report.Unchanged, 300, "all 300 found again, over two pages")
	require.Empty(t, report.Archived)
}
