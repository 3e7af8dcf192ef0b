package eventtypes_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/outboxrelay/outbox"
	"github.com/outboxrelay/outbox/eventtypes"
)

type customer struct {
	ID string `json:"id"`
}

type order struct {
	ID       string   `json:"id"`
	Customer customer `json:"customer"`
	Parent   *order   `json:"parent,omitempty"`
}

type refund struct {
	Customer customer `json:"customer"`
}

// The OpenAPI document has one webhook per event type, its body the
// payload's schema, every $ref resolving inside the document.
func TestOpenAPI(t *testing.T) {
	t.Parallel()
	c := outbox.NewCatalog()
	outbox.DefineEventIn[order](c, "order.created", outbox.EventTypeInfo{Description: "An order was placed.", Group: "order"})
	outbox.DefineEventIn[refund](c, "order.refunded", outbox.EventTypeInfo{Description: "An order was refunded.", Deprecated: true})
	data, err := eventtypes.OpenAPI(c, eventtypes.OpenAPIInfo{Title: "Acme webhooks"})
	require.NoError(t, err)
	var doc map[string]any
	require.NoError(t, json.Unmarshal(data, &doc))
	require.Equal(t, "3.1.0", doc["openapi"])
	require.Equal(t, "Acme webhooks", doc["info"].(map[string]any)["title"])
	hooks := doc["webhooks"].(map[string]any)
	require.Len(t, hooks, 2)
	post := hooks["order.created"].(map[string]any)["post"].(map[string]any)
	require.Equal(t, "An order was placed.", post["description"])
	require.Equal(t, []any{"order"}, post["tags"])
	require.Equal(t, true, hooks["order.refunded"].(map[string]any)["post"].(map[string]any)["deprecated"])
	schema := post["requestBody"].(map[string]any)["content"].(map[string]any)["application/json"].(map[string]any)["schema"].(map[string]any)
	require.Equal(t, "object", schema["type"])
	require.NotContains(t, schema, "$defs")

	components := doc["components"].(map[string]any)["schemas"].(map[string]any)
	refs := 0
	var walk func(v any)
	walk = func(v any) {
		switch x := v.(type) {
		case map[string]any:
			if ref, ok := x["$ref"].(string); ok {
				refs++
				require.True(t, strings.HasPrefix(ref, "#/components/schemas/"), ref)
				require.Contains(t, components, strings.TrimPrefix(ref, "#/components/schemas/"), "%s resolves", ref)
			}
			for _, e := range x {
				walk(e)
			}
		case []any:
			for _, e := range x {
				walk(e)
			}
		}
	}
	walk(doc)
	require.Positive(t, refs)
}

// One schema file per event type and version.
func TestWriteSchemas(t *testing.T) {
	t.Parallel()
	c := outbox.NewCatalog()
	outbox.DefineEventIn[order](c, "order.created", outbox.EventTypeInfo{Description: "An order was placed."})
	outbox.DefineEventIn[refund](c, "order.refunded", outbox.EventTypeInfo{Description: "An order was refunded.", SchemaVersion: "2"})
	dir := t.TempDir()
	paths, err := eventtypes.WriteSchemas(filepath.Join(dir, "schemas"), c)
	require.NoError(t, err)
	require.Equal(t, []string{filepath.Join(dir, "schemas", "order.created.v1.schema.json"), filepath.Join(dir, "schemas", "order.refunded.v2.schema.json")}, paths)
	data, err := os.ReadFile(paths[0])
	require.NoError(t, err)
	var schema map[string]any
	require.NoError(t, json.Unmarshal(data, &schema))
	require.Equal(t, "order.created", schema["title"])
	require.Equal(t, "An order was placed.", schema["description"])
	require.Equal(t, "https://json-schema.org/draft/2020-12/schema", schema["$schema"])
}
