package outbox

import (
	"errors"
	"strconv"

	"github.com/jackc/pgx/v5"
	"go.opentelemetry.io/otel/metric"

	"github.com/outboxrelay/outbox/internal/config"
	"github.com/outboxrelay/outbox/internal/sqlname"
)

// Config tunes a Producer. The zero value is ready to use.
type Config struct {
	// Schema is the PostgreSQL schema holding outbox's tables. Defaults to
	// "", which leaves the table name unqualified so the connection's
	// search_path decides.
	Schema string
	// MaxPayloadBytes is the largest encoded payload accepted. Defaults to
	// DefaultMaxPayloadBytes (1 MiB, Svix's own limit).
	MaxPayloadBytes int
	// MeterProvider makes the outbox.events.appended counter. Defaults to
	// otel.GetMeterProvider(), the global one.
	MeterProvider metric.MeterProvider
	// PayloadValidator, when set, checks each encoded payload before it is
	// appended; a payload it refuses is not written, and Append returns a
	// *ValidationError (Field "Payload") wrapping ErrInvalidPayload and the
	// validator's error. eventtypes.NewValidator(catalog) checks payloads
	// against the JSON Schemas of their event types (its cost is measured
	// in the README). Defaults to nil, no check: typed events (DefineEvent)
	// already have the shape of their schema.
	PayloadValidator PayloadValidator
}

// PayloadValidator checks payloads for Config.PayloadValidator.
// eventtypes.NewValidator returns one that checks them against the JSON
// Schemas of a catalog's event types.
type PayloadValidator interface {
	// ValidatePayload returns nil to accept payload, the JSON object an
	// event of type eventType will carry (already checked and encoded as
	// the producer stores it), or an error saying why not. It is called
	// concurrently, before any SQL runs (but for a large AppendBatch in a
	// transaction, where it runs on pgx's COPY goroutine while the COPY
	// streams, in a savepoint its refusal rolls back).
	ValidatePayload(eventType EventType, payload []byte) error
}

func (c Config) withDefaults() Config {
	config.Default(&c.MaxPayloadBytes, DefaultMaxPayloadBytes)
	return c
}

func (c Config) validate() error {
	var errs []error
	if c.MaxPayloadBytes < 0 {
		errs = append(errs, &ConfigError{Field: "MaxPayloadBytes", Rule: "must not be negative, got " + strconv.Itoa(c.MaxPayloadBytes)})
	}
	if rule := sqlname.SchemaRule(c.Schema); rule != "" {
		errs = append(errs, &ConfigError{Field: "Schema", Rule: rule, Err: sqlname.ErrInvalidSchema})
	}
	return config.Join("outbox", errs)
}

// Producer appends events with a Config. The package-level Append and
// AppendBatch use a Producer with the zero Config. A Producer is safe for
// concurrent use.
type Producer struct {
	cfg       Config
	table     pgx.Identifier
	insertSQL string
	tel       producerTelemetry
}

// NewProducer returns a Producer, or an error wrapping ErrInvalidConfig
// (a *ConfigError) that names each bad field.
func NewProducer(cfg Config) (*Producer, error) {
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	schema := sqlname.Schema(cfg.Schema)
	return &Producer{
		cfg:   cfg,
		table: schema.Identifier(sqlname.Events),
		insertSQL: "INSERT INTO " + schema.Table(sqlname.Events) +
			" (event_id, organization_id, event_type, payload, traceparent, tracestate, channels, tags) VALUES ($1, $2, $3, $4::jsonb, $5, $6, $7, $8) RETURNING id",
		tel: newProducerTelemetry(cfg),
	}, nil
}

var defaultProducer, _ = NewProducer(Config{})

// validate checks one AppendParams and returns its encoded payload.
func (p *Producer) validate(ap *AppendParams) ([]byte, *ValidationError) {
	if err := validateOrganizationID(ap.OrganizationID); err != nil {
		return nil, err
	}
	if err := ap.EventType.validate(); err != nil {
		return nil, err
	}
	if err := validateChannels(ap.Channels); err != nil {
		return nil, err
	}
	if err := validateTags(ap.Tags); err != nil {
		return nil, err
	}
	payload, err := encodePayload(ap.Payload, p.cfg.MaxPayloadBytes)
	if err != nil {
		return nil, err
	}
	if p.cfg.PayloadValidator != nil {
		if err := p.cfg.PayloadValidator.ValidatePayload(ap.EventType, payload); err != nil {
			return nil, payloadRefused(err)
		}
	}
	return payload, nil
}

// payloadRefused is the ValidationError of a payload the PayloadValidator
// refused with err: its Rule is err's, or the Rule of the ValidationError
// err wraps (so the message does not repeat the validator's prefix and
// field).
func payloadRefused(err error) *ValidationError {
	rule := err.Error()
	var ve *ValidationError
	if errors.As(err, &ve) {
		rule = ve.Rule
	}
	cause := err
	if !errors.Is(err, ErrInvalidPayload) {
		cause = errors.Join(ErrInvalidPayload, err)
	}
	return &ValidationError{Index: -1, Field: "Payload", Rule: rule, Err: cause}
}
