// Package sqlname is the one home of outbox's SQL names: the tables, the
// rules for a schema and a NOTIFY channel name, and the quoting of both into
// SQL. Every package that writes SQL against outbox's tables builds it here.
package sqlname

import (
	"errors"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"
)

// The tables the migrations create, unqualified.
const (
	Events      = "outbox_events"
	Lanes       = "outbox_lanes"
	DeadLetters = "outbox_dead_letters"
	Deliveries  = "outbox_deliveries"
	Relays      = "outbox_relays"
	// DeliveriesDefault is the history's default partition; the hourly
	// ones are named DeliveriesPartitionPrefix + YYYYMMDDHH (UTC).
	DeliveriesDefault = "outbox_deliveries_default"
	// DeliveriesPartitionPrefix starts an hourly history partition's name.
	DeliveriesPartitionPrefix = "outbox_deliveries_p"
	// DeliveriesBeforePrefix starts the name of the partition that holds
	// the history from before migration 0004, up to the hour it names.
	DeliveriesBeforePrefix = "outbox_deliveries_before_"
	Migrations             = "outbox_schema_migrations"
)

// ErrInvalidSchema is wrapped by errors about an unusable schema name.
// Package migrations re-exports it.
var ErrInvalidSchema = errors.New("invalid schema name")

// maxIdentifierBytes is PostgreSQL's identifier limit (NAMEDATALEN - 1).
const maxIdentifierBytes = 63

// SchemaRule returns "" when name can be used as a schema: "" (the
// connection's search_path) or at most 63 bytes without NUL; otherwise the
// rule it breaks. Any other character is allowed because the name is always
// quoted.
func SchemaRule(name string) string {
	if len(name) > maxIdentifierBytes {
		return fmt.Sprintf("must be at most %d bytes, has %d", maxIdentifierBytes, len(name))
	}
	if strings.IndexByte(name, 0) >= 0 {
		return "must not contain NUL"
	}
	return ""
}

// ValidateSchema returns an error wrapping ErrInvalidSchema when name breaks
// SchemaRule.
func ValidateSchema(name string) error {
	if rule := SchemaRule(name); rule != "" {
		return fmt.Errorf("%w: %q %s", ErrInvalidSchema, truncate(name), rule)
	}
	return nil
}

// ChannelRule returns "" when name can be a NOTIFY channel (1 to 63 bytes
// without NUL), otherwise the rule it breaks.
func ChannelRule(name string) string {
	if name == "" || len(name) > maxIdentifierBytes {
		return fmt.Sprintf("must be 1 to %d bytes, has %d", maxIdentifierBytes, len(name))
	}
	if strings.IndexByte(name, 0) >= 0 {
		return "must not contain NUL"
	}
	return ""
}

// Quote returns name quoted as an SQL identifier.
func Quote(name string) string { return pgx.Identifier{name}.Sanitize() }

// Schema qualifies outbox's tables with one schema ("" leaves them
// unqualified, for the connection's search_path to resolve).
type Schema string

// Identifier returns table as a pgx.Identifier, for CopyFrom.
func (s Schema) Identifier(table string) pgx.Identifier {
	if s == "" {
		return pgx.Identifier{table}
	}
	return pgx.Identifier{string(s), table}
}

// Table returns table qualified and quoted for SQL text.
func (s Schema) Table(table string) string { return s.Identifier(table).Sanitize() }

// Expand replaces the placeholders {events}, {lanes}, {dead_letters},
// {deliveries}, {relays} and {migrations} in sql with the qualified table
// names.
func (s Schema) Expand(sql string) string {
	return strings.NewReplacer(
		"{events}", s.Table(Events),
		"{lanes}", s.Table(Lanes),
		"{dead_letters}", s.Table(DeadLetters),
		"{deliveries}", s.Table(Deliveries),
		"{relays}", s.Table(Relays),
		"{deliveries_default}", s.Table(DeliveriesDefault),
		"{migrations}", s.Table(Migrations),
	).Replace(sql)
}

func truncate(s string) string {
	if len(s) > 40 {
		return s[:40] + "..."
	}
	return s
}
