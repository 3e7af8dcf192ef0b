package eventtypes_test

import (
	"encoding/json"
	"flag"
	"math/rand"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"testing"
	"testing/quick"
	"time"

	"github.com/google/uuid"
	"github.com/invopop/jsonschema"
	"github.com/stretchr/testify/require"

	"github.com/outboxrelay/outbox"
	"github.com/outboxrelay/outbox/eventtypes"
)

var updateGolden = flag.Bool("update", false, "rewrite testdata/schemas from the generator")

// Flat is every scalar, renamed, omitted and skipped field.
type Flat struct {
	Name    string  `json:"name"`
	Count   int     `json:"count"`
	Ratio   float64 `json:"ratio"`
	On      bool    `json:"on"`
	Nick    string  `json:"nick,omitempty"`
	Ignored string  `json:"-"`
	NoTag   uint8
}

// Invoice is nested types, pointers, slices, maps, times and an enum.
type Invoice struct {
	ID       string            `json:"id"`
	Status   string            `json:"status" jsonschema:"enum=draft,enum=open,enum=paid"`
	Customer *Customer         `json:"customer"`
	Lines    []Line            `json:"lines"`
	Labels   map[string]string `json:"labels"`
	PaidAt   *time.Time        `json:"paidAt,omitempty"`
	IssuedAt time.Time         `json:"issuedAt"`
	Raw      []byte            `json:"raw,omitempty"`
	Ref      uuid.UUID         `json:"ref"`
	IP       netip.Addr        `json:"ip"`
	Extra    json.RawMessage   `json:"extra,omitempty"`
}

// Customer is a nested struct.
type Customer struct {
	ID    string `json:"id"`
	Email string `json:"email,omitempty"`
}

// Line is a nested struct in a slice.
type Line struct {
	SKU      string `json:"sku"`
	Quantity int    `json:"quantity" jsonschema:"minimum=1"`
}

// Folder is a recursive type with an embedded struct.
type Folder struct {
	Base
	Name     string    `json:"name"`
	Children []*Folder `json:"children,omitempty"`
}

// Base is embedded, its fields flattened.
type Base struct {
	ID      string    `json:"id"`
	Created time.Time `json:"created"`
}

// Level is an enum given by the hook.
type Level string

// JSONSchemaExtend is the generator's hook: Level's values.
func (Level) JSONSchemaExtend(s *jsonschema.Schema) { s.Enum = []any{"low", "high"} }

// Alert uses a type with a hook.
type Alert struct {
	Level Level  `json:"level"`
	Text  string `json:"text"`
}

func golden(t *testing.T, name string, got json.RawMessage) {
	t.Helper()
	path := filepath.Join("testdata", "schemas", name+".json")
	var pretty any
	require.NoError(t, json.Unmarshal(got, &pretty))
	want, err := json.MarshalIndent(pretty, "", "  ")
	require.NoError(t, err)
	want = append(want, '\n')
	if *updateGolden {
		require.NoError(t, os.WriteFile(path, want, 0o644))
	}
	have, err := os.ReadFile(path)
	require.NoError(t, err, "run go test -run TestSchemaGolden -update ./eventtypes to create it")
	require.Equal(t, string(have), string(want), "schema of %s changed: check it, then go test -run TestSchemaGolden -update ./eventtypes", name)
}

// The generated schemas of representative types are the ones checked in.
func TestSchemaGolden(t *testing.T) {
	t.Parallel()
	for name, schema := range map[string]func() (json.RawMessage, error){
		"flat":    eventtypes.SchemaFor[Flat],
		"invoice": eventtypes.SchemaFor[Invoice],
		"folder":  eventtypes.SchemaFor[Folder],
		"alert":   eventtypes.SchemaFor[Alert],
		"map":     eventtypes.SchemaFor[map[string]int],
	} {
		got, err := schema()
		require.NoError(t, err, name)
		golden(t, name, got)
	}
	_, err := eventtypes.SchemaFor[string]()
	require.EqualError(t, err, `eventtypes: the schema of string: a payload must be a JSON object (a struct or a map with string keys), and string is "string": invalid event definition`)
	require.ErrorIs(t, err, outbox.ErrInvalidEventDefinition)
	_, err = eventtypes.SchemaFor[json.RawMessage]()
	require.ErrorContains(t, err, "marshals itself")
}

// A generated schema accepts whatever its type marshals to: random values
// of each type (testing/quick, through the Generate methods below, which
// pick nil pointers, slices and maps as often as full ones), validated by
// the catalog's Validator.
func TestSchemaAcceptsWhatItsTypeMarshals(t *testing.T) {
	t.Parallel()
	c := outbox.NewCatalog()
	validator := eventtypes.NewValidator(c)
	outbox.DefineEventIn[Flat](c, "flat", outbox.EventTypeInfo{Description: "d"})
	outbox.DefineEventIn[Invoice](c, "invoice", outbox.EventTypeInfo{Description: "d"})
	outbox.DefineEventIn[Folder](c, "folder", outbox.EventTypeInfo{Description: "d"})
	outbox.DefineEventIn[Alert](c, "alert", outbox.EventTypeInfo{Description: "d"})
	accepts := func(name outbox.EventType) func(v any) bool {
		return func(v any) bool {
			data, err := json.Marshal(v)
			require.NoError(t, err)
			if err := validator.ValidatePayload(name, data); err != nil {
				t.Logf("%s: %s\n%s", name, err, data)
				return false
			}
			return true
		}
	}
	cfg := &quick.Config{MaxCount: 500}
	require.NoError(t, quick.Check(func(v Flat) bool { return accepts("flat")(v) }, cfg))
	require.NoError(t, quick.Check(func(v Invoice) bool { return accepts("invoice")(v) }, cfg))
	require.NoError(t, quick.Check(func(v Folder) bool { return accepts("folder")(v) }, cfg))
	require.NoError(t, quick.Check(func(v Alert) bool { return accepts("alert")(v) }, cfg))
}

func randomString(r *rand.Rand) string {
	v, _ := quick.Value(reflect.TypeFor[string](), r)
	return v.String()
}

func randomTime(r *rand.Rand) time.Time {
	return time.Unix(r.Int63n(4e9), r.Int63n(1e9)).In(time.FixedZone("", (r.Intn(48)-24)*1800))
}

// Generate is a random Flat.
func (Flat) Generate(r *rand.Rand, _ int) reflect.Value {
	return reflect.ValueOf(Flat{Name: randomString(r), Count: r.Int() - r.Int(), Ratio: r.NormFloat64() * 1e6, On: r.Intn(2) == 1,
		Nick: []string{"", "n"}[r.Intn(2)], Ignored: randomString(r), NoTag: uint8(r.Intn(256))})
}

// Generate is a random Invoice: any status of the enum, nil or full
// pointers, slices and maps, quantities of at least 1.
func (Invoice) Generate(r *rand.Rand, _ int) reflect.Value {
	inv := Invoice{ID: randomString(r), Status: []string{"draft", "open", "paid"}[r.Intn(3)], IssuedAt: randomTime(r)}
	if r.Intn(2) == 0 {
		inv.Customer = &Customer{ID: randomString(r), Email: []string{"", "a@b.c"}[r.Intn(2)]}
	}
	if r.Intn(3) > 0 {
		inv.Lines = []Line{}
		for range r.Intn(4) {
			inv.Lines = append(inv.Lines, Line{SKU: randomString(r), Quantity: 1 + r.Intn(100)})
		}
	}
	if r.Intn(3) > 0 {
		inv.Labels = map[string]string{}
		for range r.Intn(3) {
			inv.Labels[randomString(r)] = randomString(r)
		}
	}
	if r.Intn(2) == 0 {
		at := randomTime(r)
		inv.PaidAt = &at
	}
	if r.Intn(2) == 0 {
		inv.Raw = []byte(randomString(r))
	}
	_, _ = r.Read(inv.Ref[:])
	if r.Intn(2) == 0 {
		inv.IP = netip.AddrFrom4([4]byte{10, byte(r.Intn(256)), 0, 1})
	}
	if r.Intn(2) == 0 {
		inv.Extra = json.RawMessage(`{"any":[1,"thing"]}`)
	}
	return reflect.ValueOf(inv)
}

// Generate is a random tree of folders.
func (Folder) Generate(r *rand.Rand, _ int) reflect.Value {
	return reflect.ValueOf(randomFolder(r, 3))
}

func randomFolder(r *rand.Rand, depth int) Folder {
	f := Folder{Base: Base{ID: randomString(r), Created: randomTime(r)}, Name: randomString(r)}
	for range r.Intn(depth + 1) {
		if depth > 0 {
			c := randomFolder(r, depth-1)
			f.Children = append(f.Children, &c)
		}
	}
	return f
}

// Generate is a random Alert of a level the hook allows.
func (Alert) Generate(r *rand.Rand, _ int) reflect.Value {
	return reflect.ValueOf(Alert{Level: []Level{"low", "high"}[r.Intn(2)], Text: randomString(r)})
}

// A generated schema refuses what its type never marshals to.
func TestSchemaRefusesWrongPayloads(t *testing.T) {
	t.Parallel()
	c := outbox.NewCatalog()
	outbox.DefineEventIn[Invoice](c, "invoice", outbox.EventTypeInfo{Description: "d"})
	outbox.DefineEventIn[Folder](c, "folder", outbox.EventTypeInfo{Description: "d"})
	v := eventtypes.NewValidator(c)
	good := `{"id":"i","status":"open","customer":{"id":"c"},"lines":[{"sku":"s","quantity":2}],"labels":{},"ref":"r","ip":"10.0.0.1","issuedAt":"2026-12-01T00:00:00Z"}`
	require.NoError(t, v.ValidatePayload("invoice", []byte(good)))
	for _, bad := range []string{
		`{"status":"open","customer":null,"lines":null,"labels":null,"ref":"r","ip":"10.0.0.1","issuedAt":"2026-12-01T00:00:00Z"}`,                                // id missing
		`{"id":"i","status":"void","customer":null,"lines":null,"labels":null,"ref":"r","ip":"10.0.0.1","issuedAt":"2026-12-01T00:00:00Z"}`,                       // not in the enum
		`{"id":"i","status":"open","customer":{"id":1},"lines":null,"labels":null,"ref":"r","ip":"10.0.0.1","issuedAt":"2026-12-01T00:00:00Z"}`,                   // nested type
		`{"id":"i","status":"open","customer":null,"lines":[{"sku":"s","quantity":0}],"labels":null,"ref":"r","ip":"10.0.0.1","issuedAt":"2026-12-01T00:00:00Z"}`, // minimum
		`{"id":"i","status":"open","customer":null,"lines":null,"labels":{"a":1},"ref":"r","ip":"10.0.0.1","issuedAt":"2026-12-01T00:00:00Z"}`,                    // map values
		`{"id":"i","status":"open","customer":null,"lines":null,"labels":null,"ref":"r","ip":"10.0.0.1","issuedAt":"soon"}`,                                       // date-time
		`{"id":"i","status":"open","customer":null,"lines":null,"labels":null,"ref":"r","ip":"10.0.0.1","issuedAt":"2026-12-01T00:00:00Z","paidAt":null}`,         // omitempty pointer: never null
	} {
		require.ErrorIs(t, v.ValidatePayload("invoice", []byte(bad)), outbox.ErrInvalidPayload, bad)
	}
	require.ErrorIs(t, v.ValidatePayload("folder", []byte(`{"id":"f","created":"2026-12-01T00:00:00Z","name":"n","children":[{"name":"x"}]}`)),
		outbox.ErrInvalidPayload, "a recursive child is checked too")
	require.NoError(t, v.ValidatePayload("not.defined", []byte(`{"anything":1}`)))
}
