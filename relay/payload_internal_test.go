package relay

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// decodeWithEncodingJSON is what decodePayload must return: encoding/json's
// decoding of the top level into raw members.
func decodeWithEncodingJSON(raw []byte) (map[string]any, error) {
	var top map[string]json.RawMessage
	if err := json.Unmarshal(raw, &top); err != nil {
		return nil, err
	}
	if top == nil {
		return nil, nil
	}
	m := make(map[string]any, len(top))
	for k, v := range top {
		m[k] = v
	}
	return m, nil
}

// requireSameAsEncodingJSON checks decodePayload against encoding/json on
// raw, and that the split is what the SDK sends unchanged.
func requireSameAsEncodingJSON(t *testing.T, raw []byte) {
	t.Helper()
	want, wantErr := decodeWithEncodingJSON(raw)
	_, split := splitObject(raw)
	require.Equal(t, wantErr == nil && want != nil, split, "every JSON object takes the split, nothing else does: %q", raw)
	got, err := decodePayload(raw)
	if wantErr != nil || want == nil {
		require.Error(t, err, "%q", raw)
		return
	}
	require.NoError(t, err, "%q", raw)
	require.Equal(t, want, got, "%q", raw)
	wantOut, err := json.Marshal(want)
	require.NoError(t, err)
	gotOut, err := json.Marshal(got)
	require.NoError(t, err)
	require.Equal(t, string(wantOut), string(gotOut), "what the SDK sends, for %q", raw)
}

func TestDecodePayloadIsEncodingJSONs(t *testing.T) {
	t.Parallel()
	for _, raw := range []string{
		// What PostgreSQL's jsonb gives back.
		`{"id": 12345, "ip": "203.0.113.42", "tags": ["audit", "docs"], "actor": "user_2f1c9a7e4b"}`,
		`{}`,
		` { } `,
		`{"a": {"b": [1, {"c": "}]{["}, "\"", null]}, "d": -1.5e10, "e": true, "f": false, "g": null}`,
		`{"quote \" key": 1, "\u00e9": "\u00e9\ud83d\ude00", "tab\t": "x\\"}`,
		`{"é": "ünïcödé", "": ""}`,
		"{\"a\"\n:\t1\r,\"b\" : [ ] }",
		`{"dup": 1, "dup": 2}`,
		`{"bad\udc00surrogate": 1}`,
		"{\"invalid \xff utf-8\": 1}",
		// Not objects, or not JSON: errors, as encoding/json gives them.
		`null`, `[]`, `"s"`, `1`, `true`, ``, `{`, `{"a"}`, `{"a": }`, `{"a": 1,}`, `{"a": 1} x`,
		`{"a": [1, 2}`, `{"a": "unterminated}`, `{a: 1}`, `{"a": 01}`, `{"a": tru}`,
		"\ufeff{\"bom\": 1}",
		nested(9999), // as deep as encoding/json goes
		nested(10000),
	} {
		t.Run(raw[:min(len(raw), 60)], func(t *testing.T) {
			t.Parallel()
			requireSameAsEncodingJSON(t, []byte(raw))
		})
	}
}

// nested is an object whose member holds arrays nested depth deep.
func nested(depth int) string {
	return `{"deep": ` + strings.Repeat("[", depth) + strings.Repeat("]", depth) + `}`
}

// The values are slices of the payload that cannot grow into it.
func TestDecodePayloadValuesAreBounded(t *testing.T) {
	t.Parallel()
	raw := []byte(`{"a": "x", "b": [1]}`)
	m, err := decodePayload(raw)
	require.NoError(t, err)
	a := m["a"].(json.RawMessage)
	require.Equal(t, len(a), cap(a))
	_ = append(a, 'z')
	require.Equal(t, `{"a": "x", "b": [1]}`, string(raw))
}

func FuzzDecodePayload(f *testing.F) {
	for _, seed := range []string{
		`{"id": 12345, "tags": ["audit", "docs"], "nested": {"a": [1, "]"]}}`,
		`{"\u00e9\"": "\\", "x": null}`, `{}`, `[]`, `null`, `{"a": 1,}`,
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		requireSameAsEncodingJSON(t, raw)
		// The same bytes as a member's value and as its name, so that
		// most inputs reach the split, not only those that are objects.
		requireSameAsEncodingJSON(t, []byte(`{"k": `+string(raw)+`}`))
		requireSameAsEncodingJSON(t, []byte(`{"`+string(raw)+`": 1}`))
	})
}

// BenchmarkDecodePayload decodes the relay benchmarks' payload, as
// PostgreSQL's jsonb gives it back: with the split (decodePayload) and with
// encoding/json's decoder, which it replaced.
func BenchmarkDecodePayload(b *testing.B) {
	raw := []byte(`{"id": 12345, "ip": "203.0.113.42", "tags": ["audit", "docs"], "actor": "user_2f1c9a7e4b", "action": "document.updated", "resource": "doc_8d1e0c33a9b74f21"}`)
	b.Run("split", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := decodePayload(raw); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("encoding_json", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := decodeWithEncodingJSON(raw); err != nil {
				b.Fatal(err)
			}
		}
	})
}
