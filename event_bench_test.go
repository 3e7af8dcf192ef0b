package outbox_test

import (
	"context"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/outboxrelay/outbox"
	"github.com/outboxrelay/outbox/eventtypes"
)

// BenchmarkTypedAppend is one event appended and committed per op, three
// ways side by side in one run, alternating in blocks of 50 against one
// server: the untyped Append of a struct payload, the typed
// EventDefinition.Append of the same struct, and Append with eventtypes'
// Validator as the PayloadValidator checking it against its schema. It reports each one's
// rate and its ratio to the untyped call; the Validator is also measured
// alone (validate-ns, the schema check without the database), as a
// payload's check costs.
//
//	go test -run '^$' -bench TypedAppend -benchtime 15000x .
func BenchmarkTypedAppend(b *testing.B) {
	const block = 50
	ctx := context.Background()
	pool := benchPool(b)
	validator := eventtypes.NewValidator(auditLogs)
	validating, err := outbox.NewProducer(outbox.Config{PayloadValidator: validator})
	if err != nil {
		b.Fatal(err)
	}
	entry := AuditLog{ID: "log_1", Action: "login", Actor: Actor{ID: "u_1", Kind: "user"}, At: time.Now().UTC(), Note: "from the benchmark"}
	ways := []func(tx pgx.Tx) error{
		func(tx pgx.Tx) error {
			_, err := outbox.Append(ctx, tx, outbox.AppendParams{OrganizationID: "org_bench", EventType: auditLogCreated.Name(), Payload: entry})
			return err
		},
		func(tx pgx.Tx) error {
			_, err := auditLogCreated.Append(ctx, tx, "org_bench", entry)
			return err
		},
		func(tx pgx.Tx) error {
			_, err := validating.Append(ctx, tx, auditLogCreated.Params("org_bench", entry))
			return err
		},
	}
	spent := make([]time.Duration, len(ways))
	ops := make([]int, len(ways))
	b.ResetTimer()
	for i := 0; i < b.N; {
		which := (i / block) % len(ways)
		start := time.Now()
		for j := 0; j < block && i < b.N; j, i = j+1, i+1 {
			tx, err := pool.Begin(ctx)
			if err != nil {
				b.Fatal(err)
			}
			if err := ways[which](tx); err != nil {
				b.Fatal(err)
			}
			if err := tx.Commit(ctx); err != nil {
				b.Fatal(err)
			}
			ops[which]++
		}
		spent[which] += time.Since(start)
	}
	b.StopTimer()
	rate := func(k int) float64 { return float64(ops[k]) / spent[k].Seconds() }
	b.ReportMetric(rate(0), "tx/s-untyped")
	b.ReportMetric(rate(1), "tx/s-typed")
	b.ReportMetric(rate(2), "tx/s-validated")
	b.ReportMetric(rate(1)/rate(0), "typed/untyped")
	b.ReportMetric(rate(2)/rate(0), "validated/untyped")
	b.ReportMetric(validateCost(b, validator), "validate-ns")
}

// validateCost is the time of one schema check of entry's JSON, in ns.
func validateCost(b *testing.B, v *eventtypes.Validator) float64 {
	payload := []byte(`{"id":"log_1","action":"login","actor":{"id":"u_1","kind":"user"},"at":"2026-12-01T12:00:00Z","note":"from the benchmark"}`)
	const n = 20000
	start := time.Now()
	for range n {
		if err := v.ValidatePayload(auditLogCreated.Name(), payload); err != nil {
			b.Fatal(err)
		}
	}
	return float64(time.Since(start).Nanoseconds()) / n
}
