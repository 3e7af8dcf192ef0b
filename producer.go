package outbox

import (
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
	// ValidatePayloads checks each payload against the JSON Schema of its
	// event type in Catalog before appending it, so a payload the catalog
	// says customers will not get is refused (ErrInvalidPayload) rather
	// than sent; event types the catalog does not define are not checked.
	// Its cost is measured in the README. Defaults to false: typed events
	// (DefineEvent) already have the shape of their schema.
	ValidatePayloads bool
	// Catalog is the event definitions ValidatePayloads checks against.
	// Defaults to DefaultCatalog.
	Catalog *Catalog
}

func (c Config) withDefaults() Config {
	config.Default(&c.MaxPayloadBytes, DefaultMaxPayloadBytes)
	if c.Catalog == nil {
		c.Catalog = DefaultCatalog
	}
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
	if p.cfg.ValidatePayloads {
		if err := p.cfg.Catalog.validate(ap.EventType, payload); err != nil {
			return nil, err
		}
	}
	return payload, nil
}
