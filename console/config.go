package console

import (
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	svix "github.com/svix/svix-webhooks/go"

	"github.com/outboxrelay/outbox/relay"
)

// ErrInvalidConfig is wrapped by New's errors for a Config it refuses; the
// error names the field.
var ErrInvalidConfig = errors.New("invalid console config")

// Config tunes a Console. The zero value serves a read-write console with
// no login, at the root path, on the default schema.
type Config struct {
	// Schema is the PostgreSQL schema holding outbox's tables. Defaults to
	// "" (the connection's search_path).
	Schema string
	// Prefix is the path the console is mounted at, without a trailing
	// slash ("/outbox"); links and redirects start with it. Defaults to "".
	Prefix string
	// Token, when set, is the credential operators log in with (at least
	// 16 characters). Defaults to "": no login, for a loopback listener
	// only.
	Token string
	// ReadOnly hides every action and refuses every mutating request.
	// Defaults to false.
	ReadOnly bool
	// Svix, when set, is used to fetch a delivered event's message
	// attempts per endpoint live from Svix. Defaults to nil: the event page
	// says no token is configured.
	Svix *svix.Svix
	// Resolver maps an organization to its Svix application, as the relay
	// does. Defaults to relay.DefaultResolver.
	Resolver relay.Resolver
	// Logger receives one line per mutating request (who, what, how many
	// rows), never a payload or a secret. Defaults to slog.Default().
	Logger *slog.Logger
	// SummaryInterval is how old the installation-wide summary (the
	// overview's counts, the organizations list, the delivery chart) may get
	// before a page starts refreshing it in the background; a refresh also
	// waits at least 20 times the last one's duration, so a slow pass over
	// a large backlog takes at most 5% of the database's time. Defaults to
	// 10 seconds.
	SummaryInterval time.Duration
	// SessionTTL is how long a login lasts. Defaults to 12 hours.
	SessionTTL time.Duration
}

const (
	defaultSummaryInterval = 10 * time.Second
	defaultSessionTTL      = 12 * time.Hour
	minTokenLength         = 16
)

// withDefaults returns cfg with its defaults applied and checks it.
func (cfg Config) withDefaults() (Config, error) {
	var errs []error
	bad := func(field, rule string) {
		errs = append(errs, fmt.Errorf("console: %s %s: %w", field, rule, ErrInvalidConfig))
	}
	if cfg.Token != "" && len(cfg.Token) < minTokenLength {
		bad("Token", fmt.Sprintf("must be at least %d characters", minTokenLength))
	}
	if cfg.Prefix != "" && (!strings.HasPrefix(cfg.Prefix, "/") || strings.HasSuffix(cfg.Prefix, "/")) {
		bad("Prefix", `must start with "/" and not end with one`)
	}
	if cfg.SummaryInterval < 0 {
		bad("SummaryInterval", "must not be negative")
	}
	if cfg.SessionTTL < 0 {
		bad("SessionTTL", "must not be negative")
	}
	if err := errors.Join(errs...); err != nil {
		return cfg, err
	}
	if cfg.SummaryInterval == 0 {
		cfg.SummaryInterval = defaultSummaryInterval
	}
	if cfg.SessionTTL == 0 {
		cfg.SessionTTL = defaultSessionTTL
	}
	if cfg.Resolver == nil {
		cfg.Resolver = relay.DefaultResolver
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	return cfg, nil
}
