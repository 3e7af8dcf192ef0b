package relay

import (
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"time"

	"github.com/jonboulle/clockwork"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"

	"github.com/outboxrelay/outbox"
	"github.com/outboxrelay/outbox/internal/config"
	"github.com/outboxrelay/outbox/internal/sqlname"
	"github.com/outboxrelay/outbox/internal/telemetry"
)

// ErrInvalidConfig is wrapped by every Config validation error. It is
// outbox.ErrInvalidConfig, re-exported: the two are the same sentinel.
var ErrInvalidConfig = outbox.ErrInvalidConfig

// ConfigError is outbox.ConfigError: the field at fault and its rule.
type ConfigError = outbox.ConfigError

// MinPoolConns is the fewest connections New accepts in the pool: one for
// the sweep, one for lane turns.
const MinPoolConns = 2

// PoolConns returns how many pool connections a relay with cfg uses at most
// at once: a quarter of Concurrency for lane turns (each holds a connection
// only for its claim and its settlement, a round trip each, while its Svix
// calls take far longer), plus the sweep and history pruning, plus 4 for
// pages unless DisablePages (each open page holds one; a relay that
// Delegates opens none). The outbox command sizes its pool with it.
func PoolConns(cfg Config) int32 {
	cfg = cfg.withDefaults()
	n := int32((cfg.Concurrency+3)/4 + 2)
	if !cfg.DisablePages {
		n += maxPagesInFlight // each open page holds one
	}
	return n
}

// The defaults New applies to a zero Config field. The outbox command's flags
// and the documentation read them from here.
const (
	DefaultConcurrency             = 64
	DefaultPerOrgInFlight          = 1
	DefaultBatchSize               = 100
	DefaultBatchMaxBytes           = 1 << 20
	DefaultLeaseDuration           = 30 * time.Second
	DefaultSendTimeout             = 10 * time.Second
	DefaultMaxAttempts             = 25
	DefaultRetryBaseDelay          = time.Second
	DefaultRetryMaxDelay           = 10 * time.Minute
	DefaultQuickRetries            = 3
	DefaultQuickRetryDelay         = 20 * time.Millisecond
	DefaultRateLimitPause          = time.Second
	DefaultAuthPause               = 30 * time.Second
	DefaultPollInterval            = time.Second
	DefaultHeartbeatInterval       = 500 * time.Millisecond
	DefaultLivenessTimeout         = 1500 * time.Millisecond
	DefaultChannel                 = outbox.DefaultNotifyChannel
	DefaultDeliveredRetention      = 24 * time.Hour
	DefaultShutdownTimeout         = 10 * time.Second
	DefaultBacklogTopOrganizations = 10
)

// Config tunes a Relay. Only SvixToken is required; every other field has a
// documented default, applied by New.
type Config struct {
	// SvixToken is the Svix API token. Required: it has no default. It is
	// never logged.
	SvixToken string
	// SvixServerURL is the Svix API base URL. Defaults to the region the
	// token names (the Svix SDK's own choice).
	SvixServerURL string
	// HTTPClient sends the Svix calls. The relay uses a copy (the SDK
	// modifies the client it is given), so the caller's stays untouched; a
	// nil Transport (http.DefaultClient's) is the relay's own. Defaults to a
	// client with keep-alive connections sized for Concurrency. Its own
	// Timeout should be zero or above SendTimeout; SendTimeout bounds every
	// call either way.
	HTTPClient *http.Client

	// Schema is the PostgreSQL schema holding outbox's tables. Defaults to
	// "", which leaves names unqualified so the pool's search_path decides.
	Schema string
	// Resolver maps an organization to its Svix application. Defaults to
	// DefaultResolver: the application whose uid is the organization id,
	// created on first use.
	Resolver Resolver

	// Concurrency is the most Svix calls in flight at once across all
	// organizations; it also bounds the lanes sending at once (a quarter
	// more, at least one, are claimed ahead, and wait for one of them to
	// end). Defaults to 64.
	Concurrency int
	// PerOrgInFlight is the most Svix calls in flight at once for one
	// organization. 1 creates an organization's events strictly in id order.
	// Defaults to 1.
	PerOrgInFlight int
	// BatchSize is the most events one lane turn claims. A busy organization
	// gets one turn of at most BatchSize events, then goes to the back of the
	// queue, so it cannot starve the others. Defaults to 100.
	BatchSize int
	// BatchMaxBytes bounds the payload bytes one lane turn claims (always at
	// least one event, which may be larger), so claimed payloads in memory
	// stay within 4 × Concurrency × BatchMaxBytes whatever their number: a
	// relay holds at most 4 × Concurrency lanes at once (those being
	// claimed, waiting for a turn slot or sending, and those waiting for
	// their settlement while the next claim goes out).
	// Defaults to 1048576 (1 MiB).
	BatchMaxBytes int
	// LeaseDuration is how long a claimed lane stays ours without being
	// settled. A crashed holder's lane is taken over after it. A turn stops
	// sending once half of it is gone. Defaults to 30 seconds.
	LeaseDuration time.Duration
	// SendTimeout is the deadline of each Svix call. Defaults to 10 seconds.
	SendTimeout time.Duration

	// MaxAttempts is how many times an event is tried before it is
	// dead-lettered. Defaults to 25, which at the default backoff spans
	// hours of Svix outage.
	MaxAttempts int
	// RetryBaseDelay is the first retry's backoff ceiling; it doubles per
	// attempt, with full jitter. Defaults to 1 second.
	RetryBaseDelay time.Duration
	// RetryMaxDelay caps the backoff. Defaults to 10 minutes.
	RetryMaxDelay time.Duration
	// QuickRetries is how many times a transient failure that came back fast
	// (a 5xx, a reset connection) is retried within the turn, before the
	// event waits for the backoff above; none while more than a quarter of
	// the last 64 calls failed (Svix down, not flaky). Negative turns quick
	// retries off. Defaults to 3: with one call in twenty failing at random,
	// one event in 160,000 then fails four times in a row and waits for the
	// backoff, stalling its organization's lane (one in 8,000 with 2).
	QuickRetries int
	// QuickRetryDelay is the wait before the first quick retry, doubling
	// for the next, with jitter. Defaults to 20 milliseconds.
	QuickRetryDelay time.Duration
	// RateLimitPause holds a lane back after Svix answered 429 without a
	// Retry-After header. Defaults to 1 second.
	RateLimitPause time.Duration
	// AuthPause holds all delivery back after Svix answered 401 or 403 (a bad
	// or revoked token), before trying again. Defaults to 30 seconds.
	AuthPause time.Duration
	// RateLimit caps Svix message creations per second across this process,
	// to stay under a plan's quota (Svix publishes about 200/s and 800/s).
	// Defaults to 0: no limit.
	RateLimit float64

	// HeartbeatInterval is how often a running relay proves itself alive in
	// outbox_relays. Defaults to 500 milliseconds.
	HeartbeatInterval time.Duration
	// LivenessTimeout is how long after its last heartbeat a relay is taken
	// for dead: its lanes may then be taken over, whatever their lease. A
	// relay whose heartbeats fail stops starting Svix calls after 3/4 of it.
	// Must be at least twice HeartbeatInterval. Defaults to 1500
	// milliseconds.
	LivenessTimeout time.Duration

	// PollInterval is how often the sweep looks for events nobody signalled
	// and retries whose time has come. Defaults to 1 second.
	PollInterval time.Duration
	// PollOnly turns off LISTEN, for connections through PgBouncer in
	// transaction pooling mode; the sweep alone finds work. Defaults to false.
	PollOnly bool
	// Channel is the NOTIFY channel listened on. Defaults to "outbox_relay"
	// (outbox.DefaultNotifyChannel).
	Channel string
	// DeliveredRetention is how long settled events are kept in
	// outbox_deliveries (no payload: ids, Svix message id, timestamps): at
	// least that long, at most an hour longer (it is dropped an hourly
	// partition at a time).
	// Defaults to 24 hours. Negative keeps no history.
	DeliveredRetention time.Duration
	// DisablePages turns pages off: every organization then gets a lane.
	// With pages (the default), Run takes organizations that have a single
	// pending event, never attempted, and no lane leased, paused or
	// suspended, in pages: one transaction holds a page's organizations (a
	// transaction-level advisory lock each) while their events are sent,
	// and records the outcomes, with no lane row written for them. It pays
	// off over a backlog of many organizations with one event each (after
	// a restart or an outage). Pages are tried for claim rounds of 16
	// organizations or more (fewer while rounds find few such
	// organizations), up to 4 at once (half the pool), each holding a pool
	// connection until it is settled; none with a pool of fewer than 4
	// (PoolConns counts them). Order and exactly-once are as for lanes, and
	// failover as quick: a relay that dies has its pages rolled back by the
	// server at once, and one that hangs or is cut off by the network stops
	// pinging its pages, which the server then ends after LivenessTimeout, as other relays take over its lanes then
	// (docs/page-path.md). Lane claims of every release take the page
	// locks, pages on or off. Defaults to false.
	DisablePages bool
	// ShutdownTimeout bounds how long Run waits, once its context ends, for
	// in-flight calls to finish and be settled. Defaults to 10 seconds.
	ShutdownTimeout time.Duration

	// Delegate, when set, makes Run hand every organization it would give a
	// turn (a NOTIFY, SignalRelay, the sweep's due and newly found lanes, a
	// dead replica's lanes) to Delegate instead of working its lane: with
	// the Temporal integration's Signaler, Run becomes the safety net that
	// starts the workflow of every organization whose signal was lost,
	// while the workflows drain the lanes with DrainOrganization. Run still
	// heartbeats (so the DrainOrganization calls of this process are fenced
	// and taken over like a relay's turns), sweeps and maintains history.
	// Organizations go to it in batches of up to 1000 when it is an
	// outbox.BatchSignaler. Defaults to nil: Run works the lanes itself.
	Delegate outbox.Signaler

	// TracerProvider makes the relay's spans: per event a delivery span
	// continuing the trace of the span that appended it (a failed Svix call
	// is an event of it), per lane turn, claim and settlement a span of its
	// own. Defaults to otel.GetTracerProvider(), the global one,
	// which records nothing until an OpenTelemetry SDK is installed.
	TracerProvider trace.TracerProvider
	// MeterProvider makes the relay's metrics (MetricEventsDelivered and the
	// other Metric constants, MetricHTTPClientDuration included). Defaults to
	// otel.GetMeterProvider(), the global one.
	MeterProvider metric.MeterProvider
	// BacklogTopOrganizations is how many organizations the backlog gauges
	// name (those whose oldest pending event is oldest); the rest are one
	// series, OtherOrganizations. It bounds the gauges' cardinality.
	// Negative names none. Defaults to 10.
	BacklogTopOrganizations int

	// Logger receives the relay's logs; a record logged while a span is
	// active carries its trace_id and span_id. Tokens are never logged,
	// payloads only at debug level. Defaults to slog.Default().
	Logger *slog.Logger
	// ID names this process in outbox_lanes.leased_by. Defaults to
	// hostname-pid.
	ID string

	// clock is the relay's one source of time for its own waiting and
	// measuring (timers, tickers, backoff, pauses, budgets); the database's
	// now() stays the clock of leases and due times, which replicas share.
	// Tests set a fake (export_test.go). Defaults to the real clock.
	clock clockwork.Clock
}

func (c Config) withDefaults() Config {
	config.Default(&c.Concurrency, DefaultConcurrency)
	config.Default(&c.PerOrgInFlight, DefaultPerOrgInFlight)
	config.Default(&c.BatchSize, DefaultBatchSize)
	config.Default(&c.BatchMaxBytes, DefaultBatchMaxBytes)
	config.Default(&c.LeaseDuration, DefaultLeaseDuration)
	config.Default(&c.SendTimeout, DefaultSendTimeout)
	config.Default(&c.MaxAttempts, DefaultMaxAttempts)
	config.Default(&c.RetryBaseDelay, DefaultRetryBaseDelay)
	config.Default(&c.RetryMaxDelay, DefaultRetryMaxDelay)
	config.Default(&c.QuickRetries, DefaultQuickRetries) // negative: none
	config.Default(&c.QuickRetryDelay, DefaultQuickRetryDelay)
	config.Default(&c.RateLimitPause, DefaultRateLimitPause)
	config.Default(&c.AuthPause, DefaultAuthPause)
	config.Default(&c.PollInterval, DefaultPollInterval)
	config.Default(&c.HeartbeatInterval, DefaultHeartbeatInterval)
	config.Default(&c.LivenessTimeout, DefaultLivenessTimeout)
	config.Default(&c.Channel, DefaultChannel)
	config.Default(&c.DeliveredRetention, DefaultDeliveredRetention)
	config.Default(&c.ShutdownTimeout, DefaultShutdownTimeout)
	config.Default(&c.BacklogTopOrganizations, DefaultBacklogTopOrganizations) // negative: none
	if c.Resolver == nil {
		c.Resolver = DefaultResolver
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	c.Logger = slog.New(telemetry.LogHandler(c.Logger.Handler()))
	if c.ID == "" {
		c.ID = defaultID()
	}
	if c.clock == nil {
		c.clock = clockwork.NewRealClock()
	}
	return c
}

// defaultID is hostname-pid.
func defaultID() string {
	host, _ := os.Hostname()
	return host + "-" + strconv.Itoa(os.Getpid())
}

// validate returns every bad field at once, each a *ConfigError.
func (c Config) validate() error {
	var errs []error
	bad := func(field, format string, args ...any) {
		errs = append(errs, &ConfigError{Field: field, Rule: fmt.Sprintf(format, args...)})
	}
	if c.SvixToken == "" {
		bad("SvixToken", "must be set")
	}
	if c.SvixServerURL != "" {
		if u, err := url.Parse(c.SvixServerURL); err != nil || u.Scheme == "" || u.Host == "" {
			bad("SvixServerURL", "must be an absolute URL, got %q", c.SvixServerURL)
		}
	}
	for _, f := range []struct {
		name  string
		value int
	}{{"Concurrency", c.Concurrency}, {"PerOrgInFlight", c.PerOrgInFlight}, {"BatchSize", c.BatchSize},
		{"BatchMaxBytes", c.BatchMaxBytes}, {"MaxAttempts", c.MaxAttempts}} {
		if f.value < 1 {
			bad(f.name, "must be at least 1, got %d", f.value)
		}
	}
	for _, f := range []struct {
		name  string
		value time.Duration
	}{{"LeaseDuration", c.LeaseDuration}, {"SendTimeout", c.SendTimeout}, {"RetryBaseDelay", c.RetryBaseDelay},
		{"RetryMaxDelay", c.RetryMaxDelay}, {"RateLimitPause", c.RateLimitPause}, {"AuthPause", c.AuthPause},
		{"PollInterval", c.PollInterval}, {"ShutdownTimeout", c.ShutdownTimeout},
		{"HeartbeatInterval", c.HeartbeatInterval}, {"LivenessTimeout", c.LivenessTimeout},
		{"QuickRetryDelay", c.QuickRetryDelay}} {
		if f.value <= 0 {
			bad(f.name, "must be positive, got %s", f.value)
		}
	}
	if c.LeaseDuration > 0 && c.SendTimeout >= c.LeaseDuration/2 {
		bad("SendTimeout", "must be under half of LeaseDuration (%s), got %s", c.LeaseDuration, c.SendTimeout)
	}
	if c.HeartbeatInterval > 0 && c.LivenessTimeout < 2*c.HeartbeatInterval {
		bad("LivenessTimeout", "must be at least twice HeartbeatInterval (%s), got %s", c.HeartbeatInterval, c.LivenessTimeout)
	}
	if c.RetryMaxDelay < c.RetryBaseDelay {
		bad("RetryMaxDelay", "must be at least RetryBaseDelay (%s), got %s", c.RetryBaseDelay, c.RetryMaxDelay)
	}
	if c.RateLimit < 0 {
		bad("RateLimit", "must not be negative, got %g", c.RateLimit)
	}
	if rule := sqlname.ChannelRule(c.Channel); rule != "" {
		bad("Channel", "%s", rule)
	}
	if rule := sqlname.SchemaRule(c.Schema); rule != "" {
		errs = append(errs, &ConfigError{Field: "Schema", Rule: rule, Err: sqlname.ErrInvalidSchema})
	}
	return config.Join("relay", errs)
}
