package outboxtest_test

import (
	"context"
	"encoding/json"
	"fmt"
	"runtime"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/outboxrelay/outbox"
	"github.com/outboxrelay/outbox/internal/pgtest"
	"github.com/outboxrelay/outbox/outboxtest"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// mockT records failures instead of failing the real test.
type mockT struct {
	testing.TB
	failed bool
	msg    string
}

func (m *mockT) Helper() {}
func (m *mockT) Fatalf(format string, args ...any) {
	m.failed = true
	m.msg = fmt.Sprintf(format, args...)
	runtime.Goexit()
}

// run calls f with a mockT on its own goroutine (Fatalf ends it).
func run(t *testing.T, f func(tb testing.TB)) *mockT {
	m := &mockT{TB: t}
	done := make(chan struct{})
	go func() { defer close(done); f(m) }()
	<-done
	return m
}

type bundle struct {
	ctx context.Context
	tx  pgx.Tx
}

// setup opens a transaction holding three appended events, uncommitted.
func setup(t *testing.T) *bundle {
	t.Helper()
	db := pgtest.New(t)
	ctx := context.Background()
	tx, err := db.Pool.Begin(ctx)
	require.NoError(t, err)
	t.Cleanup(func() { _ = tx.Rollback(context.Background()) })
	for _, p := range []outbox.AppendParams{
		{OrganizationID: "org_1", EventType: outbox.EventTypeAuditLogCreated, Payload: map[string]any{"action": "login", "actor": map[string]any{"id": 7}}},
		{OrganizationID: "org_1", EventType: "invoice.paid", Payload: map[string]any{"amount": 42}},
		{OrganizationID: "org_2", EventType: outbox.EventTypeAuditLogCreated, Payload: map[string]any{"action": "logout"}},
	} {
		_, err := outbox.Append(ctx, tx, p)
		require.NoError(t, err)
	}
	return &bundle{ctx: ctx, tx: tx}
}

func TestRequireAppended(t *testing.T) {
	t.Parallel()
	b := setup(t)

	ev := outboxtest.RequireAppended(t, b.tx, outboxtest.Match{OrganizationID: "org_1", EventType: outbox.EventTypeAuditLogCreated,
		Payload: map[string]any{"actor": map[string]any{"id": 7}}})
	require.Equal(t, "org_1", ev.OrganizationID)
	require.JSONEq(t, `{"action": "login", "actor": {"id": 7}}`, string(ev.Payload))

	ev = outboxtest.RequireAppended(t, b.tx, outboxtest.Match{Payload: json.RawMessage(`{"amount": 42}`)})
	require.Equal(t, outbox.EventType("invoice.paid"), ev.EventType)

	m := run(t, func(tb testing.TB) {
		outboxtest.RequireAppended(tb, b.tx, outboxtest.Match{OrganizationID: "org_1", Payload: map[string]any{"action": "logout"}})
	})
	require.True(t, m.failed)
	require.Contains(t, m.msg, `no appended event matches {org=org_1 payload⊇{"action":"logout"}}`)
	require.Contains(t, m.msg, "org=org_2 type=audit_log.created", "the message lists what was appended")
}

func TestRequireNotAppended(t *testing.T) {
	t.Parallel()
	b := setup(t)

	outboxtest.RequireNotAppended(t, b.tx, outboxtest.Match{OrganizationID: "org_3"})
	outboxtest.RequireNotAppended(t, b.tx, outboxtest.Match{EventType: "invoice.paid", OrganizationID: "org_2"})

	m := run(t, func(tb testing.TB) {
		outboxtest.RequireNotAppended(tb, b.tx, outboxtest.Match{EventType: outbox.EventTypeAuditLogCreated})
	})
	require.True(t, m.failed)
	require.Contains(t, m.msg, "2 appended event(s) match {type=audit_log.created}, want none")
	require.Contains(t, m.msg, `payload={"action": "logout"}`)
}

func TestRequireManyAppended(t *testing.T) {
	t.Parallel()
	b := setup(t)

	got := outboxtest.RequireManyAppended(t, b.tx, []outboxtest.Match{
		{OrganizationID: "org_1", EventType: outbox.EventTypeAuditLogCreated},
		{EventType: "invoice.paid"},
		{OrganizationID: "org_2"},
	})
	require.Len(t, got, 3)

	tests := []struct {
		name string
		want []outboxtest.Match
		msg  string
	}{
		{"too few", []outboxtest.Match{{}, {}}, "3 events appended, want 2"},
		{"wrong order", []outboxtest.Match{{EventType: "invoice.paid"}, {}, {}}, "appended event 0 does not match {type=invoice.paid}"},
	}
	for _, tt := range tests {
		m := run(t, func(tb testing.TB) { outboxtest.RequireManyAppended(tb, b.tx, tt.want) })
		require.True(t, m.failed, tt.name)
		require.Contains(t, m.msg, tt.msg, tt.name)
		require.Contains(t, m.msg, "org=org_1 type=invoice.paid", tt.name)
	}
}

func TestAppendedSeesOnlyTheTransaction(t *testing.T) {
	t.Parallel()
	db := pgtest.New(t)
	ctx := context.Background()
	tx, err := db.Pool.Begin(ctx)
	require.NoError(t, err)
	defer tx.Rollback(ctx)
	_, err = outbox.Append(ctx, tx, outbox.AppendParams{OrganizationID: "org_x", EventType: "a.b", Payload: map[string]any{}})
	require.NoError(t, err)

	inside, err := outboxtest.Appended(ctx, tx, outboxtest.Match{})
	require.NoError(t, err)
	require.Len(t, inside, 1)
	checker, err := outboxtest.New(outboxtest.Config{Schema: db.Schema})
	require.NoError(t, err)
	outside, err := checker.Appended(ctx, db.Pool, outboxtest.Match{})
	require.NoError(t, err)
	require.Empty(t, outside, "uncommitted events are invisible outside the transaction")

	_, err = outboxtest.Appended(ctx, tx, outboxtest.Match{Payload: make(chan int)})
	require.ErrorContains(t, err, "Match.Payload")
}
