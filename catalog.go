package outbox

import (
	"encoding"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/outboxrelay/outbox/internal/svixid"
)

// DefaultSchemaVersion is the schema version of an event type that names
// none: Svix keys an event type's JSON Schemas by version.
const DefaultSchemaVersion = "1"

// ErrInvalidEventDefinition is wrapped by the errors (and panics) of a bad
// event definition: a name or group Svix would refuse, no description, a
// payload type that is not a JSON object, a name defined twice.
var ErrInvalidEventDefinition = errors.New("invalid event definition")

// EventTypeInfo describes an event type to Svix and to the customers who
// read the catalog in the Svix App Portal.
type EventTypeInfo struct {
	// Description says when an event of this type is sent. Required: Svix
	// needs one, and it is what customers read.
	Description string
	// Group is the event type's group in Svix (groupName), such as
	// "audit_log": 1 to 256 characters of [a-zA-Z0-9-_.]. Defaults to none.
	Group string
	// SchemaVersion is the key of this definition's JSON Schema among the
	// event type's schemas in Svix. Defaults to DefaultSchemaVersion ("1").
	SchemaVersion string
	// Deprecated marks the event type deprecated in Svix. Defaults to false.
	Deprecated bool
}

// EventTypeSpec is one event type of a Catalog: its name, its
// EventTypeInfo, and what its payloads look like, as a JSON Schema or as
// the Go type DefineEvent bound it to. Package eventtypes turns a
// PayloadType into its JSON Schema when it needs one (eventtypes.SchemaOf).
type EventTypeSpec struct {
	// Name is the Svix event type.
	Name EventType
	// EventTypeInfo is what Svix and customers are told of it. Its
	// SchemaVersion defaults to DefaultSchemaVersion once added.
	EventTypeInfo
	// JSONSchema is the JSON Schema (draft 2020-12) of the payloads, for
	// SchemaVersion, as a catalog file holds it. Defaults to none: the
	// schema is then generated from PayloadType.
	JSONSchema json.RawMessage
	// PayloadType is the Go type of the payloads, as DefineEvent records
	// it. Defaults to none (a spec read from a catalog file); a spec needs
	// JSONSchema or PayloadType.
	PayloadType reflect.Type
}

// Catalog is a set of event definitions: the event types a service sends
// and what their payloads look like. DefineEvent adds to DefaultCatalog;
// package eventtypes syncs a catalog to Svix, exports it for customers,
// writes and reads catalog files, and validates payloads against it. A
// Catalog is safe for concurrent use; the zero Catalog is empty and ready
// to use.
type Catalog struct {
	mu    sync.RWMutex
	specs map[EventType]*catalogEntry
}

// catalogEntry is a spec and where it was defined.
type catalogEntry struct {
	spec  EventTypeSpec
	where string
}

// DefaultCatalog holds every event type defined with DefineEvent. It is a
// package-level default, as flag.CommandLine and expvar's are, because
// event definitions are package-level variables: registering as they are
// initialized is what makes a name defined twice fail when the program
// starts, whichever packages define them, rather than when an event is
// first sent. Programs that want several catalogs use NewCatalog and
// DefineEventIn.
var DefaultCatalog = NewCatalog()

// NewCatalog returns an empty catalog.
func NewCatalog() *Catalog {
	return &Catalog{specs: map[EventType]*catalogEntry{}}
}

// Add validates spec, fills in its defaults (SchemaVersion) and adds it;
// the error wraps ErrInvalidEventDefinition when spec is bad (see
// DefineEvent; a JSONSchema must be a JSON object) or its name is taken.
func (c *Catalog) Add(spec EventTypeSpec) error {
	return c.add(spec, "")
}

func (c *Catalog) add(spec EventTypeSpec, where string) error {
	if spec.SchemaVersion == "" {
		spec.SchemaVersion = DefaultSchemaVersion
	}
	if err := validateSpec(&spec); err != nil {
		return err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.specs == nil { // a zero Catalog
		c.specs = map[EventType]*catalogEntry{}
	}
	if prev, ok := c.specs[spec.Name]; ok {
		at := ""
		if prev.where != "" {
			at = " (first at " + prev.where + ")"
		}
		return fmt.Errorf("outbox: event type %q is defined twice%s: %w", spec.Name, at, ErrInvalidEventDefinition)
	}
	c.specs[spec.Name] = &catalogEntry{spec: spec, where: where}
	return nil
}

// validateSpec checks what Svix would refuse.
func validateSpec(spec *EventTypeSpec) error {
	bad := func(field, rule string) error {
		return fmt.Errorf("outbox: event type %q: %s: %s: %w", spec.Name, field, rule, ErrInvalidEventDefinition)
	}
	if err := spec.Name.validate(); err != nil {
		return bad("Name", err.Rule)
	}
	if spec.Description == "" {
		return bad("Description", "required (Svix needs one, and customers read it)")
	}
	if spec.Group != "" {
		if rule := svixid.Rule(spec.Group); rule != "" {
			return bad("Group", rule)
		}
	}
	if rule := svixid.Rule(spec.SchemaVersion); rule != "" {
		return bad("SchemaVersion", rule)
	}
	switch {
	case spec.JSONSchema != nil:
		var schema map[string]any
		if err := json.Unmarshal(spec.JSONSchema, &schema); err != nil || schema == nil {
			return bad("JSONSchema", "must be a JSON Schema object")
		}
	case spec.PayloadType != nil:
		if rule := payloadTypeRule(spec.PayloadType); rule != "" {
			return bad("PayloadType", rule)
		}
	default:
		return bad("JSONSchema", "required when PayloadType is nil")
	}
	return nil
}

var (
	jsonMarshaler = reflect.TypeFor[json.Marshaler]()
	textMarshaler = reflect.TypeFor[encoding.TextMarshaler]()
	timeType      = reflect.TypeFor[time.Time]()
)

// payloadTypeRule is the cheap check of a payload's Go type, made when it
// is defined: "" when t (through pointers) is a struct or a map that
// encoding/json writes as an object, or a type that says its own shape (a
// MarshalJSON, a JSONSchema method), which the schema generator judges
// later; else what is wrong.
func payloadTypeRule(t reflect.Type) string {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch {
	case t == timeType:
		return "must marshal to a JSON object (a struct or a map with string keys), and time.Time is a string"
	case hasSchemaHook(t) || implements(t, jsonMarshaler):
		return ""
	case implements(t, textMarshaler):
		return "must marshal to a JSON object (a struct or a map with string keys), and " + t.String() + " is a string (MarshalText)"
	case t.Kind() == reflect.Struct:
		return ""
	case t.Kind() == reflect.Map && objectKey(t.Key()):
		return ""
	}
	return "must marshal to a JSON object (a struct or a map with string keys), and " + t.String() + " is a " + kindWord(t)
}

// objectKey reports whether encoding/json writes a map with keys of type
// k as a JSON object: string and integer kinds, and TextMarshalers.
func objectKey(k reflect.Type) bool {
	switch k.Kind() {
	case reflect.String, reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr:
		return true
	}
	return implements(k, textMarshaler)
}

// kindWord is what JSON value t's kind marshals to, in a word.
func kindWord(t reflect.Type) string {
	switch t.Kind() {
	case reflect.Slice, reflect.Array:
		return "JSON array"
	case reflect.String:
		return "JSON string"
	case reflect.Bool:
		return "JSON boolean"
	case reflect.Interface:
		return "interface (any JSON value)"
	case reflect.Map:
		return "map whose keys cannot be JSON object keys"
	case reflect.Chan, reflect.Func, reflect.Complex64, reflect.Complex128, reflect.UnsafePointer:
		return strings.ToLower(t.Kind().String()) + " (which encoding/json refuses)"
	}
	return "JSON number"
}

// implements reports whether t or *t implements iface.
func implements(t, iface reflect.Type) bool {
	return t.Implements(iface) || t.Kind() != reflect.Pointer && reflect.PointerTo(t).Implements(iface)
}

// hasSchemaHook reports whether t or *t has a method JSONSchema, the
// generator's hook for a type's whole schema. (The name is a constant, so
// the linker still drops the methods nothing calls.)
func hasSchemaHook(t reflect.Type) bool {
	if _, ok := t.MethodByName("JSONSchema"); ok {
		return true
	}
	_, ok := reflect.PointerTo(t).MethodByName("JSONSchema")
	return ok
}

// Lookup returns the spec of the event type name.
func (c *Catalog) Lookup(name EventType) (EventTypeSpec, bool) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	e, ok := c.specs[name]
	if !ok {
		return EventTypeSpec{}, false
	}
	return e.spec, true
}

// Specs returns every spec, by name.
func (c *Catalog) Specs() []EventTypeSpec {
	c.mu.RLock()
	out := make([]EventTypeSpec, 0, len(c.specs))
	for _, e := range c.specs {
		out = append(out, e.spec)
	}
	c.mu.RUnlock()
	slices.SortFunc(out, func(a, b EventTypeSpec) int { return strings.Compare(string(a.Name), string(b.Name)) })
	return out
}
