package outbox

import (
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/outboxrelay/outbox/migrations"
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
}

func (c Config) withDefaults() Config {
	if c.MaxPayloadBytes == 0 {
		c.MaxPayloadBytes = DefaultMaxPayloadBytes
	}
	return c
}

func (c Config) validate() error {
	if c.MaxPayloadBytes < 0 {
		return fmt.Errorf("%w: MaxPayloadBytes must not be negative, got %d", ErrInvalidConfig, c.MaxPayloadBytes)
	}
	if err := migrations.ValidateSchema(c.Schema); err != nil {
		return fmt.Errorf("%w: %w", ErrInvalidConfig, err)
	}
	return nil
}

// Producer appends events with a Config. The package-level Append and
// AppendBatch use a Producer with the zero Config. A Producer is safe for
// concurrent use.
type Producer struct {
	cfg       Config
	table     pgx.Identifier
	insertSQL string
}

// NewProducer returns a Producer, or an error wrapping ErrInvalidConfig that
// names the bad field.
func NewProducer(cfg Config) (*Producer, error) {
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	table := pgx.Identifier{EventsTable}
	if cfg.Schema != "" {
		table = pgx.Identifier{cfg.Schema, EventsTable}
	}
	return &Producer{
		cfg:   cfg,
		table: table,
		insertSQL: "INSERT INTO " + table.Sanitize() +
			" (event_id, organization_id, event_type, payload) VALUES ($1, $2, $3, $4::jsonb) RETURNING id",
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
	return encodePayload(ap.Payload, p.cfg.MaxPayloadBytes)
}
