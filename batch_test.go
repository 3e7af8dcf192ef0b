package outbox_test

import (
	"fmt"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/outboxrelay/outbox"
)

func TestAppendBatch(t *testing.T) {
	t.Parallel()
	b := setup(t)

	var ps []outbox.AppendParams
	for i := range 250 {
		ps = append(ps, params(fmt.Sprintf("org-%d", i%3), map[string]any{"i": i}))
	}
	tx, err := b.pool.Begin(b.ctx)
	require.NoError(t, err)
	res, err := outbox.AppendBatch(b.ctx, tx, ps)
	require.NoError(t, err)
	require.EqualValues(t, 250, res.Count)
	require.Len(t, res.EventIDs, 250)
	require.Equal(t, 0, b.countEvents(t, ""))
	require.NoError(t, tx.Commit(b.ctx))

	require.Equal(t, 84, b.countEvents(t, "org-0"))
	require.Equal(t, 83, b.countEvents(t, "org-1"))
	require.Equal(t, 83, b.countEvents(t, "org-2"))

	// Rows are stored in input order with the returned event ids.
	rows, err := b.pool.Query(b.ctx, "SELECT event_id::text, (payload->>'i')::int FROM outbox_events ORDER BY id")
	require.NoError(t, err)
	i := 0
	var (
		id string
		n  int
	)
	_, err = pgx.ForEachRow(rows, []any{&id, &n}, func() error {
		require.Equal(t, res.EventIDs[i].String(), id)
		require.Equal(t, i, n)
		i++
		return nil
	})
	require.NoError(t, err)
	require.Equal(t, 250, i)

	empty, err := outbox.AppendBatch(b.ctx, b.pool, nil)
	require.NoError(t, err)
	require.Zero(t, empty.Count)
}

func TestAppendBatchLargeReportsLowestBadIndex(t *testing.T) {
	t.Parallel()
	b := setup(t)

	ps := make([]outbox.AppendParams, 6000) // validated in parallel chunks
	for i := range ps {
		ps[i] = params("org", map[string]any{"i": i})
	}
	ps[4500] = params("org", []int{1})
	ps[3100] = params("bad org", map[string]any{})
	_, err := outbox.AppendBatch(b.ctx, b.pool, ps)
	var verr *outbox.ValidationError
	require.ErrorAs(t, err, &verr)
	require.Equal(t, 3100, verr.Index)
	require.ErrorIs(t, err, outbox.ErrInvalidOrganizationID)
	require.Equal(t, 0, b.countEvents(t, ""))

	ps[3100], ps[4500] = params("org", map[string]any{}), params("org", map[string]any{})
	res, err := outbox.AppendBatch(b.ctx, b.pool, ps)
	require.NoError(t, err)
	require.EqualValues(t, 6000, res.Count)
	require.Equal(t, 6000, b.countEvents(t, "org"))
}

// A panic in a payload's MarshalJSON reaches the caller, as it would with
// sequential validation, instead of crashing the process from a worker.
func TestAppendBatchParallelValidationPanicReachesCaller(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ps := make([]outbox.AppendParams, 5000)
	for i := range ps {
		ps[i] = params("org", map[string]any{"i": i})
	}
	ps[4000] = params("org", panicky{})
	require.PanicsWithValue(t, "MarshalJSON panicked", func() { _, _ = outbox.AppendBatch(b.ctx, b.pool, ps) })
	require.Equal(t, 0, b.countEvents(t, ""))
}

type panicky struct{}

func (panicky) MarshalJSON() ([]byte, error) { panic("MarshalJSON panicked") }

// A batch copies only the optional columns some element sets; each row
// gets its own element's channels and tags, NULL where it has none, and
// the trace columns stay NULL without a span.
func TestAppendBatchStoresEachElementsRouting(t *testing.T) {
	t.Parallel()
	b := setup(t)
	routed := func(channels, tags []string) outbox.AppendParams {
		p := params("org-r", map[string]any{})
		p.Channels, p.Tags = channels, tags
		return p
	}
	cases := []struct {
		name  string
		batch []outbox.AppendParams
	}{
		{"none", []outbox.AppendParams{routed(nil, nil), routed(nil, nil)}},
		{"channels only", []outbox.AppendParams{routed(nil, nil), routed([]string{"eu"}, nil)}},
		{"tags only", []outbox.AppendParams{routed(nil, []string{"t1"}), routed(nil, nil)}},
		{"both, on different elements", []outbox.AppendParams{routed([]string{"eu", "us"}, nil), routed(nil, nil), routed(nil, []string{"t1", "t2"})}},
	}
	for _, tc := range cases {
		_, err := b.pool.Exec(b.ctx, "DELETE FROM outbox_events")
		require.NoError(t, err, tc.name)
		res, err := outbox.AppendBatch(b.ctx, b.pool, tc.batch)
		require.NoError(t, err, tc.name)
		rows, err := b.pool.Query(b.ctx, "SELECT event_id::text, channels, tags, traceparent, tracestate FROM outbox_events ORDER BY id")
		require.NoError(t, err, tc.name)
		i := 0
		var (
			id             string
			channels, tags []string
			tp, ts         *string
		)
		_, err = pgx.ForEachRow(rows, []any{&id, &channels, &tags, &tp, &ts}, func() error {
			want := tc.batch[i]
			require.Equal(t, res.EventIDs[i].String(), id, "%s: row %d", tc.name, i)
			require.Equal(t, want.Channels, channels, "%s: row %d's channels", tc.name, i)
			require.Equal(t, want.Tags, tags, "%s: row %d's tags", tc.name, i)
			require.Nil(t, tp, "%s: no span, no traceparent", tc.name)
			require.Nil(t, ts, "%s: no span, no tracestate", tc.name)
			channels, tags = nil, nil
			i++
			return nil
		})
		require.NoError(t, err, tc.name)
		require.Equal(t, len(tc.batch), i, tc.name)
	}
}
