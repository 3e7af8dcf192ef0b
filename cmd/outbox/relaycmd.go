package main

import (
	"context"
	"errors"
	"expvar"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"runtime"
	"sync"
	"time"

	"github.com/outboxrelay/outbox/relay"
)

func runRelay(ctx context.Context, env *environment, args []string) error {
	var (
		db        dbFlags
		cfg       relay.Config
		logFormat string
		logLevel  string
		httpAddr  string
	)
	fs := newFlagSet(env, "relay", "outbox relay [flags]\n\n"+
		"Deliver outbox events to Svix until SIGINT or SIGTERM, then settle in-flight work and release\n"+
		"leases. Run as many replicas as you like against one database: organizations are shared out\n"+
		"through leases. Needs SVIX_AUTH_TOKEN (and SVIX_SERVER_URL for a non-default Svix).",
		"  SVIX_AUTH_TOKEN=sk_... outbox relay --schema outbox --http-addr :8080\n"+
			"  outbox relay --poll-only --poll-interval 500ms   # behind PgBouncer (transaction pooling)\n"+
			"  outbox relay --rate-limit 180 --log-format json")
	db.register(fs)
	fs.IntVar(&cfg.Concurrency, "concurrency", 64, "Svix calls in flight at once, across organizations")
	fs.IntVar(&cfg.PerOrgInFlight, "per-org-in-flight", 1, "Svix calls in flight per organization (1 = strict order)")
	fs.IntVar(&cfg.BatchSize, "batch-size", 100, "events per lane turn")
	fs.DurationVar(&cfg.PollInterval, "poll-interval", time.Second, "how often to sweep for unsignalled events and due retries")
	fs.BoolVar(&cfg.PollOnly, "poll-only", false, "no LISTEN: find work by sweeping only (for PgBouncer transaction pooling)")
	fs.StringVar(&cfg.Channel, "channel", "outbox_relay", "NOTIFY channel to listen on")
	fs.IntVar(&cfg.MaxAttempts, "max-attempts", 25, "attempts before an event is dead-lettered")
	fs.Float64Var(&cfg.RateLimit, "rate-limit", 0, "most Svix messages per second from this process (0 = no limit)")
	fs.DurationVar(&cfg.RetryBaseDelay, "retry-base-delay", time.Second, "first retry's backoff ceiling (doubles per attempt, full jitter)")
	fs.DurationVar(&cfg.RetryMaxDelay, "retry-max-delay", 10*time.Minute, "backoff cap")
	fs.DurationVar(&cfg.LeaseDuration, "lease", 30*time.Second, "lane lease; a crashed relay's lanes are taken over after it")
	fs.DurationVar(&cfg.SendTimeout, "send-timeout", 10*time.Second, "deadline of each Svix call")
	fs.DurationVar(&cfg.ShutdownTimeout, "shutdown-timeout", 10*time.Second, "how long to wait for in-flight calls on shutdown")
	fs.DurationVar(&cfg.DeliveredRetention, "retention", 24*time.Hour, "how long delivery history is kept (negative: none)")
	fs.StringVar(&cfg.ID, "id", "", "name of this relay in the lease table (default host-pid)")
	fs.StringVar(&logFormat, "log-format", "text", "log format: text or json")
	fs.StringVar(&logLevel, "log-level", "info", "log level: debug, info, warn or error (debug logs payloads)")
	fs.StringVar(&httpAddr, "http-addr", "", "serve /healthz, /readyz and /debug/vars (expvar: memory, goroutines, relay counters) on this address (e.g. :8080)")
	if err := parse(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usagef("relay takes no arguments, got %q", fs.Args())
	}
	logger, err := newLogger(env, logFormat, logLevel)
	if err != nil {
		return err
	}
	cfg.Logger, cfg.Schema = logger, db.schema
	cfg.SvixToken, cfg.SvixServerURL = env.getenv("SVIX_AUTH_TOKEN"), env.getenv("SVIX_SERVER_URL")
	if cfg.SvixToken == "" {
		return usagef("SVIX_AUTH_TOKEN is not set: the relay needs a Svix API token")
	}
	pool, err := db.connect(ctx, env)
	if err != nil {
		return err
	}
	defer pool.Close()
	r, err := relay.New(pool, cfg)
	if err != nil {
		return err
	}
	if httpAddr != "" {
		stop, err := serveHealth(ctx, httpAddr, r, logger)
		if err != nil {
			return err
		}
		defer stop()
	}
	return r.Run(ctx)
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

var publishOnce sync.Once

// publishVars adds the relay's counters and the goroutine count to expvar,
// beside the memstats and cmdline it always has.
func publishVars(r *relay.Relay) {
	publishOnce.Do(func() {
		expvar.Publish("goroutines", expvar.Func(func() any { return runtime.NumGoroutine() }))
		expvar.Publish("relay", expvar.Func(func() any { return r.Stats() }))
	})
}

// serveHealth serves /healthz (the process is up), /readyz (the relay is
// running and its wake-up path works) and /debug/vars.
func serveHealth(ctx context.Context, addr string, r *relay.Relay, log *slog.Logger) (func(), error) {
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
	publishVars(r)
	mux.Handle("GET /debug/vars", expvar.Handler())
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("relay: health server stopped", "error", err)
		}
	}()
	log.InfoContext(ctx, "relay: serving /healthz and /readyz", "addr", ln.Addr().String())
	return func() {
		shutdownCtx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_ = srv.Shutdown(shutdownCtx)
	}, nil
}
