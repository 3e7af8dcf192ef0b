package outbox

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/santhosh-tekuri/jsonschema/v6"
	"github.com/santhosh-tekuri/jsonschema/v6/kind"
	"golang.org/x/text/language"
	"golang.org/x/text/message"

	"github.com/outboxrelay/outbox/internal/svixid"
)

// DefaultSchemaVersion is the schema version of an event definition that
// names none: Svix keys an event type's schemas by version.
const DefaultSchemaVersion = "1"

// ErrInvalidEventDefinition is wrapped by the errors (and panics) of a bad
// event definition: a name or group Svix would refuse, no description, a
// payload type that is not a JSON object, a name defined twice.
var ErrInvalidEventDefinition = errors.New("invalid event definition")

// EventInfo describes an event type to Svix and to the customers who read
// the catalog in the Svix App Portal.
type EventInfo struct {
	// Description says when the event is sent. Required: Svix needs one,
	// and it is what customers read.
	Description string
	// Group is the event type's group in Svix (groupName), such as
	// "audit_log": 1 to 256 characters of [a-zA-Z0-9-_.]. Defaults to none.
	Group string
	// SchemaVersion is the key of this definition's schema among the event
	// type's schemas in Svix. Defaults to DefaultSchemaVersion ("1").
	SchemaVersion string
	// Deprecated marks the event type deprecated in Svix. Defaults to false.
	Deprecated bool
}

// EventSpec is one event type of a Catalog: its name, its description, and
// the JSON Schema of its payloads.
type EventSpec struct {
	// Name is the Svix event type.
	Name EventType `json:"name"`
	// Description, Group, SchemaVersion and Deprecated are the definition's
	// EventInfo.
	Description   string `json:"description"`
	Group         string `json:"group,omitempty"`
	SchemaVersion string `json:"schemaVersion"`
	Deprecated    bool   `json:"deprecated,omitempty"`
	// Schema is the JSON Schema (draft 2020-12) of the payloads, for
	// SchemaVersion.
	Schema json.RawMessage `json:"schema"`
}

// Catalog is a set of event definitions: the event types a service sends
// and their payloads' JSON Schemas. DefineEvent adds to DefaultCatalog;
// package eventtypes syncs a catalog to Svix and exports it for customers.
// A Catalog is safe for concurrent use; the zero Catalog is empty and
// ready to use.
type Catalog struct {
	mu         sync.RWMutex
	specs      map[EventType]*catalogEntry
	validators sync.Map // EventType → *jsonschema.Schema, compiled on first use
}

// catalogEntry is a spec and where it was defined.
type catalogEntry struct {
	spec  EventSpec
	where string
}

// DefaultCatalog holds every event defined with DefineEvent. It is a
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

// Add validates spec, fills in its defaults and adds it; the error wraps
// ErrInvalidEventDefinition when spec is bad or its name is taken.
func (c *Catalog) Add(spec EventSpec) error {
	return c.add(spec, "")
}

func (c *Catalog) add(spec EventSpec, where string) error {
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
		return fmt.Errorf("outbox: event %q is defined twice%s: %w", spec.Name, at, ErrInvalidEventDefinition)
	}
	c.specs[spec.Name] = &catalogEntry{spec: spec, where: where}
	return nil
}

// validateSpec checks what Svix would refuse.
func validateSpec(spec *EventSpec) error {
	bad := func(field, rule string) error {
		return fmt.Errorf("outbox: event %q: %s: %s: %w", spec.Name, field, rule, ErrInvalidEventDefinition)
	}
	if err := spec.Name.validate(); err != nil {
		return bad("name", err.Rule)
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
	var schema map[string]any
	if err := json.Unmarshal(spec.Schema, &schema); err != nil || schema == nil {
		return bad("Schema", "a JSON Schema object")
	}
	return nil
}

// Lookup returns the spec of the event type name.
func (c *Catalog) Lookup(name EventType) (EventSpec, bool) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	e, ok := c.specs[name]
	if !ok {
		return EventSpec{}, false
	}
	return e.spec, true
}

// Specs returns every spec, by name.
func (c *Catalog) Specs() []EventSpec {
	c.mu.RLock()
	out := make([]EventSpec, 0, len(c.specs))
	for _, e := range c.specs {
		out = append(out, e.spec)
	}
	c.mu.RUnlock()
	slices.SortFunc(out, func(a, b EventSpec) int { return compareStrings(string(a.Name), string(b.Name)) })
	return out
}

func compareStrings(a, b string) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// catalogFile is a catalog's JSON form.
type catalogFile struct {
	EventTypes []EventSpec `json:"eventTypes"`
}

// MarshalJSON writes the catalog as {"eventTypes": [spec, ...]}, the file
// `outbox event-types` reads: json.Marshal(outbox.DefaultCatalog) from
// the program (or a test, or a go:generate step) that defines the events.
func (c *Catalog) MarshalJSON() ([]byte, error) {
	return json.Marshal(catalogFile{EventTypes: c.Specs()})
}

// UnmarshalJSON reads what MarshalJSON wrote into an empty catalog,
// validating every spec.
func (c *Catalog) UnmarshalJSON(b []byte) error {
	var f catalogFile
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&f); err != nil {
		return fmt.Errorf("outbox: catalog: %w", err)
	}
	for _, spec := range f.EventTypes {
		if err := c.Add(spec); err != nil {
			return err
		}
	}
	return nil
}

// Validate checks payload, a JSON document, against the schema of the
// event type name: nil when it matches or the catalog does not define
// name, else a *ValidationError (Field "Payload") wrapping
// ErrInvalidPayload that says where and what. Config.ValidatePayloads
// makes Append call it.
func (c *Catalog) Validate(name EventType, payload []byte) error {
	if err := c.validate(name, payload); err != nil {
		return err
	}
	return nil
}

// validate checks payload (JSON) against the schema of its event type, if
// the catalog has it.
func (c *Catalog) validate(name EventType, payload []byte) *ValidationError {
	v, err := c.validator(name)
	if err != nil {
		return &ValidationError{Index: -1, Field: "Payload", Rule: err.Error(), Err: ErrInvalidPayload}
	}
	if v == nil {
		return nil
	}
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(payload))
	if err != nil {
		return &ValidationError{Index: -1, Field: "Payload", Rule: "valid JSON: " + err.Error(), Err: ErrInvalidPayload}
	}
	if err := v.Validate(doc); err != nil {
		return &ValidationError{Index: -1, Field: "Payload", Rule: "must match the schema of " + string(name) + ": " + schemaMessage(err), Err: ErrInvalidPayload}
	}
	return nil
}

// validator returns the compiled schema of name, or nil when the catalog
// does not define it.
func (c *Catalog) validator(name EventType) (*jsonschema.Schema, error) {
	if v, ok := c.validators.Load(name); ok {
		if err, bad := v.(error); bad {
			return nil, err
		}
		return v.(*jsonschema.Schema), nil
	}
	spec, ok := c.Lookup(name)
	if !ok {
		return nil, nil
	}
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(spec.Schema))
	if err != nil {
		return nil, fmt.Errorf("the schema of %s: %w", name, err)
	}
	comp := jsonschema.NewCompiler()
	comp.AssertFormat()
	url := "outbox:///" + string(name) + ".schema.json"
	if err := comp.AddResource(url, doc); err != nil {
		return nil, fmt.Errorf("the schema of %s: %w", name, err)
	}
	v, err := comp.Compile(url)
	if err != nil {
		err = fmt.Errorf("the schema of %s: %w", name, err)
		c.validators.Store(name, err) // compiled once, good or bad
		return nil, err
	}
	c.validators.Store(name, v)
	return v, nil
}

// english prints the validator's messages.
var english = message.NewPrinter(language.English)

// schemaMessage is a validation error in one line: where and what.
func schemaMessage(err error) string {
	var ve *jsonschema.ValidationError
	if !errors.As(err, &ve) {
		return err.Error()
	}
	for len(ve.Causes) > 0 {
		ve = ve.Causes[0]
	}
	loc := "/"
	if len(ve.InstanceLocation) > 0 {
		loc = "/" + joinPath(ve.InstanceLocation)
	}
	return "at " + loc + ": " + kindMessage(ve.ErrorKind)
}

// kindMessage says what rule a value broke without quoting the value: a
// payload's values stay out of error messages, which get logged. Missing
// and unexpected properties are named, types are given; for the other
// rules, the schema keyword.
func kindMessage(k jsonschema.ErrorKind) string {
	switch k := k.(type) {
	case *kind.Required, *kind.AdditionalProperties, *kind.Type, *kind.DependentRequired:
		return k.LocalizedString(english)
	}
	return "breaks " + strconv.Quote(strings.Join(k.KeywordPath(), "/"))
}

func joinPath(p []string) string {
	var b bytes.Buffer
	for i, s := range p {
		if i > 0 {
			b.WriteByte('/')
		}
		b.WriteString(s)
	}
	return b.String()
}
