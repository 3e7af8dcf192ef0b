package relay_test

import (
	"errors"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/outboxrelay/outbox"
	"github.com/outboxrelay/outbox/migrations"
	"github.com/outboxrelay/outbox/relay"
)

// Every bad setting is reported by field, wraps the one ErrInvalidConfig
// (relay's is outbox's) and, for a schema, migrations.ErrInvalidSchema.
func TestConfigErrors(t *testing.T) {
	t.Parallel()
	b := setup(t)
	valid := relay.Config{SvixToken: "t"}
	tests := []struct {
		name   string
		mutate func(*relay.Config)
		field  string
		also   error // a more specific sentinel, or nil
	}{
		{"no token", func(c *relay.Config) { c.SvixToken = "" }, "SvixToken", nil},
		{"relative server URL", func(c *relay.Config) { c.SvixServerURL = "not a url" }, "SvixServerURL", nil},
		{"negative concurrency", func(c *relay.Config) { c.Concurrency = -1 }, "Concurrency", nil},
		{"negative per-org in flight", func(c *relay.Config) { c.PerOrgInFlight = -1 }, "PerOrgInFlight", nil},
		{"negative batch size", func(c *relay.Config) { c.BatchSize = -1 }, "BatchSize", nil},
		{"negative batch bytes", func(c *relay.Config) { c.BatchMaxBytes = -1 }, "BatchMaxBytes", nil},
		{"negative max attempts", func(c *relay.Config) { c.MaxAttempts = -1 }, "MaxAttempts", nil},
		{"negative lease", func(c *relay.Config) { c.LeaseDuration = -time.Second }, "LeaseDuration", nil},
		{"negative send timeout", func(c *relay.Config) { c.SendTimeout = -time.Second }, "SendTimeout", nil},
		{"send timeout over half the lease", func(c *relay.Config) { c.SendTimeout = 20 * time.Second }, "SendTimeout", nil},
		{"negative retry base", func(c *relay.Config) { c.RetryBaseDelay = -time.Second }, "RetryBaseDelay", nil},
		{"retry max under base", func(c *relay.Config) { c.RetryBaseDelay, c.RetryMaxDelay = time.Minute, time.Second }, "RetryMaxDelay", nil},
		{"negative rate-limit pause", func(c *relay.Config) { c.RateLimitPause = -time.Second }, "RateLimitPause", nil},
		{"negative auth pause", func(c *relay.Config) { c.AuthPause = -time.Second }, "AuthPause", nil},
		{"negative rate limit", func(c *relay.Config) { c.RateLimit = -1 }, "RateLimit", nil},
		{"negative poll interval", func(c *relay.Config) { c.PollInterval = -time.Second }, "PollInterval", nil},
		{"channel too long", func(c *relay.Config) { c.Channel = strings.Repeat("c", 64) }, "Channel", nil},
		{"channel with NUL", func(c *relay.Config) { c.Channel = "a\x00b" }, "Channel", nil},
		{"negative shutdown timeout", func(c *relay.Config) { c.ShutdownTimeout = -time.Second }, "ShutdownTimeout", nil},
		{"negative heartbeat", func(c *relay.Config) { c.HeartbeatInterval = -time.Second }, "HeartbeatInterval", nil},
		{"liveness under two heartbeats", func(c *relay.Config) { c.HeartbeatInterval, c.LivenessTimeout = time.Second, time.Second }, "LivenessTimeout", nil},
		{"negative quick retry delay", func(c *relay.Config) { c.QuickRetryDelay = -time.Second }, "QuickRetryDelay", nil},
		{"schema with NUL", func(c *relay.Config) { c.Schema = "a\x00b" }, "Schema", migrations.ErrInvalidSchema},
		{"schema too long", func(c *relay.Config) { c.Schema = strings.Repeat("s", 64) }, "Schema", migrations.ErrInvalidSchema},
	}
	for _, tt := range tests {
		cfg := valid
		tt.mutate(&cfg)
		_, err := relay.New(b.db.Pool, cfg)
		require.ErrorIs(t, err, relay.ErrInvalidConfig, tt.name)
		require.ErrorIs(t, err, outbox.ErrInvalidConfig, tt.name)
		if tt.also != nil {
			require.ErrorIs(t, err, tt.also, tt.name)
		}
		var ce *relay.ConfigError
		require.True(t, errors.As(err, &ce), tt.name)
		require.Equal(t, tt.field, ce.Field, tt.name)
		require.True(t, strings.HasPrefix(err.Error(), "relay: invalid config: "+tt.field+": "), "%s: %q", tt.name, err)
		require.Equal(t, 1, strings.Count(err.Error(), "invalid config"), "%s: %q says it once", tt.name, err)
	}

	// Every bad field at once, each named.
	_, err := relay.New(b.db.Pool, relay.Config{Concurrency: -1, SvixServerURL: "x", RateLimit: -1})
	for _, field := range []string{"SvixToken", "Concurrency", "SvixServerURL", "RateLimit"} {
		require.ErrorContains(t, err, field+": ")
	}
	_, err = relay.New(nil, valid)
	require.ErrorIs(t, err, relay.ErrInvalidConfig)

	r, err := relay.New(b.db.Pool, valid)
	require.NoError(t, err)
	require.False(t, r.Ready(), "not ready before Run")

	_, err = relay.NewAdmin(b.db.Pool, relay.AdminConfig{Schema: "a\x00b"})
	require.ErrorIs(t, err, relay.ErrInvalidConfig)
	require.ErrorIs(t, err, migrations.ErrInvalidSchema)
	_, err = relay.NewAdmin(nil, relay.AdminConfig{})
	require.ErrorIs(t, err, relay.ErrInvalidConfig)
}

// defaults lists the Config fields New defaults and the exported constant
// the documentation must show for each.
var defaults = map[string]any{
	"Concurrency":             relay.DefaultConcurrency,
	"PerOrgInFlight":          relay.DefaultPerOrgInFlight,
	"BatchSize":               relay.DefaultBatchSize,
	"BatchMaxBytes":           relay.DefaultBatchMaxBytes,
	"LeaseDuration":           relay.DefaultLeaseDuration,
	"SendTimeout":             relay.DefaultSendTimeout,
	"MaxAttempts":             relay.DefaultMaxAttempts,
	"RetryBaseDelay":          relay.DefaultRetryBaseDelay,
	"RetryMaxDelay":           relay.DefaultRetryMaxDelay,
	"RateLimitPause":          relay.DefaultRateLimitPause,
	"AuthPause":               relay.DefaultAuthPause,
	"PollInterval":            relay.DefaultPollInterval,
	"HeartbeatInterval":       relay.DefaultHeartbeatInterval,
	"LivenessTimeout":         relay.DefaultLivenessTimeout,
	"QuickRetries":            relay.DefaultQuickRetries,
	"QuickRetryDelay":         relay.DefaultQuickRetryDelay,
	"Channel":                 relay.DefaultChannel,
	"DeliveredRetention":      relay.DefaultDeliveredRetention,
	"ShutdownTimeout":         relay.DefaultShutdownTimeout,
	"BacklogTopOrganizations": relay.DefaultBacklogTopOrganizations,
}

// The defaults are written in three places a reader looks: the Config doc
// comments, docs/configuration.md and the outbox command's flags (checked
// in its own module). Each must say what the constants say.
func TestDefaultsAreDocumented(t *testing.T) {
	t.Parallel()
	fset := token.NewFileSet()
	f, err := parser.ParseFile(fset, "config.go", nil, parser.ParseComments)
	require.NoError(t, err)
	docs := map[string]string{}
	ast.Inspect(f, func(n ast.Node) bool {
		ts, ok := n.(*ast.TypeSpec)
		if !ok || ts.Name.Name != "Config" {
			return true
		}
		for _, field := range ts.Type.(*ast.StructType).Fields.List {
			for _, name := range field.Names {
				docs[name.Name] = strings.Join(strings.Fields(field.Doc.Text()), " ")
			}
		}
		return false
	})
	page, err := os.ReadFile("../docs/configuration.md")
	require.NoError(t, err)

	cfgType := reflect.TypeOf(relay.Config{})
	for i := range cfgType.NumField() {
		if !cfgType.Field(i).IsExported() {
			continue // the clock: tests set it
		}
		name := cfgType.Field(i).Name
		doc, ok := docs[name]
		require.True(t, ok, "Config.%s has a doc comment", name)
		if name != "SvixToken" { // required
			require.Contains(t, doc, "Defaults to", "Config.%s says its default", name)
		}
		row := regexp.MustCompile("(?m)^\\| `" + name + "` \\| ([^|]*) \\|").FindSubmatch(page)
		require.NotNil(t, row, "docs/configuration.md has a row for Config.%s", name)
		def, ok := defaults[name]
		if !ok {
			continue // a default that is not a constant (a client, a logger, a resolver)
		}
		text := spoken(def)
		require.Contains(t, doc, "Defaults to "+text, "Config.%s's doc comment says the constant", name)
		require.Equal(t, "`"+literal(def)+"`", strings.TrimSpace(string(row[1])), "docs/configuration.md's default for %s", name)
	}
}

// spoken writes a default as the doc comments do: "30 seconds", "64".
func spoken(v any) string {
	switch v := v.(type) {
	case time.Duration:
		n, unit := durationUnit(v)
		names := map[string]string{"h": "hour", "m": "minute", "s": "second", "ms": "millisecond"}
		if n == 1 {
			return "1 " + names[unit]
		}
		return fmt.Sprintf("%d %ss", n, names[unit])
	case string:
		return strconv.Quote(v)
	default:
		return fmt.Sprint(v)
	}
}

// literal writes a default as the tables and flags do: 30s, 64, outbox_relay.
func literal(v any) string {
	if d, ok := v.(time.Duration); ok {
		n, unit := durationUnit(d)
		return fmt.Sprintf("%d%s", n, unit)
	}
	return fmt.Sprint(v)
}

// durationUnit splits d into a count of its largest whole unit.
func durationUnit(d time.Duration) (int64, string) {
	for _, u := range []struct {
		d    time.Duration
		name string
	}{{time.Hour, "h"}, {time.Minute, "m"}, {time.Second, "s"}} {
		if d%u.d == 0 {
			return int64(d / u.d), u.name
		}
	}
	return d.Milliseconds(), "ms"
}
