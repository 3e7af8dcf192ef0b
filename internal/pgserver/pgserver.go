// Package pgserver finds or starts a PostgreSQL server for the tests and the
// demo, in this order:
//
//  1. a URL from the environment (the variables the caller names, such as
//     OUTBOX_TEST_DATABASE_URL or DATABASE_URL);
//  2. each of the caller's Starters, in order: the tests (internal/pgtest)
//     and the demo add internal/pgcontainer's, a container through
//     testcontainers-go when a Docker daemon answers (a starter that fails
//     is logged in one line, and the next way tried);
//  3. a throwaway cluster made with the local PostgreSQL binaries (initdb and
//     pg_ctl on PATH or in /usr/lib/postgresql/*/bin), run as the postgres
//     user when the process is root.
//
// When none works, the error names every way tried. The package uses only
// the standard library.
package pgserver

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
)

// Server is a PostgreSQL server the caller can connect to. Make one with
// Start, StartLocal or NewServer.
type Server struct {
	// URL connects to the server as a superuser (or the environment's user).
	URL string
	// Source says where the server came from: "env:NAME", "testcontainers"
	// or "local".
	Source string

	stop    func() error
	restart func(ctx context.Context, mode string) error
}

// NewServer returns a Server at url, for a Starter: source says where it
// came from and stop, which may be nil, shuts it down.
func NewServer(url, source string, stop func() error) *Server {
	return &Server{URL: url, Source: source, stop: stop}
}

// ErrCannotRestart is returned by Restart for servers this package did not
// start from local binaries.
var ErrCannotRestart = errors.New("only a local cluster started by this package can be restarted")

// Restart restarts a local cluster with pg_ctl's shutdown mode "fast" or
// "immediate" (a crash: no checkpoint, recovery on start), waiting until it
// accepts connections again on the same port.
func (s *Server) Restart(ctx context.Context, mode string) error {
	if s == nil || s.restart == nil {
		return fmt.Errorf("pgserver: restart: %w", ErrCannotRestart)
	}
	return s.restart(ctx, mode)
}

// StartLocal starts a throwaway cluster from the local PostgreSQL binaries,
// whatever the environment says: for tests that must control the server.
func StartLocal(ctx context.Context, logf func(format string, args ...any)) (*Server, error) {
	if logf == nil {
		logf = func(string, ...any) {}
	}
	return startLocal(ctx, logf)
}

// Stop shuts the server down and removes its files when this package started
// it; for a server from the environment it does nothing.
func (s *Server) Stop() error {
	if s == nil || s.stop == nil {
		return nil
	}
	return s.stop()
}

// Options tunes Start.
type Options struct {
	// EnvVars are the environment variables to read a URL from, first set
	// wins. Defaults (when nil) to OUTBOX_TEST_DATABASE_URL, DATABASE_URL;
	// an empty, non-nil slice reads none.
	EnvVars []string
	// Logf reports progress (which way was taken). Defaults to discarding.
	Logf func(format string, args ...any)
	// Starters are tried, in order, after the environment and before the
	// local binaries. Defaults to none.
	Starters []Starter
}

// Starter is one more way to a server, such as a container.
type Starter struct {
	// Name says what the starter tries, for the error when nothing worked.
	Name string
	// Start returns a running server, or an error saying why not.
	Start func(ctx context.Context, logf func(format string, args ...any)) (*Server, error)
}

// ErrNoServer is returned when no way to a PostgreSQL server worked.
var ErrNoServer = errors.New("no PostgreSQL server available")

// Start returns a server found or started in the documented order.
func Start(ctx context.Context, opts Options) (*Server, error) {
	if opts.EnvVars == nil {
		opts.EnvVars = []string{"OUTBOX_TEST_DATABASE_URL", "DATABASE_URL"}
	}
	if opts.Logf == nil {
		opts.Logf = func(string, ...any) {}
	}
	for _, name := range opts.EnvVars {
		if url := os.Getenv(name); url != "" {
			return &Server{URL: url, Source: "env:" + name}, nil
		}
	}
	var tried []string
	for _, s := range append(opts.Starters, Starter{Name: "local binaries", Start: startLocal}) {
		srv, err := s.Start(ctx, opts.Logf)
		if err == nil {
			return srv, nil
		}
		opts.Logf("pgserver: %s: %v; trying the next way", s.Name, err)
		tried = append(tried, s.Name+": "+err.Error())
	}
	return nil, fmt.Errorf("%w: set %s to a server's URL or install PostgreSQL's server binaries "+
		"(Debian: apt-get install postgresql); tried: %s",
		ErrNoServer, strings.Join(append(opts.EnvVars, "DATABASE_URL")[:max(1, len(opts.EnvVars))], " or "), strings.Join(tried, "; "))
}
