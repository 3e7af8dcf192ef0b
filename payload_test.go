package outbox_test

import (
	"context"
	"encoding/json"
	"math/big"
	"strconv"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/stretchr/testify/require"

	"github.com/outboxrelay/outbox"
)

// marshalsTo is a payload whose MarshalJSON returns fixed JSON, which
// json.Marshal checks for syntax only and copies as is.
type marshalsTo string

func (m marshalsTo) MarshalJSON() ([]byte, error) { return []byte(m), nil }

// nested returns depth objects nested in one another, {"a":{"a":...{}}}.
func nested(depth int) map[string]any {
	m := map[string]any{}
	for range depth - 1 {
		m = map[string]any{"a": m}
	}
	return m
}

// tenTo returns 10^n as a *big.Int, which marshals to all its digits.
func tenTo(n int64) *big.Int {
	return new(big.Int).Exp(big.NewInt(10), big.NewInt(n), nil)
}

func TestAppendRejectsPayloadsJSONBCannotStore(t *testing.T) {
	t.Parallel()
	b := setup(t)

	const (
		nul       = `must not contain \u0000`
		surrogate = "unpaired UTF-16 surrogate escape"
		tooLarge  = "number too large for PostgreSQL's jsonb, whose numeric type holds at most 131072 digits before the decimal point"
		scale     = "more digits after the decimal point than PostgreSQL's jsonb holds"
		exponent  = "exponent PostgreSQL's jsonb refuses"
		depth     = "more than 10000 deep"
		utf8      = "not valid UTF-8 once marshalled"
		written   = "once PostgreSQL's jsonb writes its numbers out in full"
	)
	raw := func(s string) json.RawMessage { return json.RawMessage(s) }
	tests := []struct {
		name     string
		payload  any
		sentinel error
		rule     string
	}{
		// PostgreSQL: "Unicode low surrogate must follow a high surrogate."
		{"lone high surrogate", raw(`{"a":"\ud800"}`), outbox.ErrInvalidPayload, surrogate + ` \ud800 at byte 6`},
		{"lone high surrogate, upper case", raw(`{"a":"x\uDBFFy"}`), outbox.ErrInvalidPayload, surrogate + ` \uDBFF at byte 7`},
		{"lone low surrogate", raw(`{"a":"\udc00"}`), outbox.ErrInvalidPayload, surrogate + ` \udc00`},
		{"surrogates in the wrong order", raw(`{"a":"\udc00\ud800"}`), outbox.ErrInvalidPayload, surrogate + ` \udc00`},
		{"high surrogate then other escape", raw(`{"a":"\ud800\n"}`), outbox.ErrInvalidPayload, surrogate},
		{"high surrogate at end of string", []byte(`{"a":"\ud83d"}`), outbox.ErrInvalidPayload, surrogate},
		{"lone surrogate in a key", raw(`{"ok":"\ud83d\ude00","\udfff":1}`), outbox.ErrInvalidPayload, surrogate + ` \udfff at byte 22`},
		// PostgreSQL: "Unicode high surrogate must not follow a high surrogate."
		{"two high surrogates", raw(`{"a":"\ud800\ud800"}`), outbox.ErrInvalidPayload, surrogate},
		{"lone surrogate from a json.RawMessage", map[string]any{"a": raw(`"\ud800"`)}, outbox.ErrInvalidPayload, surrogate},
		{"lone surrogate from MarshalJSON", marshalsTo(`{"a":"\udc00"}`), outbox.ErrInvalidPayload, surrogate},
		{"NUL from a json.RawMessage", map[string]any{"a": raw(`"\u0000"`)}, outbox.ErrInvalidPayload, nul},
		{"NUL after an escaped backslash", raw(`{"a":"\\\u0000"}`), outbox.ErrInvalidPayload, nul},

		// PostgreSQL: "value overflows numeric format".
		{"exponent 1000000", raw(`{"a":1e1000000}`), outbox.ErrInvalidPayload, tooLarge + ` (got "1e1000000" at byte 5)`},
		{"10^131072", raw(`{"a":1e131072}`), outbox.ErrInvalidPayload, tooLarge},
		{"10^131072 written 10e131071", raw(`{"a":-10e131071}`), outbox.ErrInvalidPayload, tooLarge},
		{"10^131072 written 0.001e131075", raw(`{"a":0.001e131075}`), outbox.ErrInvalidPayload, tooLarge},
		{"131073 digits", raw(`{"a":` + strings.Repeat("9", 131073) + `}`), outbox.ErrInvalidPayload, tooLarge + ` (got "` + strings.Repeat("9", 40) + `..."`},
		{"huge exponent", raw(`{"a":[1,1e99999999999999999999]}`), outbox.ErrInvalidPayload, tooLarge},
		{"10^-16384", raw(`{"a":1e-16384}`), outbox.ErrInvalidPayload, scale},
		{"10^-20000", raw(`{"a":1E-20000}`), outbox.ErrInvalidPayload, scale},
		{"trailing zero past scale 16383", raw(`{"a":1.50e-16382}`), outbox.ErrInvalidPayload, scale},
		{"16384 digits after the point", raw(`{"a":0.` + strings.Repeat("1", 16384) + `}`), outbox.ErrInvalidPayload, scale},
		{"zero with scale 16384", raw(`{"a":-0.0e-16383}`), outbox.ErrInvalidPayload, scale},
		{"zero with huge negative exponent", raw(`{"a":0e-99999999999999999999}`), outbox.ErrInvalidPayload, scale},
		{"zero with exponent 2^30-1", raw(`{"a":0e1073741823}`), outbox.ErrInvalidPayload, exponent},
		{"json.Number too large", map[string]any{"n": json.Number("1e1000000")}, outbox.ErrInvalidPayload, tooLarge},
		{"json.Number too precise", map[string]any{"n": json.Number("1e-16384")}, outbox.ErrInvalidPayload, scale},
		{"big.Int too large", map[string]any{"n": tenTo(131072)}, outbox.ErrInvalidPayload, tooLarge},
		{"number from MarshalJSON", marshalsTo(`{"n":1e131072}`), outbox.ErrInvalidPayload, tooLarge},

		// Would be stored, but not written back out: PostgreSQL gives up
		// past 1 GB ("out of memory: Cannot enlarge string buffer").
		{"numbers written out past the limit", raw(`{"a":[` + strings.Repeat(`1e131071,`, 8999) + `1e131071]}`), outbox.ErrPayloadTooLarge, "is 1179657007 bytes " + written},
		{"tiny numbers written out past the limit", raw(`{"a":[` + strings.Repeat(`1e-16383,`, 99) + `1e-16383]}`), outbox.ErrPayloadTooLarge, written},

		// Stored, but encoding/json (the relay) cannot decode it back.
		{"nested too deep", nested(10001), outbox.ErrInvalidPayload, depth},
		{"arrays nested too deep", map[string]any{"a": raw(strings.Repeat("[", 10000) + strings.Repeat("]", 10000))}, outbox.ErrInvalidPayload, depth},

		// PostgreSQL: `invalid byte sequence for encoding "UTF8": 0xff`.
		{"invalid UTF-8 from a json.RawMessage", map[string]any{"a": raw("\"\xff\"")}, outbox.ErrInvalidPayload, utf8},
		{"UTF-8 surrogate from MarshalJSON", marshalsTo("{\"a\":\"\xed\xa0\x80\"}"), outbox.ErrInvalidPayload, utf8},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tx, err := b.pool.Begin(b.ctx)
			require.NoError(t, err)
			defer tx.Rollback(b.ctx)

			_, err = outbox.Append(b.ctx, tx, params("org", tt.payload))
			require.ErrorIs(t, err, tt.sentinel)
			var verr *outbox.ValidationError
			require.ErrorAs(t, err, &verr)
			require.Equal(t, "Payload", verr.Field)
			require.Equal(t, -1, verr.Index)
			require.Contains(t, verr.Rule, tt.rule)
			require.Contains(t, err.Error(), "Payload: ")

			batch := []outbox.AppendParams{params("ok", map[string]any{}), params("ok", map[string]any{}), params("org", tt.payload)}
			_, err = outbox.AppendBatch(b.ctx, tx, batch)
			require.ErrorIs(t, err, tt.sentinel)
			require.ErrorAs(t, err, &verr)
			require.Equal(t, "Payload", verr.Field)
			require.Equal(t, 2, verr.Index)
			require.Contains(t, verr.Rule, tt.rule)
			require.Contains(t, err.Error(), "batch element 2: Payload: ")

			// No SQL ran: the transaction is still usable and nothing was
			// written, even though the caller commits.
			require.NoError(t, tx.Commit(b.ctx))
			require.Equal(t, 0, b.countEvents(t, ""))
		})
	}
}

func TestAppendStoresPayloadsAtJSONBLimits(t *testing.T) {
	t.Parallel()
	b := setup(t)

	raw := func(s string) json.RawMessage { return json.RawMessage(s) }
	tests := []struct {
		name    string
		payload any
		// check is a boolean SQL expression on the stored payload p.
		check string
	}{
		{"surrogate pair", raw(`{"a":"\ud83d\ude00"}`), `p->>'a' = '😀'`},
		{"surrogate pair, upper case", raw(`{"a":"\uD800\uDC00"}`), `p->>'a' = U&'\+010000'`},
		{"escaped backslash before u", raw(`{"a":"\\ud800 \\\\u0000"}`), `p->>'a' = '\ud800 \\u0000'`},
		{"noncharacters", raw(`{"a":"\uffff\ufffe"}`), `p->>'a' = U&'\FFFF\FFFE'`},
		{"leading digit at 10^131071", raw(`{"a":9.99e131071}`), `length(p->>'a') = 131072`},
		{"131072 digits", raw(`{"a":-` + strings.Repeat("9", 131072) + `}`), `length(p->>'a') = 131073`},
		{"10^131071 written 0.001e131074", raw(`{"a":0.001e131074}`), `length(p->>'a') = 131072`},
		{"10^-16383", raw(`{"a":1e-16383}`), `length(p->>'a') = 16385`},
		{"scale 16383 with a fraction", raw(`{"a":1.5e-16382}`), `length(p->>'a') = 16385`},
		{"16383 digits after the point", raw(`{"a":0.` + strings.Repeat("1", 16383) + `}`), `length(p->>'a') = 16385`},
		{"zero with a large exponent", raw(`{"a":0e1073741822,"b":-0.0e16384}`), `p->'a' = '0' AND p->'b' = '0'`},
		{"extreme float64s", map[string]any{"min": 5e-324, "max": -1.7976931348623157e308}, `length(p->>'min') = 326 AND length(p->>'max') = 310`},
		{"json.Number 1e400", map[string]any{"n": json.Number("1e400")}, `length(p->>'n') = 401`},
		{"big.Int 10^131071", map[string]any{"n": tenTo(131071)}, `length(p->>'n') = 131072`},
		{"nested 10000 deep", nested(10000), `p #> '{a,a,a,a}' IS NOT NULL`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tx, err := b.pool.Begin(b.ctx)
			require.NoError(t, err)
			defer tx.Rollback(b.ctx)

			res, err := outbox.Append(b.ctx, tx, params("org", tt.payload))
			require.NoError(t, err)
			batch, err := outbox.AppendBatch(b.ctx, tx, []outbox.AppendParams{params("org", map[string]any{}), params("org", tt.payload)})
			require.NoError(t, err)
			var batchID int64
			require.NoError(t, tx.QueryRow(b.ctx, "SELECT id FROM outbox_events WHERE event_id = $1", batch.EventIDs[1]).Scan(&batchID))

			for _, id := range []int64{res.ID, batchID} {
				var (
					ok   bool
					text string
				)
				err := tx.QueryRow(b.ctx, "SELECT "+tt.check+", p::text FROM (SELECT payload AS p FROM outbox_events WHERE id = $1) e", id).Scan(&ok, &text)
				require.NoError(t, err)
				require.True(t, ok, "stored %.300s", text)
				// The relay decodes what PostgreSQL gives back.
				var top map[string]json.RawMessage
				require.NoError(t, json.Unmarshal([]byte(text), &top))
			}
		})
	}
}

// The size limit applies to the payload as jsonb writes it back: the relay
// sends that text to Svix.
func TestAppendLimitsPayloadAsWrittenBack(t *testing.T) {
	t.Parallel()
	b := setup(t)

	payload := json.RawMessage(`{"a":1e100}`) // 11 bytes, written back as {"a": 1 and 100 zeros}
	p, err := outbox.NewProducer(outbox.Config{MaxPayloadBytes: 106})
	require.NoError(t, err)
	_, err = p.Append(b.ctx, b.pool, params("org", payload))
	require.ErrorIs(t, err, outbox.ErrPayloadTooLarge)
	var verr *outbox.ValidationError
	require.ErrorAs(t, err, &verr)
	require.Equal(t, "Payload", verr.Field)
	require.Contains(t, verr.Rule, "is 107 bytes once PostgreSQL's jsonb writes its numbers out in full, over the limit of 106")
	_, err = p.AppendBatch(b.ctx, b.pool, []outbox.AppendParams{params("org", payload)})
	require.ErrorIs(t, err, outbox.ErrPayloadTooLarge)
	require.Equal(t, 0, b.countEvents(t, ""))

	p, err = outbox.NewProducer(outbox.Config{MaxPayloadBytes: 107})
	require.NoError(t, err)
	res, err := p.Append(b.ctx, b.pool, params("org", payload))
	require.NoError(t, err)
	var text string
	require.NoError(t, b.pool.QueryRow(b.ctx, "SELECT payload::text FROM outbox_events WHERE id = $1", res.ID).Scan(&text))
	require.Equal(t, `{"a": 1`+strings.Repeat("0", 100)+`}`, text)
}

// stubDB answers Append's insert without a server, so the benchmark
// measures validation (and marshalling) alone.
type stubDB struct{}

func (stubDB) Exec(context.Context, string, ...any) (pgconn.CommandTag, error) {
	return pgconn.CommandTag{}, nil
}
func (stubDB) Query(context.Context, string, ...any) (pgx.Rows, error) { return nil, nil }
func (stubDB) QueryRow(context.Context, string, ...any) pgx.Row        { return stubRow{} }

type stubRow struct{}

func (stubRow) Scan(dest ...any) error {
	*dest[0].(*int64) = 1
	return nil
}

// BenchmarkAppendValidation measures what Append does before its one round
// trip, for a small marshalled payload and raw payloads of two sizes.
func BenchmarkAppendValidation(b *testing.B) {
	small := map[string]any{
		"id": 42, "actor": "user_2f1c9a7e4b", "action": "document.updated", "resource": "doc_8d1e0c33a9b74f21",
		"at": "2026-11-27T08:00:00Z", "user_agent": "Mozilla/5.0 (X11; Linux x86_64) Gecko/20100101 Firefox/128.0",
		"tags": []string{"audit", "docs", "write"},
	}
	smallRaw, _ := json.Marshal(small)
	var items []map[string]any
	for i := range 250 {
		items = append(items, map[string]any{"id": i, "price": 12.5, "name": "item name with \"quotes\" and é", "tags": []string{"a", "b"}})
	}
	bigRaw, _ := json.Marshal(map[string]any{"items": items})
	for _, bc := range []struct {
		name    string
		payload any
	}{
		{"marshalled", small},
		{"raw", json.RawMessage(smallRaw)},
		{"raw_" + strconv.Itoa(len(bigRaw)) + "B", json.RawMessage(bigRaw)},
	} {
		b.Run(bc.name, func(b *testing.B) {
			ctx := context.Background()
			p := params("org", bc.payload)
			b.ReportAllocs()
			for b.Loop() {
				if _, err := outbox.Append(ctx, stubDB{}, p); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
