package eventtypes

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/outboxrelay/outbox"
)

// OpenAPIInfo is the info object of the document OpenAPI writes.
type OpenAPIInfo struct {
	// Title defaults to "Webhooks".
	Title string
	// Version is the document's version. Defaults to "1".
	Version string
	// Description is shown above the webhooks. Defaults to none.
	Description string
}

// OpenAPI writes catalog as an OpenAPI 3.1 document whose webhooks are its
// event types: for each, the POST Svix makes to the customer's endpoint,
// its body the event's payload as the catalog's JSON Schema describes it.
// The schemas' $defs become components/schemas (a name two schemas define
// differently is suffixed with the event type).
func OpenAPI(catalog *outbox.Catalog, info OpenAPIInfo) ([]byte, error) {
	if info.Title == "" {
		info.Title = "Webhooks"
	}
	if info.Version == "" {
		info.Version = "1"
	}
	components := map[string]any{}
	webhooks := map[string]any{}
	for _, spec := range catalog.Specs() {
		schema, err := decodeSchema(spec)
		if err != nil {
			return nil, err
		}
		schema = hoist(schema, string(spec.Name), components)
		op := map[string]any{
			"operationId": string(spec.Name),
			"summary":     string(spec.Name),
			"description": spec.Description,
			"requestBody": map[string]any{
				"required": true,
				"content":  map[string]any{"application/json": map[string]any{"schema": schema}},
			},
			"responses": map[string]any{
				"2XX": map[string]any{"description": "Any 2xx status tells Svix the webhook was received; anything else is retried."},
			},
			"x-svix-schema-version": spec.SchemaVersion,
		}
		if spec.Group != "" {
			op["tags"] = []string{spec.Group}
		}
		if spec.Deprecated {
			op["deprecated"] = true
		}
		webhooks[string(spec.Name)] = map[string]any{"post": op}
	}
	infoObj := map[string]any{"title": info.Title, "version": info.Version}
	if info.Description != "" {
		infoObj["description"] = info.Description
	}
	doc := map[string]any{
		"openapi":           "3.1.0",
		"info":              infoObj,
		"jsonSchemaDialect": "https://json-schema.org/draft/2020-12/schema",
		"webhooks":          webhooks,
	}
	if len(components) > 0 {
		doc["components"] = map[string]any{"schemas": components}
	}
	return json.MarshalIndent(doc, "", "  ")
}

// hoist moves schema's $defs into components and points its $refs there.
func hoist(schema map[string]any, event string, components map[string]any) map[string]any {
	defs, _ := schema["$defs"].(map[string]any)
	delete(schema, "$defs")
	delete(schema, "$schema")
	renamed := map[string]string{}
	for name, def := range defs {
		target := name
		if prev, ok := components[name]; ok && !sameJSON(prev, def) {
			target = name + "_" + strings.NewReplacer(".", "_", "-", "_").Replace(event)
		}
		renamed[name] = target
	}
	rewrite := func(v any) any { return rewriteRefs(v, renamed) }
	for name, def := range defs {
		components[renamed[name]] = rewrite(def)
	}
	return rewrite(schema).(map[string]any)
}

// rewriteRefs returns v with every "#/$defs/X" $ref pointing at
// components/schemas.
func rewriteRefs(v any, renamed map[string]string) any {
	switch x := v.(type) {
	case map[string]any:
		out := make(map[string]any, len(x))
		for k, e := range x {
			if ref, ok := e.(string); ok && k == "$ref" && strings.HasPrefix(ref, "#/$defs/") {
				name := strings.TrimPrefix(ref, "#/$defs/")
				if to, ok := renamed[name]; ok {
					name = to
				}
				out[k] = "#/components/schemas/" + name
				continue
			}
			out[k] = rewriteRefs(e, renamed)
		}
		return out
	case []any:
		out := make([]any, len(x))
		for i, e := range x {
			out[i] = rewriteRefs(e, renamed)
		}
		return out
	}
	return v
}

// WriteSchemas writes one JSON Schema file per event type into dir,
// created if needed: <event type>.v<schema version>.schema.json. It
// returns the files' paths.
func WriteSchemas(dir string, catalog *outbox.Catalog) ([]string, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("eventtypes: %w", err)
	}
	var paths []string
	for _, spec := range catalog.Specs() {
		raw, err := SchemaOf(spec)
		if err != nil {
			return paths, err
		}
		var pretty any
		if err := json.Unmarshal(raw, &pretty); err != nil {
			return paths, fmt.Errorf("eventtypes: the schema of %s: %w", spec.Name, err)
		}
		obj, _ := pretty.(map[string]any)
		if obj != nil {
			if _, ok := obj["title"]; !ok {
				obj["title"] = string(spec.Name)
			}
			if _, ok := obj["description"]; !ok {
				obj["description"] = spec.Description
			}
		}
		data, err := json.MarshalIndent(pretty, "", "  ")
		if err != nil {
			return paths, fmt.Errorf("eventtypes: %w", err)
		}
		path := filepath.Join(dir, string(spec.Name)+".v"+spec.SchemaVersion+".schema.json")
		if err := os.WriteFile(path, append(data, '\n'), 0o644); err != nil {
			return paths, fmt.Errorf("eventtypes: %w", err)
		}
		paths = append(paths, path)
	}
	return paths, nil
}
