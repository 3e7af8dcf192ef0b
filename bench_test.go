package outbox_test

import (
	"context"
	"encoding/json"
	"strconv"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/outboxrelay/outbox"
	"github.com/outboxrelay/outbox/internal/pgtest"
)

// benchPayload marshals to about 250 bytes of JSON, like the design anchors.
type benchPayload struct {
	ID        int64     `json:"id"`
	Actor     string    `json:"actor"`
	Action    string    `json:"action"`
	Resource  string    `json:"resource"`
	IP        string    `json:"ip"`
	UserAgent string    `json:"user_agent"`
	At        time.Time `json:"at"`
	Tags      []string  `json:"tags"`
}

func newBenchPayload(i int) benchPayload {
	return benchPayload{
		ID: int64(i), Actor: "user_2f1c9a7e4b", Action: "document.updated",
		Resource: "doc_8d1e0c33a9b74f21", IP: "203.0.113.42",
		UserAgent: "Mozilla/5.0 (X11; Linux x86_64) Gecko/20100101 Firefox/128.0",
		At:        time.Date(2026, 11, 27, 8, 0, 0, 0, time.UTC), Tags: []string{"audit", "docs", "write"},
	}
}

const rawInsert = "INSERT INTO outbox_events (event_id, organization_id, event_type, payload) VALUES ($1, $2, $3, $4) RETURNING id"

// rawAppend is what a hand-written insert does: marshal, mint an id, insert.
func rawAppend(ctx context.Context, tx pgx.Tx, org string, v any) error {
	payload, err := json.Marshal(v)
	if err != nil {
		return err
	}
	id, err := uuid.NewV7()
	if err != nil {
		return err
	}
	var rowID int64
	return tx.QueryRow(ctx, rawInsert, pgtype.UUID{Bytes: id, Valid: true}, org, "audit_log.created", payload).Scan(&rowID)
}

func benchPool(b *testing.B) *pgxpool.Pool {
	b.Helper()
	return pgtest.New(b).Pool
}

// BenchmarkAppend measures one event per transaction (commit included) and
// 100 events per transaction, beside raw pgx inserts on the same server.
// ns/op is per event.
func BenchmarkAppend(b *testing.B) {
	for _, perTx := range []int{1, 100} {
		for _, impl := range []string{"raw", "outbox"} {
			b.Run(impl+"/per_tx="+itoa(perTx), func(b *testing.B) {
				ctx := context.Background()
				pool := benchPool(b)
				b.ReportAllocs()
				b.ResetTimer()
				for i := 0; i < b.N; {
					tx, err := pool.Begin(ctx)
					if err != nil {
						b.Fatal(err)
					}
					for j := 0; j < perTx && i < b.N; j, i = j+1, i+1 {
						if impl == "raw" {
							err = rawAppend(ctx, tx, "org_bench", newBenchPayload(i))
						} else {
							_, err = outbox.Append(ctx, tx, outbox.AppendParams{OrganizationID: "org_bench", EventType: outbox.EventTypeAuditLogCreated, Payload: newBenchPayload(i)})
						}
						if err != nil {
							b.Fatal(err)
						}
					}
					if err := tx.Commit(ctx); err != nil {
						b.Fatal(err)
					}
				}
				b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
			})
		}
	}
}

// rawCopySource is a hand-written COPY source: marshal and mint an id per row.
type rawCopySource struct {
	n, i int
	err  error
}

func (s *rawCopySource) Next() bool { s.i++; return s.i <= s.n }
func (s *rawCopySource) Err() error { return s.err }
func (s *rawCopySource) Values() ([]any, error) {
	payload, err := json.Marshal(newBenchPayload(s.i))
	if err != nil {
		return nil, err
	}
	id, err := uuid.NewV7()
	if err != nil {
		return nil, err
	}
	return []any{pgtype.UUID{Bytes: id, Valid: true}, "org_" + itoa(s.i%10), "audit_log.created", payload}, nil
}

// BenchmarkAppendBatch measures batches of 10,000 events committed in one
// transaction, beside a raw pgx CopyFrom on the same server. One op is one
// batch; rows/s is the figure to compare.
func BenchmarkAppendBatch(b *testing.B) {
	const size = 10000
	for _, impl := range []string{"raw_copy", "outbox"} {
		b.Run(impl+"/size="+itoa(size), func(b *testing.B) {
			ctx := context.Background()
			pool := benchPool(b)
			b.ReportAllocs()
			b.ResetTimer()
			for range b.N {
				tx, err := pool.Begin(ctx)
				if err != nil {
					b.Fatal(err)
				}
				if impl == "raw_copy" {
					_, err = tx.CopyFrom(ctx, pgx.Identifier{"outbox_events"}, []string{"event_id", "organization_id", "event_type", "payload"}, &rawCopySource{n: size})
				} else {
					ps := make([]outbox.AppendParams, size)
					for i := range ps {
						ps[i] = outbox.AppendParams{OrganizationID: "org_" + itoa(i%10), EventType: outbox.EventTypeAuditLogCreated, Payload: newBenchPayload(i)}
					}
					_, err = outbox.AppendBatch(ctx, tx, ps)
				}
				if err != nil {
					b.Fatal(err)
				}
				if err := tx.Commit(ctx); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.N*size)/b.Elapsed().Seconds(), "rows/s")
		})
	}
}

func itoa(i int) string { return strconv.Itoa(i) }
