package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"runtime"
	"time"

	"github.com/outboxrelay/outbox/console"
	"github.com/outboxrelay/outbox/relay"
)

// relayOptions are what `outbox relay` takes from its flags.
type relayOptions struct {
	db        dbFlags
	cfg       relay.Config
	logFormat string
	logLevel  string
	httpAddr  string
	otlp      string
	temporal  temporalOptions
	console   relayConsoleOptions
}

// relayConsoleOptions are relay --console's flags: the operator console
// served beside /metrics on --http-addr, under /console/.
type relayConsoleOptions struct {
	enabled, readOnly bool
	token             string
}

// newRelayFlagSet returns the flags of `outbox relay`, each defaulting to
// the relay's own default constant.
func newRelayFlagSet(env *environment, o *relayOptions) *flagSet {
	fs := newFlagSet(env, "relay", "outbox relay [flags]\n\n"+
		"Deliver outbox events to Svix until SIGINT or SIGTERM, then settle in-flight work and release\n"+
		"leases. Run as many replicas as you like against one database: organizations are shared out\n"+
		"through leases. Needs SVIX_AUTH_TOKEN (and SVIX_SERVER_URL for a non-default Svix).",
		"  SVIX_AUTH_TOKEN=sk_... outbox relay --schema outbox --http-addr :8080\n"+
			"  outbox relay --poll-only --poll-interval 500ms   # behind PgBouncer (transaction pooling)\n"+
			"  outbox relay --rate-limit 180 --log-format json\n"+
			"  TEMPORAL_ADDRESS=temporal:7233 outbox relay --temporal   # one workflow per organization")
	o.db.register(fs)
	o.temporal.register(fs)
	c := &o.cfg
	fs.IntVar(&c.Concurrency, "concurrency", relay.DefaultConcurrency, "Svix calls in flight at once, across organizations")
	fs.IntVar(&c.PerOrgInFlight, "per-org-in-flight", relay.DefaultPerOrgInFlight, "Svix calls in flight per organization (1 = strict order)")
	fs.IntVar(&c.BatchSize, "batch-size", relay.DefaultBatchSize, "events per lane turn")
	fs.IntVar(&c.BatchMaxBytes, "batch-max-bytes", relay.DefaultBatchMaxBytes, "payload bytes per lane turn (always at least one event)")
	fs.DurationVar(&c.PollInterval, "poll-interval", relay.DefaultPollInterval, "how often to sweep for unsignalled events and due retries")
	fs.BoolVar(&c.PollOnly, "poll-only", false, "no LISTEN: find work by sweeping only (for PgBouncer transaction pooling)")
	fs.StringVar(&c.Channel, "channel", relay.DefaultChannel, "NOTIFY channel to listen on")
	fs.Var(negated{&c.DisablePages}, "pages", "take organizations with a single pending event in pages, without lane rows (--pages=false: a lane for every organization)")
	fs.IntVar(&c.MaxAttempts, "max-attempts", relay.DefaultMaxAttempts, "attempts before an event is dead-lettered")
	fs.Float64Var(&c.RateLimit, "rate-limit", 0, "most Svix messages per second from this process (0 = no limit)")
	fs.DurationVar(&c.RetryBaseDelay, "retry-base-delay", relay.DefaultRetryBaseDelay, "first retry's backoff ceiling (doubles per attempt, full jitter)")
	fs.DurationVar(&c.RetryMaxDelay, "retry-max-delay", relay.DefaultRetryMaxDelay, "backoff cap")
	fs.IntVar(&c.QuickRetries, "quick-retries", relay.DefaultQuickRetries, "quick retries of a fast transient failure within the turn, while Svix looks flaky, not down (negative: none)")
	fs.DurationVar(&c.QuickRetryDelay, "quick-retry-delay", relay.DefaultQuickRetryDelay, "wait before the first quick retry (doubles, jitter)")
	fs.DurationVar(&c.HeartbeatInterval, "heartbeat-interval", relay.DefaultHeartbeatInterval, "how often this relay proves itself alive")
	fs.DurationVar(&c.LivenessTimeout, "liveness-timeout", relay.DefaultLivenessTimeout, "after it, a silent relay's lanes are taken over; a relay that cannot heartbeat stops sending after 3/4 of it")
	fs.DurationVar(&c.RateLimitPause, "rate-limit-pause", relay.DefaultRateLimitPause, "lane pause after a 429 without Retry-After")
	fs.DurationVar(&c.AuthPause, "auth-pause", relay.DefaultAuthPause, "pause of all delivery after Svix refused the token (401/403)")
	fs.DurationVar(&c.LeaseDuration, "lease", relay.DefaultLeaseDuration, "lane lease; a crashed relay's lanes are taken over after it")
	fs.DurationVar(&c.SendTimeout, "send-timeout", relay.DefaultSendTimeout, "deadline of each Svix call")
	fs.DurationVar(&c.ShutdownTimeout, "shutdown-timeout", relay.DefaultShutdownTimeout, "how long to wait for in-flight calls on shutdown")
	fs.DurationVar(&c.DeliveredRetention, "retention", relay.DefaultDeliveredRetention, "how long delivery history is kept (negative: none)")
	fs.StringVar(&c.ID, "id", "", "name of this relay in the lease table (default host-pid)")
	fs.StringVar(&o.logFormat, "log-format", "text", "log format: text or json")
	fs.StringVar(&o.logLevel, "log-level", "info", "log level: debug, info, warn or error (debug logs payloads)")
	fs.StringVar(&o.httpAddr, "http-addr", "", "serve /healthz, /readyz, /metrics (Prometheus) and /debug/vars (memory, goroutines, relay counters) on this address; a port alone (:8080) is loopback, 0.0.0.0:8080 every interface")
	fs.BoolVar(&o.console.enabled, "console", false, "also serve the operator console under /console/ on --http-addr (off loopback it needs --console-token or $"+consoleTokenEnv+")")
	fs.StringVar(&o.console.token, "console-token", "", "with --console: the token operators log in with, at least 16 characters (default $"+consoleTokenEnv+")")
	fs.BoolVar(&o.console.readOnly, "console-read-only", false, "with --console: hide and refuse every action")
	fs.StringVar(&o.otlp, "otlp-endpoint", "", "export traces over OTLP/HTTP to this URL (default: $OTEL_EXPORTER_OTLP_TRACES_ENDPOINT or $OTEL_EXPORTER_OTLP_ENDPOINT when set; else no traces)")
	return fs
}

func runRelay(ctx context.Context, env *environment, args []string) error {
	var o relayOptions
	fs := newRelayFlagSet(env, &o)
	if err := parse(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usagef("relay takes no arguments, got %q", fs.Args())
	}
	if err := o.temporal.checkFlags(fs); err != nil {
		return err
	}
	db, cfg, logFormat, logLevel, httpAddr := o.db, o.cfg, o.logFormat, o.logLevel, o.httpAddr
	logger, err := newLogger(env, logFormat, logLevel)
	if err != nil {
		return err
	}
	cfg.Logger, cfg.Schema = logger, db.schema
	cfg.SvixToken, cfg.SvixServerURL = env.getenv("SVIX_AUTH_TOKEN"), env.getenv("SVIX_SERVER_URL")
	if cfg.SvixToken == "" {
		return usagef("SVIX_AUTH_TOKEN is not set: the relay needs a Svix API token")
	}
	obs, err := newObservability(ctx, env, o.otlp)
	if err != nil {
		return err
	}
	defer obs.close()
	cfg.TracerProvider, cfg.MeterProvider = obs.tracers, obs.meters
	// Sized from what the relay says it needs (pgxpool's default of
	// max(4, CPUs) would queue 64 lanes' claims and settlements).
	pool, err := db.connectSized(ctx, env, relay.PoolConns(cfg))
	if err != nil {
		return err
	}
	defer pool.Close()
	extra, closeConsole, err := o.relayConsole(ctx, env, logger)
	if err != nil {
		return err
	}
	defer closeConsole()
	serve := func(r *relay.Relay) (func(), error) {
		if httpAddr == "" {
			return func() {}, nil
		}
		return serveHealth(ctx, httpAddr, r, obs.metrics, extra, logger)
	}
	if o.temporal.enabled {
		return runTemporalRelay(ctx, env, &o.temporal, pool, cfg, logger, serve)
	}
	r, err := relay.New(pool, cfg)
	if err != nil {
		return err
	}
	stop, err := serve(r)
	if err != nil {
		return err
	}
	defer stop()
	return r.Run(ctx)
}

// relayConsole builds relay --console's console, on a small pool of its
// own so that its pages never wait for, nor hold, the relay's connections;
// nil without --console.
func (o *relayOptions) relayConsole(ctx context.Context, env *environment, logger *slog.Logger) (http.Handler, func(), error) {
	if !o.console.enabled {
		return nil, func() {}, nil
	}
	if o.httpAddr == "" {
		return nil, nil, usagef("--console needs --http-addr")
	}
	addr, err := healthAddr(o.httpAddr)
	if err != nil {
		return nil, nil, err
	}
	token, err := consoleToken(env, o.console.token, addr)
	if err != nil {
		return nil, nil, err
	}
	pool, err := o.db.connectSized(ctx, env, 2)
	if err != nil {
		return nil, nil, err
	}
	c, err := newConsole(env, pool, console.Config{Schema: o.db.schema, Prefix: "/console", Token: token, ReadOnly: o.console.readOnly, Logger: logger})
	if err != nil {
		pool.Close()
		return nil, nil, err
	}
	return c, func() { c.Close(); pool.Close() }, nil
}

func newLogger(env *environment, format, level string) (*slog.Logger, error) {
	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(level)); err != nil {
		return nil, usagef("--log-level must be debug, info, warn or error, got %q", level)
	}
	opts := &slog.HandlerOptions{Level: lvl}
	switch format {
	case "text":
		return slog.New(slog.NewTextHandler(env.stderr, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(env.stderr, opts)), nil
	}
	return nil, usagef("--log-format must be text or json, got %q", format)
}

// vars is what /debug/vars serves: expvar's shape for the memory figures,
// but nothing that can hold a secret. (expvar itself always publishes the
// command line, which holds --database-url and its password.)
type vars struct {
	Goroutines int         `json:"goroutines"`
	Memstats   memstats    `json:"memstats"`
	Relay      relay.Stats `json:"relay"`
}

type memstats struct {
	Alloc, TotalAlloc, Sys, HeapAlloc, HeapInuse, HeapObjects uint64
	NumGC                                                     uint32
	PauseTotalNs                                              uint64
}

func readVars(r *relay.Relay) vars {
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return vars{Goroutines: runtime.NumGoroutine(), Relay: r.Stats(), Memstats: memstats{
		Alloc: m.Alloc, TotalAlloc: m.TotalAlloc, Sys: m.Sys, HeapAlloc: m.HeapAlloc, HeapInuse: m.HeapInuse,
		HeapObjects: m.HeapObjects, NumGC: m.NumGC, PauseTotalNs: m.PauseTotalNs,
	}}
}

// healthAddr resolves --http-addr: an address without a host (":8080")
// means loopback, so the endpoints are public only when the operator says
// so ("0.0.0.0:8080", "[::]:8080", a pod IP).
func healthAddr(addr string) (string, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return "", usagef("--http-addr must be host:port or :port, got %q", addr)
	}
	if host == "" {
		host = "127.0.0.1"
	}
	return net.JoinHostPort(host, port), nil
}

// serveHealth serves /healthz (the process is up), /readyz (the relay is
// running and its wake-up path works), /metrics (Prometheus's text format)
// and /debug/vars.
// With consoleHandler non-nil it serves the console under /console/ too.
func serveHealth(ctx context.Context, addr string, r *relay.Relay, metrics, consoleHandler http.Handler, log *slog.Logger) (func(), error) {
	addr, err := healthAddr(addr)
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("--http-addr: %w", err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, "ok") })
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		if !r.Ready() {
			http.Error(w, "not ready", http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ready")
	})
	mux.Handle("GET /metrics", metrics)
	mux.HandleFunc("GET /debug/vars", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json; charset=utf-8")
		_ = json.NewEncoder(w).Encode(readVars(r))
	})
	if consoleHandler != nil {
		mux.Handle("/console/", consoleHandler)
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("relay: health server stopped", "error", err)
		}
	}()
	log.InfoContext(ctx, "relay: serving /healthz, /readyz, /metrics and /debug/vars", "addr", ln.Addr().String())
	return func() {
		shutdownCtx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_ = srv.Shutdown(shutdownCtx)
	}, nil
}
