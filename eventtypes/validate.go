package eventtypes

import (
	"bytes"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"

	"github.com/santhosh-tekuri/jsonschema/v6"
	"github.com/santhosh-tekuri/jsonschema/v6/kind"
	"golang.org/x/text/language"
	"golang.org/x/text/message"

	"github.com/outboxrelay/outbox"
)

// Validator checks payloads against the JSON Schemas of a catalog's event
// types, with github.com/santhosh-tekuri/jsonschema (formats asserted). It
// is an outbox.PayloadValidator: plug it into a producer to refuse, before
// anything is written, a payload the catalog says customers will never get:
//
//	p, err := outbox.NewProducer(outbox.Config{PayloadValidator: eventtypes.NewValidator(outbox.DefaultCatalog)})
//
// Each event type's schema is generated (SchemaOf) and compiled on its
// first payload, then reused. A Validator is safe for concurrent use.
type Validator struct {
	catalog  *outbox.Catalog
	compiled sync.Map // outbox.EventType → *jsonschema.Schema, or the error compiling it
}

var _ outbox.PayloadValidator = (*Validator)(nil)

// NewValidator returns a Validator of catalog's event types; a nil catalog
// is outbox.DefaultCatalog. Event types added to catalog later are
// checked too.
func NewValidator(catalog *outbox.Catalog) *Validator {
	if catalog == nil {
		catalog = outbox.DefaultCatalog
	}
	return &Validator{catalog: catalog}
}

// ValidatePayload checks payload, a JSON document, against the schema of
// the event type eventType: nil when it matches or the catalog does not
// define eventType, else an error wrapping a *outbox.ValidationError (Field
// "Payload") and outbox.ErrInvalidPayload that says where and which rule,
// never quoting the payload's values (they get logged): "Payload: must
// match the schema of audit_log.created: at /actor: missing property
// 'kind'". A schema that cannot be generated or compiled refuses every
// payload of its type, saying why.
func (v *Validator) ValidatePayload(eventType outbox.EventType, payload []byte) error {
	if err := v.validate(eventType, payload); err != nil {
		return fmt.Errorf("eventtypes: %w", err)
	}
	return nil
}

func (v *Validator) validate(name outbox.EventType, payload []byte) *outbox.ValidationError {
	refuse := func(rule string) *outbox.ValidationError {
		return &outbox.ValidationError{Index: -1, Field: "Payload", Rule: rule, Err: outbox.ErrInvalidPayload}
	}
	schema, err := v.schema(name)
	if err != nil {
		return refuse(err.Error())
	}
	if schema == nil {
		return nil
	}
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(payload))
	if err != nil {
		return refuse("valid JSON: " + err.Error())
	}
	if err := schema.Validate(doc); err != nil {
		return refuse("must match the schema of " + string(name) + ": " + schemaMessage(err))
	}
	return nil
}

// schema returns the compiled schema of name, or nil when the catalog
// does not define it.
func (v *Validator) schema(name outbox.EventType) (*jsonschema.Schema, error) {
	if s, ok := v.compiled.Load(name); ok {
		if err, bad := s.(error); bad {
			return nil, err
		}
		return s.(*jsonschema.Schema), nil
	}
	spec, ok := v.catalog.Lookup(name)
	if !ok {
		return nil, nil
	}
	s, err := compile(spec)
	if err != nil {
		v.compiled.Store(name, err) // compiled once, good or bad
		return nil, err
	}
	v.compiled.Store(name, s)
	return s, nil
}

// compile generates and compiles spec's schema.
func compile(spec outbox.EventTypeSpec) (*jsonschema.Schema, error) {
	fail := func(err error) error { return fmt.Errorf("the schema of %s: %w", spec.Name, err) }
	raw, err := specSchema(spec)
	if err != nil {
		return nil, err
	}
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(raw))
	if err != nil {
		return nil, fail(err)
	}
	comp := jsonschema.NewCompiler()
	comp.AssertFormat()
	url := "outbox:///" + string(spec.Name) + ".schema.json"
	if err := comp.AddResource(url, doc); err != nil {
		return nil, fail(err)
	}
	s, err := comp.Compile(url)
	if err != nil {
		return nil, fail(err)
	}
	return s, nil
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
		loc = "/" + strings.Join(ve.InstanceLocation, "/")
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
