package outbox_test

import (
	"strings"
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/outboxrelay/outbox"
	"github.com/outboxrelay/outbox/internal/pgtest"
	"github.com/outboxrelay/outbox/migrations"
)

func TestProducerConfig(t *testing.T) {
	t.Parallel()
	b := setup(t)

	// A pool without search_path: the Producer names the schema itself.
	plain, err := pgxpool.New(b.ctx, pgtest.ServerURL(t))
	require.NoError(t, err)
	defer plain.Close()

	p, err := outbox.NewProducer(outbox.Config{Schema: b.db.Schema, MaxPayloadBytes: 64})
	require.NoError(t, err)
	_, err = p.Append(b.ctx, plain, params("org-s", map[string]any{"small": true}))
	require.NoError(t, err)
	_, err = p.AppendBatch(b.ctx, plain, []outbox.AppendParams{params("org-s", map[string]any{"b": 1})})
	require.NoError(t, err)
	require.Equal(t, 2, b.countEvents(t, "org-s"))

	_, err = p.Append(b.ctx, plain, params("org-s", map[string]any{"big": strings.Repeat("x", 64)}))
	require.ErrorIs(t, err, outbox.ErrPayloadTooLarge)
	require.Contains(t, err.Error(), "limit of 64")

}

// Every bad setting of the producer's package is a *ConfigError naming the
// field, wrapping ErrInvalidConfig (and ErrInvalidSchema for a schema).
func TestConfigErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		build func() error
		msg   string // the whole message
		also  error
	}{
		{"negative payload limit", func() error {
			_, err := outbox.NewProducer(outbox.Config{MaxPayloadBytes: -1})
			return err
		}, "outbox: invalid config: MaxPayloadBytes: must not be negative, got -1", nil},
		{"schema too long", func() error {
			_, err := outbox.NewProducer(outbox.Config{Schema: strings.Repeat("s", 64)})
			return err
		}, "outbox: invalid config: Schema: must be at most 63 bytes, has 64", migrations.ErrInvalidSchema},
		{"schema with NUL", func() error {
			_, err := outbox.NewProducer(outbox.Config{Schema: "a\x00b"})
			return err
		}, "outbox: invalid config: Schema: must not contain NUL", migrations.ErrInvalidSchema},
		{"channel too long", func() error {
			_, err := outbox.NewNotifySignaler(nil, string(make([]byte, 64)))
			return err
		}, "outbox: invalid config: channel: must be 1 to 63 bytes, has 64", nil},
		{"channel with NUL", func() error {
			_, err := outbox.NewNotifySignaler(nil, "a\x00b")
			return err
		}, "outbox: invalid config: channel: must not contain NUL", nil},
	}
	for _, tt := range tests {
		err := tt.build()
		require.ErrorIs(t, err, outbox.ErrInvalidConfig, tt.name)
		if tt.also != nil {
			require.ErrorIs(t, err, tt.also, tt.name)
		}
		var ce *outbox.ConfigError
		require.ErrorAs(t, err, &ce, tt.name)
		require.EqualError(t, err, tt.msg, tt.name)
	}
}

func TestProducerSchemaIsQuoted(t *testing.T) {
	t.Parallel()
	b := setup(t)

	// A hostile schema name is quoted as an identifier, never run as SQL.
	p, err := outbox.NewProducer(outbox.Config{Schema: `x"; DROP TABLE outbox_events; --`})
	require.NoError(t, err)
	_, err = p.Append(b.ctx, b.pool, params("org", map[string]any{}))
	require.Error(t, err)
	require.Contains(t, err.Error(), "does not exist")
	_, err = b.pool.Exec(b.ctx, "SELECT 1 FROM outbox_events")
	require.NoError(t, err, "the table must still exist")
}
