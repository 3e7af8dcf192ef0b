package outbox

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"strconv"
	"sync"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
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
// Call it inside the caller's transaction, as Append. One bad element
// rejects the whole batch with a *ValidationError naming its index (the
// lowest bad one), nothing is written, and the caller's transaction goes on
// as before. In a pgx.Tx, a batch of 512 or more is validated while COPY
// streams it, so that the validation overlaps the server's work: the COPY
// runs in a savepoint, which a bad element rolls back to (two more round
// trips; a savepoint that writes is a subtransaction, and a transaction
// with more than 64 of them overflows PostgreSQL's per-backend cache of
// them, which slows every snapshot until it ends: append more in one batch
// rather than in many large ones). Anything else (a pool, a connection)
// has every element validated before any SQL runs. An empty batch does
// nothing.
func AppendBatch(ctx context.Context, dbtx CopyDBTX, ps []AppendParams) (AppendBatchResult, error) {
	return defaultProducer.AppendBatch(ctx, dbtx, ps)
}

// AppendBatch inserts many events with one COPY; see the package-level
// AppendBatch.
func (p *Producer) AppendBatch(ctx context.Context, dbtx CopyDBTX, ps []AppendParams) (AppendBatchResult, error) {
	if len(ps) == 0 {
		return AppendBatchResult{}, nil
	}
	src := &batchSource{p: p, params: ps, ids: make([]uuid.UUID, len(ps)), i: -1}
	src.traceparent, src.tracestate = telemetry.TraceContext(ctx)
	var (
		n   int64
		err error
	)
	if copier, ok := streamingCopier(dbtx, len(ps)); ok {
		n, err = p.copyValidating(ctx, copier, src)
	} else {
		n, err = p.copyValidated(ctx, dbtx, src)
	}
	if err != nil {
		return AppendBatchResult{}, err
	}
	p.countBatch(ctx, ps)
	if r, ok := dbtx.(appendRecorder); ok {
		for i := range ps {
			r.recordAppend(ps[i].OrganizationID)
		}
	}
	return AppendBatchResult{Count: n, EventIDs: src.ids}, nil
}

// copyValidated validates every element, then copies the batch.
func (p *Producer) copyValidated(ctx context.Context, dbtx CopyDBTX, src *batchSource) (int64, error) {
	payloads, verr := p.validateAll(src.params)
	if dup := distinctEventIDs(src.params); dup != nil && (verr == nil || dup.Index < verr.Index) {
		verr = dup // the lowest bad index, whatever is wrong with it
	}
	if verr != nil {
		return 0, fmt.Errorf("outbox: %w", verr)
	}
	src.payloads = payloads
	n, err := dbtx.CopyFrom(ctx, p.table, copyColumns, src)
	if err != nil {
		return 0, fmt.Errorf("outbox: append batch of %d: %w", len(src.params), duplicateEventID(err))
	}
	return n, nil
}

// streamValidationMin is the batch size from which a batch is validated
// while COPY streams it, when the COPY can be undone without touching the
// caller's transaction (streamingCopier): below it, the savepoint's two
// round trips cost more than the overlap wins.
const streamValidationMin = 512

// streamingCopier returns the caller's transaction when a batch of n is
// to be validated while COPY streams it, so that validation (mostly
// json.Marshal) overlaps the server's work instead of coming before it:
// the COPY runs in a savepoint of the caller's pgx.Tx, and a bad element
// rolls back to it, leaving the caller's transaction as it was. For
// anything else (a pool, a connection, a wrapper) it reports false: every
// element is validated before any SQL runs.
func streamingCopier(dbtx CopyDBTX, n int) (savepointCopier, bool) {
	tx, ok := dbtx.(pgx.Tx)
	return savepointCopier{tx}, ok && n >= streamValidationMin
}

// savepointCopier copies inside a savepoint of tx, rolled back when undo
// says so (a bad element), released otherwise.
type savepointCopier struct{ tx pgx.Tx }

// undo is asked once the COPY has returned; a rollback that fails (the
// connection is gone) is returned as rollbackErr: the caller's transaction
// is then not as it was, and the caller must know.
func (c savepointCopier) copyFrom(ctx context.Context, table pgx.Identifier, cols []string, src pgx.CopyFromSource, undo func() bool) (n int64, err, rollbackErr error) {
	sp, err := c.tx.Begin(ctx)
	if err != nil {
		return 0, err, nil
	}
	n, err = sp.CopyFrom(ctx, table, cols, src)
	if undo() {
		// Not cancelled with ctx: a savepoint left in place would leave the
		// caller's transaction aborted.
		if rerr := sp.Rollback(context.WithoutCancel(ctx)); rerr != nil {
			return 0, err, fmt.Errorf("roll back to the batch's savepoint: %w", rerr)
		}
		return 0, err, nil
	}
	if err != nil {
		return 0, err, nil // the caller's transaction is aborted, as without the savepoint
	}
	return n, sp.Commit(ctx), nil
}

// copyValidating copies the batch through c while src validates each
// element as COPY reads it. A bad element (an invalid one, or one naming
// an earlier element's event id: the lowest bad index, since they are read
// in order) stops the COPY and undoes it; a panic in a payload's
// MarshalJSON, recovered on pgx's encoding goroutine, is raised again
// here, on the caller's. Elements a CopyFrom did not read (a pgx.Tx of
// another make than pgx's) are validated after it, and the COPY undone if
// one is bad.
func (p *Producer) copyValidating(ctx context.Context, c savepointCopier, src *batchSource) (int64, error) {
	src.validating = true
	src.payloads = make([][]byte, len(src.params))
	n, err, rerr := c.copyFrom(ctx, p.table, copyColumns, src, src.validateRest)
	if src.panicked != nil {
		if rerr != nil {
			panic(fmt.Sprintf("%v (and %v)", src.panicked, rerr))
		}
		panic(src.panicked)
	}
	switch {
	case src.verr != nil && rerr != nil:
		return 0, fmt.Errorf("outbox: %w; and the transaction is aborted: %w", src.verr, rerr)
	case src.verr != nil:
		return 0, fmt.Errorf("outbox: %w", src.verr)
	case err != nil:
		return 0, fmt.Errorf("outbox: append batch of %d: %w", len(src.params), duplicateEventID(err))
	}
	return n, nil
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
			return duplicateInBatch(id, first).at(i)
		}
		seen[id] = i
	}
	return nil
}

// duplicateInBatch is the error of an element naming the event id of the
// batch's element first.
func duplicateInBatch(id uuid.UUID, first int) *ValidationError {
	return &ValidationError{Field: "EventID", Err: ErrDuplicateEventID,
		Rule: "must be unique in the batch, is also element " + strconv.Itoa(first) + "'s (got " + id.String() + ")"}
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

// batchSource feeds rows to CopyFrom, reusing one values slice. Its
// payloads are validated before the COPY or, when validating, one by one
// as the COPY reads them (on pgx's encoding goroutine).
type batchSource struct {
	p        *Producer
	params   []AppendParams
	payloads [][]byte
	ids      []uuid.UUID
	i        int
	values   [8]any
	// traceparent and tracestate are the caller's span context, for every row.
	traceparent, tracestate string

	validating bool              // validate each element in Next
	seen       map[uuid.UUID]int // the caller's event ids met so far, when validating
	verr       *ValidationError  // the bad element that stopped the COPY
	panicked   any               // a panic recovered while validating
}

func (s *batchSource) Next() bool {
	s.i++
	if s.i >= len(s.params) || s.verr != nil || s.panicked != nil {
		return false
	}
	if s.validating {
		s.validateNext()
	}
	return s.verr == nil && s.panicked == nil
}

// validateNext validates element i, recording its error or panic (which
// then ends the COPY through Err).
func (s *batchSource) validateNext() {
	defer func() {
		if v := recover(); v != nil {
			s.panicked = v
		}
	}()
	payload, verr := s.p.validate(&s.params[s.i])
	if verr != nil {
		s.verr = verr.at(s.i)
		return
	}
	s.payloads[s.i] = payload
	if id := s.params[s.i].EventID; id != (uuid.UUID{}) {
		if s.seen == nil {
			s.seen = map[uuid.UUID]int{}
		}
		if first, dup := s.seen[id]; dup {
			s.verr = duplicateInBatch(id, first).at(s.i)
			return
		}
		s.seen[id] = s.i
	}
}

// validateRest validates the elements the COPY did not read (a CopyFrom
// that stopped early), and reports whether any element failed. Called once
// CopyFrom has returned.
func (s *batchSource) validateRest() bool {
	more := true
	for more && !s.failed() {
		more = s.Next()
	}
	return s.failed()
}

// failed reports whether validation stopped the COPY. Read once CopyFrom
// has returned (its encoding goroutine has ended).
func (s *batchSource) failed() bool { return s.verr != nil || s.panicked != nil }

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

// errStoppedByValidation ends a COPY whose next element is bad; the caller
// gets the element's ValidationError instead.
var errStoppedByValidation = errors.New("outbox: batch stopped by a bad element")

func (s *batchSource) Err() error {
	if s.failed() {
		return errStoppedByValidation
	}
	return nil
}
