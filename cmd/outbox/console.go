package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	svix "github.com/svix/svix-webhooks/go"

	"github.com/outboxrelay/outbox/console"
)

// consoleTokenEnv names the variable the console's token may come from, so
// that it stays out of the process list.
const consoleTokenEnv = "OUTBOX_CONSOLE_TOKEN"

func runConsole(ctx context.Context, env *environment, args []string) error {
	var (
		db                dbFlags
		addr, token       string
		certFile, keyFile string
		readOnly          bool
	)
	fs := newFlagSet(env, "console --http-addr ADDR",
		"Serve the operator console: backlog, organizations, events and dead letters; requeue, purge, pause and resume.\n"+
			"A port alone (:8081) listens on loopback. Any other address needs a token (--console-token or $"+consoleTokenEnv+").\n"+
			"With SVIX_AUTH_TOKEN set, an event's delivery attempts are fetched live from Svix.",
		"  outbox console --http-addr :8081\n  OUTBOX_CONSOLE_TOKEN=... outbox console --http-addr 0.0.0.0:8081 --tls-cert c.pem --tls-key k.pem")
	db.register(fs)
	fs.StringVar(&addr, "http-addr", "", "address to serve the console on (required); a port alone (:8081) is loopback")
	fs.StringVar(&token, "console-token", "", "the token operators log in with, at least 16 characters (default $"+consoleTokenEnv+")")
	fs.StringVar(&certFile, "tls-cert", "", "serve HTTPS with this certificate (PEM); the session cookie is then Secure")
	fs.StringVar(&keyFile, "tls-key", "", "the certificate's private key (PEM)")
	fs.BoolVar(&readOnly, "read-only", false, "hide and refuse every action (requeue, purge, pause, resume)")
	if err := parse(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usagef("console takes no arguments")
	}
	if addr == "" {
		return usagef("--http-addr is required")
	}
	if (certFile == "") != (keyFile == "") {
		return usagef("--tls-cert and --tls-key go together")
	}
	addr, err := healthAddr(addr)
	if err != nil {
		return err
	}
	if token, err = consoleToken(env, token, addr); err != nil {
		return err
	}
	pool, err := db.connect(ctx, env)
	if err != nil {
		return err
	}
	defer pool.Close()
	logger := slog.New(slog.NewTextHandler(env.stderr, nil))
	c, err := newConsole(env, pool, console.Config{Schema: db.schema, Token: token, ReadOnly: readOnly, Logger: logger})
	if err != nil {
		return err
	}
	defer c.Close()
	return serveConsole(ctx, addr, certFile, keyFile, c, logger)
}

// newConsole builds the console on pool, asking Svix for delivery attempts
// when SVIX_AUTH_TOKEN is set.
func newConsole(env *environment, pool *pgxpool.Pool, cfg console.Config) (*console.Console, error) {
	if svixToken := env.getenv("SVIX_AUTH_TOKEN"); svixToken != "" {
		opts := &svix.SvixOptions{}
		if u := env.getenv("SVIX_SERVER_URL"); u != "" {
			var err error
			if opts.ServerUrl, err = url.Parse(u); err != nil {
				return nil, usagef("SVIX_SERVER_URL: %v", err)
			}
		}
		client, err := svix.New(svixToken, opts)
		if err != nil {
			return nil, fmt.Errorf("svix client: %w", err)
		}
		cfg.Svix = client
	}
	c, err := console.New(pool, cfg)
	if err != nil {
		return nil, usagef("%v", err)
	}
	return c, nil
}

// consoleToken returns the console's token from its flag or, failing that,
// $OUTBOX_CONSOLE_TOKEN, and refuses an address off loopback without one.
func consoleToken(env *environment, flagValue, addr string) (string, error) {
	token := flagValue
	if token == "" {
		token = env.getenv(consoleTokenEnv)
	}
	if token == "" && !loopback(addr) {
		return "", usagef("--http-addr %s is not a loopback address: set --console-token or $%s", addr, consoleTokenEnv)
	}
	return token, nil
}

// loopback reports whether host:port listens on a loopback interface only.
func loopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// serveConsole serves h on addr until ctx ends.
func serveConsole(ctx context.Context, addr, certFile, keyFile string, h http.Handler, log *slog.Logger) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("--http-addr: %w", err)
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second, ReadTimeout: 30 * time.Second, WriteTimeout: 60 * time.Second}
	scheme := "http"
	if certFile != "" {
		scheme = "https"
	}
	log.InfoContext(ctx, "console: serving", "url", scheme+"://"+ln.Addr().String()+"/")
	done := make(chan error, 1)
	go func() {
		if certFile != "" {
			done <- srv.ServeTLS(ln, certFile, keyFile)
		} else {
			done <- srv.Serve(ln)
		}
	}()
	select {
	case err := <-done:
		return fmt.Errorf("console: %w", err)
	case <-ctx.Done():
	}
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(shutdownCtx); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("console: shut down: %w", err)
	}
	return nil
}
