package outbox_test

import (
	"fmt"
	"testing"

	"github.com/google/uuid"
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

// dbtxKinds are the ways a batch reaches the database: validated before
// the COPY (a pool) or while it streams, inside a savepoint (a transaction
// of the caller's, which a bad element must leave as it was).
var dbtxKinds = []struct {
	name string
	tx   bool
}{{"pool", false}, {"transaction", true}}

// inKind runs f with the pool, or in a transaction that, after f, must
// still take an Append and commit (when f wrote nothing, that event is all
// there is).
func (b *testBundle) inKind(t *testing.T, tx bool, f func(outbox.CopyDBTX)) {
	t.Helper()
	if !tx {
		f(b.pool)
		return
	}
	ptx, err := b.pool.Begin(b.ctx)
	require.NoError(t, err)
	defer func() { _ = ptx.Rollback(b.ctx) }()
	func() {
		defer func() {
			if v := recover(); v != nil {
				require.NoError(t, usable(b, ptx), "the caller's transaction goes on after the panic")
				panic(v)
			}
		}()
		f(ptx)
	}()
	require.NoError(t, usable(b, ptx), "the caller's transaction goes on")
}

// usable appends one event of org-after in tx and commits it.
func usable(b *testBundle, tx pgx.Tx) error {
	if _, err := outbox.Append(b.ctx, tx, params("org-after", map[string]any{})); err != nil {
		return err
	}
	return tx.Commit(b.ctx)
}

func TestAppendBatchLargeReportsLowestBadIndex(t *testing.T) {
	t.Parallel()
	for _, kind := range dbtxKinds {
		t.Run(kind.name, func(t *testing.T) {
			t.Parallel()
			b := setup(t)
			ps := make([]outbox.AppendParams, 6000) // validated in parallel chunks, or while COPY streams
			for i := range ps {
				ps[i] = params("org", map[string]any{"i": i})
			}
			ps[4500] = params("org", []int{1})
			ps[3100] = params("bad org", map[string]any{})
			b.inKind(t, kind.tx, func(db outbox.CopyDBTX) {
				_, err := outbox.AppendBatch(b.ctx, db, ps)
				var verr *outbox.ValidationError
				require.ErrorAs(t, err, &verr)
				require.Equal(t, 3100, verr.Index)
				require.ErrorIs(t, err, outbox.ErrInvalidOrganizationID)
			})
			require.Equal(t, 0, b.countEvents(t, "org"), "nothing of the batch is written")

			ps[3100], ps[4500] = params("org", map[string]any{}), params("org", map[string]any{})
			b.inKind(t, kind.tx, func(db outbox.CopyDBTX) {
				res, err := outbox.AppendBatch(b.ctx, db, ps)
				require.NoError(t, err)
				require.EqualValues(t, 6000, res.Count)
			})
			require.Equal(t, 6000, b.countEvents(t, "org"))
		})
	}
}

// A panic in a payload's MarshalJSON reaches the caller, as it would with
// sequential validation, instead of crashing the process from a worker or
// from pgx's COPY goroutine.
func TestAppendBatchParallelValidationPanicReachesCaller(t *testing.T) {
	t.Parallel()
	for _, kind := range dbtxKinds {
		t.Run(kind.name, func(t *testing.T) {
			t.Parallel()
			b := setup(t)
			ps := make([]outbox.AppendParams, 5000)
			for i := range ps {
				ps[i] = params("org", map[string]any{"i": i})
			}
			ps[4000] = params("org", panicky{})
			require.PanicsWithValue(t, "MarshalJSON panicked", func() {
				b.inKind(t, kind.tx, func(db outbox.CopyDBTX) { _, _ = outbox.AppendBatch(b.ctx, db, ps) })
			})
			require.Equal(t, 0, b.countEvents(t, "org"))
		})
	}
}

// A batch naming one event id twice is refused, nothing written; when it
// is also otherwise bad, the error is the lowest bad index's, however the
// batch is validated.
func TestAppendBatchRefusesAnEventIDTwice(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name       string
		first, dup int // the elements sharing an event id
		invalid    int // an element with a bad organization, or -1
		wantIndex  int
		wantErr    error
	}{
		{"duplicate only", 10, 900, -1, 900, outbox.ErrDuplicateEventID},
		{"invalid element first", 600, 700, 5, 5, outbox.ErrInvalidOrganizationID},
		{"duplicate first", 5, 600, 700, 600, outbox.ErrDuplicateEventID},
	}
	for _, kind := range dbtxKinds {
		for _, tc := range cases {
			t.Run(kind.name+"/"+tc.name, func(t *testing.T) {
				t.Parallel()
				b := setup(t)
				ps := make([]outbox.AppendParams, 1000)
				for i := range ps {
					ps[i] = params("org", map[string]any{"i": i})
				}
				ps[tc.first].EventID = uuid.Must(uuid.NewV7())
				ps[tc.dup].EventID = ps[tc.first].EventID
				if tc.invalid >= 0 {
					ps[tc.invalid].OrganizationID = "bad org"
				}
				b.inKind(t, kind.tx, func(db outbox.CopyDBTX) {
					_, err := outbox.AppendBatch(b.ctx, db, ps)
					var verr *outbox.ValidationError
					require.ErrorAs(t, err, &verr)
					require.Equal(t, tc.wantIndex, verr.Index)
					require.ErrorIs(t, err, tc.wantErr)
				})
				require.Equal(t, 0, b.countEvents(t, "org"))
			})
		}
	}
}

// A COPY the server stops (an event id already pending) still has its
// remaining elements validated: a bad one among them is reported, and the
// savepoint rolled back, whatever moment the server's error came at.
func TestAppendBatchReportsABadElementAfterTheServerRefusedARow(t *testing.T) {
	t.Parallel()
	b := setup(t)
	taken := uuid.Must(uuid.NewV7())
	first := params("org-taken", map[string]any{})
	first.EventID = taken
	_, err := outbox.Append(b.ctx, b.pool, first)
	require.NoError(t, err)

	ps := make([]outbox.AppendParams, 2000)
	for i := range ps {
		ps[i] = params("org", map[string]any{"i": i})
	}
	ps[0].EventID = taken                          // refused by the server's unique index
	ps[1999] = params("bad org", map[string]any{}) // read after the refusal, or not at all
	b.inKind(t, true, func(db outbox.CopyDBTX) {
		_, err := outbox.AppendBatch(b.ctx, db, ps)
		var verr *outbox.ValidationError
		require.ErrorAs(t, err, &verr)
		require.Equal(t, 1999, verr.Index)
	})
	require.Equal(t, 0, b.countEvents(t, "org"))
}

type panicky struct{}

func (panicky) MarshalJSON() ([]byte, error) { panic("MarshalJSON panicked") }

// Each row gets its own element's channels and tags, NULL where it has
// none, whichever elements of the batch set them, and the trace columns
// stay NULL without a span.
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
