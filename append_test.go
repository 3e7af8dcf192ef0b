package outbox_test

import (
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/outboxrelay/outbox"
)

func TestAppendVisibleOnlyAfterCommit(t *testing.T) {
	t.Parallel()
	b := setup(t)

	tx, err := b.pool.Begin(b.ctx)
	require.NoError(t, err)
	defer tx.Rollback(b.ctx)
	res, err := outbox.Append(b.ctx, tx, params("org-1", map[string]any{"n": 1}))
	require.NoError(t, err)
	require.Positive(t, res.ID)
	require.Equal(t, "org-1", res.OrganizationID)
	require.Equal(t, 7, int(res.EventID.Version()), "event ids are UUIDv7")

	require.Equal(t, 0, b.countEvents(t, ""), "uncommitted row seen by another connection")
	require.NoError(t, tx.Commit(b.ctx))
	require.Equal(t, 1, b.countEvents(t, ""))

	var (
		eventID   string
		org, typ  string
		payload   map[string]any
		attempts  int
		createdAt time.Time
	)
	err = b.pool.QueryRow(b.ctx, "SELECT event_id::text, organization_id, event_type, payload, attempts, created_at FROM outbox_events WHERE id = $1", res.ID).
		Scan(&eventID, &org, &typ, &payload, &attempts, &createdAt)
	require.NoError(t, err)
	require.Equal(t, res.EventID.String(), eventID)
	require.Equal(t, "org-1", org)
	require.Equal(t, "audit_log.created", typ)
	require.Equal(t, map[string]any{"n": float64(1)}, payload)
	require.Zero(t, attempts)
	require.WithinDuration(t, time.Now(), createdAt, time.Minute)
}

func TestAppendRollbackLeavesNothing(t *testing.T) {
	t.Parallel()
	b := setup(t)

	tx, err := b.pool.Begin(b.ctx)
	require.NoError(t, err)
	_, err = outbox.Append(b.ctx, tx, params("org-1", map[string]any{"n": 1}))
	require.NoError(t, err)
	_, err = outbox.AppendBatch(b.ctx, tx, []outbox.AppendParams{params("org-2", map[string]any{}), params("org-3", map[string]any{})})
	require.NoError(t, err)
	require.NoError(t, tx.Rollback(b.ctx))

	require.Equal(t, 0, b.countEvents(t, ""))
}

func TestAppendConcurrent(t *testing.T) {
	t.Parallel()
	b := setup(t)

	const goroutines, each = 8, 25
	var wg sync.WaitGroup
	errs := make(chan error, goroutines*each)
	for g := range goroutines {
		wg.Add(1)
		go func() {
			defer wg.Done()
			org := fmt.Sprintf("org-%d", g)
			for i := range each {
				err := pgx.BeginFunc(b.ctx, b.pool, func(tx pgx.Tx) error {
					_, err := outbox.Append(b.ctx, tx, params(org, map[string]any{"i": i}))
					return err
				})
				errs <- err
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}
	require.Equal(t, goroutines*each, b.countEvents(t, ""))
	for g := range goroutines {
		require.Equal(t, each, b.countEvents(t, fmt.Sprintf("org-%d", g)))
	}
	var distinct int
	require.NoError(t, b.pool.QueryRow(b.ctx, "SELECT count(DISTINCT event_id) FROM outbox_events").Scan(&distinct))
	require.Equal(t, goroutines*each, distinct, "event ids must be unique")
}

func TestAppendRejectsBadInput(t *testing.T) {
	t.Parallel()
	b := setup(t)

	tests := []struct {
		name     string
		p        outbox.AppendParams
		sentinel error
		field    string
	}{
		{"empty organization", params("", map[string]any{}), outbox.ErrInvalidOrganizationID, "OrganizationID"},
		{"organization with space", params("org 1", map[string]any{}), outbox.ErrInvalidOrganizationID, "OrganizationID"},
		{"organization with colon", params("org:1", map[string]any{}), outbox.ErrInvalidOrganizationID, "OrganizationID"},
		{"organization app_ prefix", params("app_123", map[string]any{}), outbox.ErrInvalidOrganizationID, "OrganizationID"},
		{"organization dot", params(".", map[string]any{}), outbox.ErrInvalidOrganizationID, "OrganizationID"},
		{"organization dot dot", params("..", map[string]any{}), outbox.ErrInvalidOrganizationID, "OrganizationID"},
		{"organization too long", params(strings.Repeat("a", 257), map[string]any{}), outbox.ErrInvalidOrganizationID, "OrganizationID"},
		{"organization non-ASCII", params("orgé", map[string]any{}), outbox.ErrInvalidOrganizationID, "OrganizationID"},
		{"empty event type", outbox.AppendParams{OrganizationID: "o", Payload: map[string]any{}}, outbox.ErrInvalidEventType, "EventType"},
		{"event type with colon", outbox.AppendParams{OrganizationID: "o", EventType: "audit_log:created", Payload: map[string]any{}}, outbox.ErrInvalidEventType, "EventType"},
		{"event type too long", outbox.AppendParams{OrganizationID: "o", EventType: outbox.EventType(strings.Repeat("e", 257)), Payload: map[string]any{}}, outbox.ErrInvalidEventType, "EventType"},
		{"nil payload", params("o", nil), outbox.ErrInvalidPayload, "Payload"},
		{"nil map payload", params("o", map[string]any(nil)), outbox.ErrInvalidPayload, "Payload"},
		{"array payload", params("o", []int{1}), outbox.ErrInvalidPayload, "Payload"},
		{"string payload", params("o", `{"a":1}`), outbox.ErrInvalidPayload, "Payload"},
		{"number payload", params("o", 42), outbox.ErrInvalidPayload, "Payload"},
		{"bool payload", params("o", true), outbox.ErrInvalidPayload, "Payload"},
		{"unmarshalable payload", params("o", unmarshalable{C: make(chan int)}), outbox.ErrInvalidPayload, "Payload"},
		{"invalid raw JSON", params("o", json.RawMessage(`{"a":`)), outbox.ErrInvalidPayload, "Payload"},
		{"raw JSON array", params("o", json.RawMessage(`[1,2]`)), outbox.ErrInvalidPayload, "Payload"},
		{"raw null", params("o", json.RawMessage(`null`)), outbox.ErrInvalidPayload, "Payload"},
		{"raw empty", params("o", []byte{}), outbox.ErrInvalidPayload, "Payload"},
		{"raw trailing garbage", params("o", []byte(`{"a":1} x`)), outbox.ErrInvalidPayload, "Payload"},
		{"raw invalid UTF-8", params("o", []byte("{\"a\":\"\xff\"}")), outbox.ErrInvalidPayload, "Payload"},
		{"NUL escape jsonb rejects", params("o", map[string]any{"a": "x\x00y"}), outbox.ErrInvalidPayload, "Payload"},
		{"too large", params("o", map[string]any{"a": strings.Repeat("x", outbox.DefaultMaxPayloadBytes)}), outbox.ErrPayloadTooLarge, "Payload"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tx, err := b.pool.Begin(b.ctx)
			require.NoError(t, err)
			defer tx.Rollback(b.ctx)

			_, err = outbox.Append(b.ctx, tx, tt.p)
			require.ErrorIs(t, err, tt.sentinel)
			var verr *outbox.ValidationError
			require.ErrorAs(t, err, &verr)
			require.Equal(t, tt.field, verr.Field)
			require.Equal(t, -1, verr.Index)
			require.Contains(t, err.Error(), tt.field)

			batch := []outbox.AppendParams{params("ok", map[string]any{}), params("ok", map[string]any{}), tt.p}
			_, err = outbox.AppendBatch(b.ctx, tx, batch)
			require.ErrorIs(t, err, tt.sentinel)
			require.ErrorAs(t, err, &verr)
			require.Equal(t, 2, verr.Index)
			require.Contains(t, err.Error(), "batch element 2")

			// The transaction is still usable and nothing was written, even
			// though the caller commits.
			require.NoError(t, tx.Commit(b.ctx))
			require.Equal(t, 0, b.countEvents(t, ""))
		})
	}
}

func TestAppendPayloadForms(t *testing.T) {
	t.Parallel()
	b := setup(t)

	type audit struct {
		ID    int64  `json:"id"`
		Actor string `json:"actor"`
	}
	tests := []struct {
		name    string
		payload any
		want    string
	}{
		{"struct", audit{ID: 9007199254740993, Actor: "ana"}, `{"id": 9007199254740993, "actor": "ana"}`},
		{"map", map[string]any{"k": []int{1, 2}}, `{"k": [1, 2]}`},
		{"raw message", json.RawMessage(` {"a": {"b": null}} `), `{"a": {"b": null}}`},
		{"bytes", []byte(`{"escaped":"\\u0000 is text here"}`), `{"escaped": "\\u0000 is text here"}`},
		{"unicode", map[string]string{"s": "héllo ✓"}, `{"s": "héllo ✓"}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res, err := outbox.Append(b.ctx, b.pool, params("org-p", tt.payload))
			require.NoError(t, err)
			var got string
			require.NoError(t, b.pool.QueryRow(b.ctx, "SELECT payload::text FROM outbox_events WHERE id = $1", res.ID).Scan(&got))
			require.Equal(t, tt.want, got)
		})
	}
}

// PgBouncer in transaction pooling mode needs a query mode without
// server-side prepared statements; Append and AppendBatch work in each.
func TestAppendInEveryQueryExecMode(t *testing.T) {
	t.Parallel()
	b := setup(t)
	for _, mode := range []string{"cache_statement", "cache_describe", "describe_exec", "exec", "simple_protocol"} {
		t.Run(mode, func(t *testing.T) {
			pool, err := pgxpool.New(b.ctx, b.db.URL+"&default_query_exec_mode="+mode)
			require.NoError(t, err)
			defer pool.Close()
			org := "org_" + mode
			_, err = outbox.Append(b.ctx, pool, params(org, map[string]any{"mode": mode, "n": 1}))
			require.NoError(t, err)
			_, err = outbox.AppendBatch(b.ctx, pool, []outbox.AppendParams{params(org, map[string]any{"n": 2})})
			require.NoError(t, err)
			var n int
			require.NoError(t, b.pool.QueryRow(b.ctx, "SELECT count(*) FROM outbox_events WHERE organization_id = $1 AND payload ? 'n'", org).Scan(&n))
			require.Equal(t, 2, n)
		})
	}
}

// A caller's own event id is stored and returned; appending it again while
// it is pending fails with ErrDuplicateEventID and writes nothing.
func TestAppendWithOwnEventID(t *testing.T) {
	t.Parallel()
	b := setup(t)
	id := uuid.New()
	p := outbox.AppendParams{OrganizationID: "org-e", EventType: "x.y", Payload: map[string]any{}, EventID: id}
	res, err := outbox.Append(b.ctx, b.pool, p)
	require.NoError(t, err)
	require.Equal(t, id, res.EventID)
	_, err = outbox.Append(b.ctx, b.pool, p)
	require.ErrorIs(t, err, outbox.ErrDuplicateEventID)
	require.Equal(t, 1, b.countEvents(t, "org-e"))

	_, err = outbox.AppendBatch(b.ctx, b.pool, []outbox.AppendParams{params("org-e", map[string]any{}), p})
	require.ErrorIs(t, err, outbox.ErrDuplicateEventID, "COPY meets the pending id")
	require.Equal(t, 1, b.countEvents(t, "org-e"), "nothing of the batch written")

	other := uuid.New()
	p2 := p
	p2.EventID = other
	_, err = outbox.AppendBatch(b.ctx, b.pool, []outbox.AppendParams{p2, params("org-e", map[string]any{}), p2})
	var verr *outbox.ValidationError
	require.ErrorAs(t, err, &verr)
	require.ErrorIs(t, err, outbox.ErrDuplicateEventID)
	require.Equal(t, 2, verr.Index)
	require.Equal(t, "EventID", verr.Field)
	require.Contains(t, err.Error(), "element 0's")
	require.Equal(t, 1, b.countEvents(t, "org-e"))
}
