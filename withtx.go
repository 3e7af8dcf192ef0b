package outbox

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5"
)

// TxBeginner starts transactions: *pgxpool.Pool and *pgx.Conn satisfy it.
// (A pgx.Tx has Begin too, but WithTx refuses one: see ErrNestedTx.)
type TxBeginner interface {
	Begin(ctx context.Context) (pgx.Tx, error)
}

// Tx is the transaction WithTx hands to its function. It is a pgx.Tx that
// also remembers which organizations Append and AppendBatch wrote events
// for, so WithTx can signal each of them after the commit.
type Tx struct {
	pgx.Tx
	orgs map[string]struct{}
	seq  []string // organizations in the order first appended to
}

// appendRecorder is implemented by *Tx; Append and AppendBatch report each
// appended event's organization to it.
type appendRecorder interface {
	recordAppend(organizationID string)
}

func (tx *Tx) recordAppend(organizationID string) {
	if _, ok := tx.orgs[organizationID]; ok {
		return
	}
	if tx.orgs == nil {
		tx.orgs = map[string]struct{}{}
	}
	tx.orgs[organizationID] = struct{}{}
	tx.seq = append(tx.seq, organizationID)
}

// Organizations returns the organizations events were appended for so far,
// each once, in the order of their first event.
func (tx *Tx) Organizations() []string {
	return append([]string(nil), tx.seq...)
}

// ErrNestedTx is returned by WithTx given a pgx.Tx: its Begin starts a
// savepoint, whose "commit" only releases the savepoint, so the signal would
// precede the real commit (and a later rollback would undo signalled
// events). Pass the pool or connection, or, inside your own transaction,
// call Append and signal after your Commit.
var ErrNestedTx = errors.New("a transaction where a pool or connection is needed (its commit would only release a savepoint)")

// signalTimeout bounds the signals WithTx sends after a commit.
const signalTimeout = 5 * time.Second

// WithTx runs fn in a transaction and, only if fn returns nil and the commit
// succeeds, signals each organization that received events once (all in one
// call, and one round trip for NotifySignaler, when the signaler is a
// BatchSignaler).
//
// fn must append through the *Tx it is given (outbox.Append(ctx, tx, ...));
// events appended through another handle, or through a savepoint started
// with tx.Begin, are committed with it but not signalled. If fn returns an
// error or panics the transaction rolls back and nothing is signalled.
//
// The returned error is fn's, or the commit's. A failed signal does not make
// WithTx fail, because the work is committed and the relay's sweep will find
// the events; it is logged at warning level through slog's default logger.
func WithTx(ctx context.Context, db TxBeginner, signaler Signaler, fn func(tx *Tx) error) error {
	if _, nested := db.(pgx.Tx); nested {
		return fmt.Errorf("outbox: WithTx: %w", ErrNestedTx)
	}
	ptx, err := db.Begin(ctx)
	if err != nil {
		return fmt.Errorf("outbox: begin: %w", err)
	}
	tx := &Tx{Tx: ptx}
	defer func() { _ = ptx.Rollback(ctx) }() // no-op after a commit
	if err := fn(tx); err != nil {
		return err
	}
	if err := ptx.Commit(ctx); err != nil {
		return fmt.Errorf("outbox: commit: %w", err)
	}
	signalCommitted(ctx, signaler, tx.seq)
	return nil
}

// signalCommitted signals each organization, in one call when the signaler
// is a BatchSignaler, even when ctx was cancelled right after the commit.
func signalCommitted(ctx context.Context, signaler Signaler, orgs []string) {
	if signaler == nil || len(orgs) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), signalTimeout)
	defer cancel()
	if err := signalAll(ctx, signaler, orgs); err != nil {
		slog.Default().WarnContext(ctx, "outbox: signal after commit failed; the relay's sweep will deliver",
			slog.Int("organizations", len(orgs)), slog.String("error", err.Error()))
	}
}
