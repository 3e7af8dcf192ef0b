package eventtypes

import (
	"bytes"
	"encoding/json"
	"fmt"

	"github.com/outboxrelay/outbox"
)

// catalogFile is a catalog file: what MarshalCatalog writes and
// `outbox event-types` reads.
type catalogFile struct {
	EventTypes []fileEventType `json:"eventTypes"`
}

// fileEventType is one outbox.EventTypeSpec in a catalog file, its
// JSONSchema under "schema".
type fileEventType struct {
	Name          outbox.EventType `json:"name"`
	Description   string           `json:"description"`
	Group         string           `json:"group,omitempty"`
	SchemaVersion string           `json:"schemaVersion"`
	Deprecated    bool             `json:"deprecated,omitempty"`
	Schema        json.RawMessage  `json:"schema"`
}

// MarshalCatalog writes catalog as a catalog file, the JSON document
// `outbox event-types sync|export --catalog FILE` reads (that command
// cannot see a service's Go types): {"eventTypes": [{"name", "description",
// "group", "schemaVersion", "deprecated", "schema"}, ...]}, by name,
// indented, each schema generated as SchemaOf does. Write it from the
// program (or a test, or a go:generate step) that defines the event types:
//
//	data, err := eventtypes.MarshalCatalog(outbox.DefaultCatalog)
//
// The error is the first schema that cannot be generated; it wraps
// outbox.ErrInvalidEventDefinition.
func MarshalCatalog(catalog *outbox.Catalog) ([]byte, error) {
	f := catalogFile{EventTypes: []fileEventType{}}
	for _, spec := range catalog.Specs() {
		schema, err := SchemaOf(spec)
		if err != nil {
			return nil, err
		}
		f.EventTypes = append(f.EventTypes, fileEventType{Name: spec.Name, Description: spec.Description, Group: spec.Group,
			SchemaVersion: spec.SchemaVersion, Deprecated: spec.Deprecated, Schema: schema})
	}
	data, err := json.MarshalIndent(f, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("eventtypes: catalog: %w", err)
	}
	return append(data, '\n'), nil
}

// UnmarshalCatalog reads a catalog file (see MarshalCatalog) into a new
// catalog, each event type added with outbox.Catalog.Add and its schema as
// its JSONSchema. It refuses unknown fields; a bad event type's error
// wraps outbox.ErrInvalidEventDefinition.
func UnmarshalCatalog(data []byte) (*outbox.Catalog, error) {
	var f catalogFile
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&f); err != nil {
		return nil, fmt.Errorf("eventtypes: catalog: %w", err)
	}
	c := outbox.NewCatalog()
	for i, et := range f.EventTypes {
		spec := outbox.EventTypeSpec{Name: et.Name, EventTypeInfo: outbox.EventTypeInfo{Description: et.Description,
			Group: et.Group, SchemaVersion: et.SchemaVersion, Deprecated: et.Deprecated}, JSONSchema: et.Schema}
		if spec.JSONSchema == nil {
			spec.JSONSchema = json.RawMessage{} // absent: refused by Add as not a schema, not as "no PayloadType"
		}
		if err := c.Add(spec); err != nil {
			return nil, fmt.Errorf("eventtypes: catalog: eventTypes[%d]: %w", i, err)
		}
	}
	return c, nil
}
