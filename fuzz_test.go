package outbox_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/outboxrelay/outbox"
	"github.com/outboxrelay/outbox/internal/pgtest"
)

// The fuzz targets hold validation to its promise: whatever Append and
// AppendBatch accept, PostgreSQL stores and returns; whatever they refuse is
// a *ValidationError wrapping a sentinel, returned before any SQL, with
// nothing written. Any other error means validation let through something
// the database rejects.
//
// Fuzz for real with
//
//	go test -run '^$' -fuzz '^FuzzAppend$' -fuzztime 60s -fuzzminimizetime 2s .
//	go test -run '^$' -fuzz '^FuzzAppendBatch$' -fuzztime 60s -fuzzminimizetime 2s .
//
// Set OUTBOX_TEST_DATABASE_URL so the fuzz workers share one server rather
// than each starting its own. Keep -fuzzminimizetime short: every execution
// is a round trip, and minimizing a large input for the default 60s stalls
// the run.

// fuzzSeeds are payloads at the edges of what JSON, Go and PostgreSQL's
// jsonb accept.
func fuzzSeeds() [][]byte {
	seeds := []string{
		`{}`,
		`{"a":1}`,
		` {"a": {"b": null}, "c": [1, 2.5, -3e2, true, false, "x"]} `,
		`{"id":9007199254740993,"actor":"ana","tags":["a","b"]}`,
		`[1,2]`,
		`null`,
		`true`,
		`42`,
		`"str"`,
		``,
		" \t\r\n",
		`{"a":1} x`,
		`{"a":1}{}`,
		`{"a":`,
		"{\"a\":\"\xff\"}",
		"{\"a\":\"\xed\xa0\x80\"}", // a surrogate encoded as UTF-8
		"{\"\xc3\":1}",
		`{"a":"\u0000"}`,
		`{"a":"\\u0000"}`,
		`{"a":"\\\u0000"}`,
		`{"\u0000":1}`,
		`{"a":"\ud800"}`,
		`{"a":"\udc00"}`,
		`{"a":"\udc00\ud800"}`,
		`{"a":"\ud800\ud800"}`,
		`{"a":"\ud800x"}`,
		`{"a":"\ud800\n"}`,
		`{"a":"\ud83d\ude00"}`,
		`{"a":"\uD83D\uDE00"}`,
		`{"a":"\\ud800"}`,
		`{"\udfff":1}`,
		`{"a":"\uffff\ufffe\u2028"}`,
		`{"a":1e1000000}`,
		`{"a":1e131071}`,
		`{"a":1e131072}`,
		`{"a":9.99e131071}`,
		`{"a":0.001e131074}`,
		`{"a":1e-16383}`,
		`{"a":1e-16384}`,
		`{"a":1.5e-16382}`,
		`{"a":1.50e-16382}`,
		`{"a":1e-20000}`,
		`{"a":0e1073741822}`,
		`{"a":0e1073741823}`,
		`{"a":0e-16384}`,
		`{"a":-0.0e-16383}`,
		`{"a":1E+400}`,
		`{"a":-1e-400}`,
		`{"a":5e-324,"b":-1.7976931348623157e+308}`,
		`{"a":1e99999999999999999999}`,
		`{"a":1e-99999999999999999999}`,
		`{"a":[1e131071,1e131071,1e131071,1e131071,1e131071,1e131071,1e131071,1e131071,1e131071]}`,
		`{"a":` + strings.Repeat("9", 131072) + `}`,
		`{"a":` + strings.Repeat("9", 131073) + `}`,
		`{"a":0.` + strings.Repeat("1", 16383) + `}`,
		`{"a":0.` + strings.Repeat("1", 16384) + `}`,
		`{"a":` + strings.Repeat("[", 9999) + strings.Repeat("]", 9999) + `}`,
		`{"a":` + strings.Repeat("[", 10000) + strings.Repeat("]", 10000) + `}`,
		strings.Repeat(`{"a":`, 10000) + `1` + strings.Repeat(`}`, 10000),
	}
	out := make([][]byte, len(seeds))
	for i, s := range seeds {
		out[i] = []byte(s)
	}
	return out
}

// fuzzValue is what a non-raw fuzz case passes as Payload: the payload
// decoded (numbers as json.Number, so their text survives json.Marshal), or
// the text itself when it does not decode.
func fuzzValue(payload []byte) any {
	if !json.Valid(payload) {
		return string(payload)
	}
	dec := json.NewDecoder(bytes.NewReader(payload))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return string(payload)
	}
	return v
}

type fuzzDB struct {
	ctx  context.Context
	pool *pgxpool.Pool
}

func newFuzzDB(f *testing.F) *fuzzDB {
	return &fuzzDB{ctx: context.Background(), pool: pgtest.New(f).Pool}
}

func (db *fuzzDB) begin(t *testing.T) pgx.Tx {
	t.Helper()
	tx, err := db.pool.Begin(db.ctx)
	if err != nil {
		t.Fatalf("begin: %v", err)
	}
	t.Cleanup(func() { _ = tx.Rollback(db.ctx) })
	return tx
}

func countRows(t *testing.T, ctx context.Context, tx pgx.Tx) int {
	t.Helper()
	var n int
	if err := tx.QueryRow(ctx, "SELECT count(*) FROM outbox_events").Scan(&n); err != nil {
		t.Fatalf("count rows (is the transaction aborted?): %v", err)
	}
	return n
}

var sentinelOf = map[string]error{
	"OrganizationID": outbox.ErrInvalidOrganizationID,
	"EventType":      outbox.ErrInvalidEventType,
	"Payload":        outbox.ErrInvalidPayload,
}

// checkValidationError fails unless err is a *ValidationError for index
// whose sentinel fits its field.
func checkValidationError(t *testing.T, err error, index int) *outbox.ValidationError {
	t.Helper()
	var verr *outbox.ValidationError
	if !errors.As(err, &verr) {
		t.Fatalf("not a validation error (validation let through input the database refuses?): %v", err)
	}
	if verr.Index != index {
		t.Fatalf("Index = %d, want %d: %v", verr.Index, index, err)
	}
	if verr.Rule == "" || !strings.Contains(err.Error(), verr.Field) {
		t.Fatalf("error does not name its field and rule: %q", err)
	}
	want := sentinelOf[verr.Field]
	if verr.Field == "Payload" && errors.Is(err, outbox.ErrPayloadTooLarge) {
		want = outbox.ErrPayloadTooLarge
	}
	if want == nil || verr.Err != want || !errors.Is(err, want) { //nolint:errorlint // the field must hold the sentinel itself
		t.Fatalf("field %q with sentinel %v: %v", verr.Field, verr.Err, err)
	}
	return verr
}

// checkStored fails unless row id holds org, typ and a payload equal (as
// jsonb) to want, and PostgreSQL can write it back out.
func checkStored(t *testing.T, ctx context.Context, tx pgx.Tx, id int64, org, typ string, want []byte) {
	t.Helper()
	var (
		gotOrg, gotType, text string
		same                  bool
	)
	err := tx.QueryRow(ctx, "SELECT organization_id, event_type, payload::text, payload = $2::text::jsonb FROM outbox_events WHERE id = $1",
		id, string(want)).Scan(&gotOrg, &gotType, &text, &same)
	if err != nil {
		t.Fatalf("read back row %d: %v", id, err)
	}
	if gotOrg != org || gotType != typ {
		t.Fatalf("stored (%q, %q), want (%q, %q)", gotOrg, gotType, org, typ)
	}
	if !same {
		t.Fatalf("stored payload %.200q is not the JSON given, %.200q", text, want)
	}
	if !json.Valid([]byte(text)) || text == "" || text[0] != '{' {
		t.Fatalf("stored payload does not come back as a JSON object: %.200q", text)
	}
}

// checkRefusedByPostgres fails if PostgreSQL's jsonb accepts raw JSON that
// validation refused as an invalid payload although it is UTF-8, valid JSON
// and an object: such a refusal must stand for something jsonb cannot take.
func checkRefusedByPostgres(t *testing.T, ctx context.Context, tx pgx.Tx, payload []byte, verr *outbox.ValidationError) {
	t.Helper()
	trimmed := bytes.TrimLeft(payload, " \t\r\n")
	if !errors.Is(verr, outbox.ErrInvalidPayload) || !utf8.Valid(payload) || !json.Valid(payload) || len(trimmed) == 0 || trimmed[0] != '{' {
		return
	}
	sp, err := tx.Begin(ctx)
	if err != nil {
		t.Fatalf("savepoint: %v", err)
	}
	defer sp.Rollback(ctx)
	if _, err := sp.Exec(ctx, "SELECT $1::text::jsonb", string(payload)); err == nil {
		t.Fatalf("refused %.200q as %q, but PostgreSQL's jsonb accepts it", payload, verr.Rule)
	}
}

func FuzzAppend(f *testing.F) {
	for _, p := range fuzzSeeds() {
		f.Add("org-1", "audit_log.created", p, true)
		f.Add("org-1", "audit_log.created", p, false)
	}
	for _, org := range []string{"", "app_1", "app", "org:1", "org 1", "orgé", strings.Repeat("o", 256), strings.Repeat("o", 257), "a\x00b", "\xff"} {
		f.Add(org, "audit_log.created", []byte(`{}`), true)
	}
	for _, typ := range []string{"", "audit_log:created", strings.Repeat("e", 256), strings.Repeat("e", 257), "a b", "é"} {
		f.Add("org-1", typ, []byte(`{}`), false)
	}
	db := newFuzzDB(f)

	f.Fuzz(func(t *testing.T, org, typ string, payload []byte, raw bool) {
		ctx := db.ctx
		tx := db.begin(t)
		p := outbox.AppendParams{OrganizationID: org, EventType: outbox.EventType(typ)}
		var want []byte
		if raw {
			p.Payload = json.RawMessage(payload)
			want = payload
		} else {
			p.Payload = fuzzValue(payload)
			want, _ = json.Marshal(p.Payload)
		}
		res, err := outbox.Append(ctx, tx, p)
		if err != nil {
			verr := checkValidationError(t, err, -1)
			if n := countRows(t, ctx, tx); n != 0 {
				t.Fatalf("%d rows written after %v", n, err)
			}
			if raw {
				checkRefusedByPostgres(t, ctx, tx, payload, verr)
			}
			return
		}
		checkStored(t, ctx, tx, res.ID, org, typ, want)

		// The same input embedded in a marshalled value: json.Marshal copies
		// a json.RawMessage as is, so it must be checked as carefully.
		if !json.Valid(payload) {
			return
		}
		p.Payload = map[string]any{"raw": json.RawMessage(payload)}
		want, _ = json.Marshal(p.Payload)
		res, err = outbox.Append(ctx, tx, p)
		if err != nil {
			checkValidationError(t, err, -1)
			if n := countRows(t, ctx, tx); n != 1 {
				t.Fatalf("%d rows after a refused second append, want 1: %v", n, err)
			}
			return
		}
		checkStored(t, ctx, tx, res.ID, org, typ, want)
	})
}

func FuzzAppendBatch(f *testing.F) {
	for i, p := range fuzzSeeds() {
		f.Add(uint8(i), uint8(i/3), "org-1", "audit_log.created", p, i%2 == 0)
	}
	f.Add(uint8(0), uint8(0), "app_x", "audit_log.created", []byte(`{}`), true)
	f.Add(uint8(1), uint8(1), "org:1", "audit_log.created", []byte(`{}`), false)
	f.Add(uint8(2), uint8(3), "org-1", "audit_log:created", []byte(`{}`), true)
	f.Add(uint8(2), uint8(2), strings.Repeat("o", 257), "audit_log.created", []byte(`{"a":1}`), false)
	db := newFuzzDB(f)

	f.Fuzz(func(t *testing.T, size, at uint8, org, typ string, payload []byte, raw bool) {
		ctx := db.ctx
		tx := db.begin(t)
		n := 2 + int(size%3)
		at %= uint8(n)
		ps := make([]outbox.AppendParams, n)
		for i := range ps {
			ps[i] = params("org-ok", map[string]any{"i": i})
		}
		ps[at] = outbox.AppendParams{OrganizationID: org, EventType: outbox.EventType(typ)}
		var want []byte
		if raw {
			ps[at].Payload = payload
			want = payload
		} else {
			ps[at].Payload = fuzzValue(payload)
			want, _ = json.Marshal(ps[at].Payload)
		}
		res, err := outbox.AppendBatch(ctx, tx, ps)
		if err != nil {
			verr := checkValidationError(t, err, int(at))
			if got := countRows(t, ctx, tx); got != 0 {
				t.Fatalf("%d rows written after %v", got, err)
			}
			if raw {
				checkRefusedByPostgres(t, ctx, tx, payload, verr)
			}
			return
		}
		if res.Count != int64(n) || len(res.EventIDs) != n {
			t.Fatalf("Count %d, %d event ids, want %d", res.Count, len(res.EventIDs), n)
		}
		if got := countRows(t, ctx, tx); got != n {
			t.Fatalf("%d rows, want %d", got, n)
		}
		var id int64
		if err := tx.QueryRow(ctx, "SELECT id FROM outbox_events WHERE event_id = $1", res.EventIDs[at]).Scan(&id); err != nil {
			t.Fatalf("find element %d: %v", at, err)
		}
		checkStored(t, ctx, tx, id, org, typ, want)
	})
}
