package relay

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/outboxrelay/outbox/internal/pgtest"
	"github.com/outboxrelay/outbox/internal/sqlname"
)

// sqlHeadsOneStepPerEvent is the claim's head walk as it was before it
// walked in chunks (sqlHeads): one recursive step per event, each payload
// converted to text as it is walked. It is the reference the chunked walk
// must agree with, row for row.
var sqlHeadsOneStepPerEvent = `
WITH taken AS (
    SELECT l.organization_id FROM {lanes} l WHERE l.organization_id = ANY($1::text[]) AND l.lease_token = $2
), walk AS (
    -- Each taken lane's head, walked one event at a time in id order
    -- while the events are due and fit: the walk stops at the first event
    -- not due, at $3 events, or at the first whose payload passes the
    -- byte bound (kept as the last row, without its text, to tell that the
    -- bound cut the claim; after a first event over the bound alone, the
    -- next due event is that row). Only the payloads walked are measured.
    SELECT t.organization_id AS org, h.*
    FROM taken t CROSS JOIN LATERAL (
        WITH RECURSIVE w AS (
            (SELECT 1 AS n, f.len AS running, f.id, f.due, f.txt, ` + walkCols("f") + `
             FROM (SELECT ` + headRow + `
                   WHERE ` + headOfClaimed + `
                   LIMIT 1) s) f)
            UNION ALL
            SELECT w.n + 1, w.running + f.len, f.id, f.due,
                   CASE WHEN w.running + f.len <= $4 THEN f.txt END, ` + walkCols("f") + `
            FROM w CROSS JOIN LATERAL (
                SELECT ` + headRow + `
                WHERE e.id > w.id AND ` + headOfClaimed + `
                LIMIT 1) s) f
            WHERE w.due AND (w.running <= $4 OR w.n = 1) AND w.n < $3
        )
        SELECT * FROM w
    ) h
)
-- The due events walked: those claimed (the first always: one larger than
-- the bound must still be sent), and the one the bound cut the claim at,
-- if any, which the walk carried without its text.
SELECT org, id, event_id, event_type, txt, attempt, created_at,
       running <= $4 OR n = 1 AS claimed, traceparent, tracestate, channels, tags, last_error
FROM walk WHERE due`

// The claim's chunked walk returns exactly what the walk of one step per
// event returned, whatever the heads: events due or waiting for a retry,
// payloads small, large, compressed, or small but long as text, and any
// BatchSize and BatchMaxBytes (the first event always claimed, the one the
// byte bound cut at returned without its text).
func TestHeadsChunkedWalkAgreesWithTheWalkOfOneStepPerEvent(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := pgtest.New(t)
	rng := rand.New(rand.NewPCG(7, 21))
	token := newInstance()
	var orgs []string
	for i := range 60 {
		org := fmt.Sprintf("org-%02d", i)
		orgs = append(orgs, org)
		_, err := db.Pool.Exec(ctx, `INSERT INTO outbox_lanes (organization_id, lease_token, leased_until) VALUES ($1, $2, now() + interval '1 minute')`, org, token)
		require.NoError(t, err)
		for range 1 + rng.IntN(130) {
			var payload string
			switch rng.IntN(12) {
			case 11: // stored small, long as text (a huge exponent, escaped control characters)
				payload = fmt.Sprintf(`{"big": [1e%d, 1e-%d], "ctl": "%s"}`, 200+rng.IntN(3000), 200+rng.IntN(3000), strings.Repeat(`\u0001`, rng.IntN(300)))
			case 0: // incompressible, over 2 kB: not small
				payload = fmt.Sprintf(`{"pad": "%s"}`, randomHex(rng, 1500+rng.IntN(3000)))
			case 1: // compressible, stored compressed: not small
				payload = fmt.Sprintf(`{"pad": "%s"}`, strings.Repeat("ab", 2000+rng.IntN(20000)))
			default: // small
				payload = fmt.Sprintf(`{"n": %d, "pad": "%s"}`, rng.IntN(1000), strings.Repeat("x", rng.IntN(600)))
			}
			retry := "NULL"
			if rng.IntN(12) == 0 {
				retry = "now() + interval '1 hour'"
			} else if rng.IntN(12) == 0 {
				retry = "now() - interval '1 second'"
			}
			_, err := db.Pool.Exec(ctx, `INSERT INTO outbox_events (event_id, organization_id, event_type, payload, next_attempt_at)
				VALUES (gen_random_uuid(), $1, 'x.y', $2::jsonb, `+retry+`)`, org, payload)
			require.NoError(t, err)
		}
	}
	var kinds [3]int
	require.NoError(t, db.Pool.QueryRow(ctx, `SELECT count(*) FILTER (WHERE pg_column_compression(payload) IS NOT NULL),
		count(*) FILTER (WHERE pg_column_compression(payload) IS NULL AND pg_column_size(payload) >= 2048),
		count(*) FILTER (WHERE pg_column_size(payload) < 2048 AND pg_column_compression(payload) IS NULL) FROM outbox_events`).
		Scan(&kinds[0], &kinds[1], &kinds[2]))
	require.Positive(t, kinds[0], "some payloads are compressed")
	require.Positive(t, kinds[1], "some are large and not compressed")
	require.Positive(t, kinds[2], "most are small")

	schema := Config{}.withDefaults().Schema
	walk := sqlname.Schema(schema).Expand(sqlHeadsOneStepPerEvent)
	prefix := newQueries(schema).heads
	for _, size := range []int{1, 2, 7, 100} {
		for _, bound := range []int{100, 1000, 5000, 1 << 20} {
			tx, err := db.Pool.Begin(ctx)
			require.NoError(t, err)
			want := headsRows(t, tx, walk, orgs, token, size, bound)
			got := headsRows(t, tx, prefix, orgs, token, size, bound)
			require.NoError(t, tx.Rollback(ctx))
			require.NotEmpty(t, want)
			require.Equal(t, want, got, "BatchSize %d, BatchMaxBytes %d", size, bound)
		}
	}
}

// headsRows runs a head walk and returns its rows, in a stable order.
func headsRows(t *testing.T, tx pgx.Tx, sql string, orgs []string, token any, size, bound int) []string {
	t.Helper()
	rows, err := tx.Query(context.Background(), sql, orgs, token, size, bound)
	require.NoError(t, err)
	out, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (string, error) {
		vals, err := row.Values()
		return fmt.Sprint(vals), err
	})
	require.NoError(t, err)
	slices.Sort(out)
	return out
}

// randomHex returns n random hexadecimal digits.
func randomHex(rng *rand.Rand, n int) string {
	const digits = "0123456789abcdef"
	b := make([]byte, n)
	for i := range b {
		b[i] = digits[rng.IntN(16)]
	}
	return string(b)
}
