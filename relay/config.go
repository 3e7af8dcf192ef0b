package relay

import (
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"time"

	"github.com/outboxrelay/outbox"
	"github.com/outboxrelay/outbox/migrations"
)

// ErrInvalidConfig is wrapped by every Config validation error.
var ErrInvalidConfig = errors.New("relay: invalid config")

// Config tunes a Relay. Only SvixToken is required; every other field has a
// documented default, applied by New.
type Config struct {
	// SvixToken is the Svix API token. Required. It is never logged.
	SvixToken string
	// SvixServerURL is the Svix API base URL. Defaults to the region the
	// token names (the Svix SDK's own choice).
	SvixServerURL string
	// HTTPClient sends the Svix calls. Defaults to a client with keep-alive
	// connections sized for Concurrency. Its own Timeout should be zero or
	// above SendTimeout; SendTimeout bounds every call either way.
	HTTPClient *http.Client

	// Schema is the PostgreSQL schema holding outbox's tables. Defaults to
	// "", which leaves names unqualified so the pool's search_path decides.
	Schema string
	// Resolver maps an organization to its Svix application. Defaults to
	// DefaultResolver: the application whose uid is the organization id,
	// created on first use.
	Resolver Resolver

	// Concurrency is the most Svix calls in flight at once across all
	// organizations; it also bounds the lanes worked at once. Defaults to 64.
	Concurrency int
	// PerOrgInFlight is the most Svix calls in flight at once for one
	// organization. 1 creates an organization's events strictly in id order.
	// Defaults to 1.
	PerOrgInFlight int
	// BatchSize is the most events one lane turn claims. A busy organization
	// gets one turn of at most BatchSize events, then goes to the back of the
	// queue, so it cannot starve the others. Defaults to 100.
	BatchSize int
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

	// PollInterval is how often the sweep looks for events nobody signalled
	// and retries whose time has come. Defaults to 1 second.
	PollInterval time.Duration
	// PollOnly turns off LISTEN, for connections through PgBouncer in
	// transaction pooling mode; the sweep alone finds work. Defaults to false.
	PollOnly bool
	// Channel is the NOTIFY channel listened on. Defaults to
	// outbox.DefaultNotifyChannel.
	Channel string
	// DeliveredRetention is how long settled events are kept in
	// outbox_deliveries (no payload: ids, Svix message id, timestamps).
	// Defaults to 24 hours. Negative keeps no history.
	DeliveredRetention time.Duration
	// ShutdownTimeout bounds how long Run waits, once its context ends, for
	// in-flight calls to finish and be settled. Defaults to 10 seconds.
	ShutdownTimeout time.Duration

	// Logger receives the relay's logs. Tokens are never logged, payloads
	// only at debug level. Defaults to slog.Default().
	Logger *slog.Logger
	// ID names this process in outbox_lanes.leased_by. Defaults to
	// hostname-pid.
	ID string
}

func (c Config) withDefaults() Config {
	setDefault(&c.Concurrency, 64)
	setDefault(&c.PerOrgInFlight, 1)
	setDefault(&c.BatchSize, 100)
	setDefault(&c.LeaseDuration, 30*time.Second)
	setDefault(&c.SendTimeout, 10*time.Second)
	setDefault(&c.MaxAttempts, 25)
	setDefault(&c.RetryBaseDelay, time.Second)
	setDefault(&c.RetryMaxDelay, 10*time.Minute)
	setDefault(&c.RateLimitPause, time.Second)
	setDefault(&c.AuthPause, 30*time.Second)
	setDefault(&c.PollInterval, time.Second)
	setDefault(&c.Channel, outbox.DefaultNotifyChannel)
	setDefault(&c.DeliveredRetention, 24*time.Hour)
	setDefault(&c.ShutdownTimeout, 10*time.Second)
	if c.Resolver == nil {
		c.Resolver = DefaultResolver
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.ID == "" {
		host, _ := os.Hostname()
		c.ID = host + "-" + strconv.Itoa(os.Getpid())
	}
	return c
}

func setDefault[T comparable](field *T, value T) {
	var zero T
	if *field == zero {
		*field = value
	}
}

func (c Config) validate() error {
	var errs []error
	bad := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf("%w: "+format, append([]any{ErrInvalidConfig}, args...)...))
	}
	if c.SvixToken == "" {
		bad("SvixToken is required")
	}
	if c.SvixServerURL != "" {
		if u, err := url.Parse(c.SvixServerURL); err != nil || u.Scheme == "" || u.Host == "" {
			bad("SvixServerURL must be an absolute URL, got %q", c.SvixServerURL)
		}
	}
	for _, f := range []struct {
		name  string
		value int
	}{{"Concurrency", c.Concurrency}, {"PerOrgInFlight", c.PerOrgInFlight}, {"BatchSize", c.BatchSize}, {"MaxAttempts", c.MaxAttempts}} {
		if f.value < 1 {
			bad("%s must be at least 1, got %d", f.name, f.value)
		}
	}
	for _, f := range []struct {
		name  string
		value time.Duration
	}{{"LeaseDuration", c.LeaseDuration}, {"SendTimeout", c.SendTimeout}, {"RetryBaseDelay", c.RetryBaseDelay},
		{"RetryMaxDelay", c.RetryMaxDelay}, {"RateLimitPause", c.RateLimitPause}, {"AuthPause", c.AuthPause},
		{"PollInterval", c.PollInterval}, {"ShutdownTimeout", c.ShutdownTimeout}} {
		if f.value <= 0 {
			bad("%s must be positive, got %s", f.name, f.value)
		}
	}
	if c.LeaseDuration > 0 && c.SendTimeout >= c.LeaseDuration/2 {
		bad("SendTimeout (%s) must be under half of LeaseDuration (%s)", c.SendTimeout, c.LeaseDuration)
	}
	if c.RetryMaxDelay < c.RetryBaseDelay {
		bad("RetryMaxDelay (%s) must be at least RetryBaseDelay (%s)", c.RetryMaxDelay, c.RetryBaseDelay)
	}
	if c.RateLimit < 0 {
		bad("RateLimit must not be negative, got %g", c.RateLimit)
	}
	if err := outbox.ValidateChannel(c.Channel); err != nil {
		bad("Channel: %v", err)
	}
	if err := migrations.ValidateSchema(c.Schema); err != nil {
		bad("%v", err)
	}
	return errors.Join(errs...)
}
