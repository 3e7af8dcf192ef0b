package outbox

import (
	"context"
	"fmt"
	"runtime"
	"strconv"
	"sync"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/outboxrelay/outbox/internal/telemetry"
)

// AppendBatchResult reports what AppendBatch inserted.
type AppendBatchResult struct {
	// Count is the number of rows inserted.
	Count int64
	// EventIDs are the events' public ids, in the order of the input.
	EventIDs []uuid.UUID
}

// copyColumns are the columns AppendBatch fills; the rest take defaults.
var copyColumns = []string{"event_id", "organization_id", "event_type", "payload", "traceparent", "tracestate", "channels", "tags"}

// AppendBatch inserts many events with one COPY, with the default Producer.
// The events may belong to several organizations. It is much faster than
// calling Append in a loop.
//
// Call it inside the caller's transaction, as Append. Every element is
// validated first: one bad element rejects the whole batch with a
// *ValidationError naming its index, and nothing is written. An empty batch
// does nothing.
func AppendBatch(ctx context.Context, dbtx CopyDBTX, ps []AppendParams) (AppendBatchResult, error) {
	return defaultProducer.AppendBatch(ctx, dbtx, ps)
}

// AppendBatch inserts many events with one COPY; see the package-level
// AppendBatch.
func (p *Producer) AppendBatch(ctx context.Context, dbtx CopyDBTX, ps []AppendParams) (AppendBatchResult, error) {
	if len(ps) == 0 {
		return AppendBatchResult{}, nil
	}
	src := &batchSource{params: ps, ids: make([]uuid.UUID, len(ps)), i: -1}
	payloads, verr := p.validateAll(ps)
	if verr == nil {
		verr = distinctEventIDs(ps)
	}
	if verr != nil {
		return AppendBatchResult{}, fmt.Errorf("outbox: %w", verr)
	}
	src.payloads = payloads
	src.traceparent, src.tracestate = telemetry.TraceContext(ctx)
	n, err := dbtx.CopyFrom(ctx, p.table, copyColumns, src)
	if err != nil {
		return AppendBatchResult{}, fmt.Errorf("outbox: append batch of %d: %w", len(ps), duplicateEventID(err))
	}
	p.countBatch(ctx, ps)
	if r, ok := dbtx.(appendRecorder); ok {
		for i := range ps {
			r.recordAppend(ps[i].OrganizationID)
		}
	}
	return AppendBatchResult{Count: n, EventIDs: src.ids}, nil
}

// countBatch adds a batch's events to the appended counter, a run of one
// event type at a time.
func (p *Producer) countBatch(ctx context.Context, ps []AppendParams) {
	start := 0
	for i := 1; i <= len(ps); i++ {
		if i == len(ps) || ps[i].EventType != ps[start].EventType {
			p.tel.countAppended(ctx, ps[start].EventType, int64(i-start))
			start = i
		}
	}
}

// distinctEventIDs refuses a batch that gives one event id twice (minted
// ids are distinct by construction).
func distinctEventIDs(ps []AppendParams) *ValidationError {
	var seen map[uuid.UUID]int
	for i := range ps {
		id := ps[i].EventID
		if id == (uuid.UUID{}) {
			continue
		}
		if seen == nil {
			seen = map[uuid.UUID]int{}
		}
		if first, dup := seen[id]; dup {
			return (&ValidationError{Field: "EventID", Err: ErrDuplicateEventID,
				Rule: "must be unique in the batch, is also element " + strconv.Itoa(first) + "'s (got " + id.String() + ")"}).at(i)
		}
		seen[id] = i
	}
	return nil
}

// parallelValidationMin is the batch size from which validation (mostly
// json.Marshal) is spread over the available CPUs.
const parallelValidationMin = 2048

// validateAll validates every element and returns the encoded payloads, or
// the error of the lowest bad index. Large batches are validated in
// parallel chunks: everything is checked before any SQL runs, so this work
// cannot overlap the COPY and is worth spreading.
func (p *Producer) validateAll(ps []AppendParams) ([][]byte, *ValidationError) {
	payloads := make([][]byte, len(ps))
	workers := min(runtime.GOMAXPROCS(0), len(ps)/(parallelValidationMin/2))
	if workers <= 1 || len(ps) < parallelValidationMin {
		return payloads, p.validateRange(ps, payloads, 0, len(ps))
	}
	errs := make([]*ValidationError, workers)
	panics := make([]any, workers)
	var wg sync.WaitGroup
	chunk := (len(ps) + workers - 1) / workers
	for w := range workers {
		lo, hi := w*chunk, min((w+1)*chunk, len(ps))
		wg.Add(1)
		go func() {
			defer wg.Done()
			// A panicking MarshalJSON must reach the caller, as it would
			// without the parallelism, not crash the process.
			defer func() { panics[w] = recover() }()
			errs[w] = p.validateRange(ps, payloads, lo, hi)
		}()
	}
	wg.Wait()
	for _, v := range panics {
		if v != nil {
			panic(v)
		}
	}
	for _, err := range errs {
		if err != nil {
			return nil, err
		}
	}
	return payloads, nil
}

func (p *Producer) validateRange(ps []AppendParams, payloads [][]byte, lo, hi int) *ValidationError {
	for i := lo; i < hi; i++ {
		payload, verr := p.validate(&ps[i])
		if verr != nil {
			return verr.at(i)
		}
		payloads[i] = payload
	}
	return nil
}

// batchSource feeds validated rows to CopyFrom, reusing one values slice.
type batchSource struct {
	params   []AppendParams
	payloads [][]byte
	ids      []uuid.UUID
	i        int
	values   [8]any
	// traceparent and tracestate are the caller's span context, for every row.
	traceparent, tracestate string
}

func (s *batchSource) Next() bool {
	s.i++
	return s.i < len(s.params)
}

func (s *batchSource) Values() ([]any, error) {
	p := &s.params[s.i]
	id, err := eventIDFor(p) // minted while COPY streams, so it overlaps the server's work
	if err != nil {
		return nil, err
	}
	s.ids[s.i] = id
	s.values = [8]any{pgtype.UUID{Bytes: s.ids[s.i], Valid: true}, p.OrganizationID, string(p.EventType), s.payloads[s.i],
		text(s.traceparent), text(s.tracestate), textArray(p.Channels), textArray(p.Tags)}
	return s.values[:], nil
}

func (s *batchSource) Err() error { return nil }
