// Package pgserver finds or starts a PostgreSQL server for the tests and the
// demo, in this order:
//
//  1. a URL from the environment (the variables the caller names, such as
//     OUTBOX_TEST_DATABASE_URL or DATABASE_URL);
//  2. a throwaway container through testcontainers-go, when a Docker daemon
//     answers;
//  3. a throwaway cluster made with the local PostgreSQL binaries (initdb and
//     pg_ctl on PATH or in /usr/lib/postgresql/*/bin), run as the postgres
//     user when the process is root.
//
// When none works, the error names all three ways.
package pgserver

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
)

// Server is a PostgreSQL server the caller can connect to.
type Server struct {
	// URL connects to the server as a superuser (or the environment's user).
	URL string
	// Source says where the server came from: "env:NAME", "testcontainers"
	// or "local".
	Source string

	stop    func() error
	restart func(ctx context.Context, mode string) error
}

// ErrCannotRestart is returned by Restart for servers this package did not
// start from local binaries.
var ErrCannotRestart = errors.New("pgserver: only a local cluster started by this package can be restarted")

// Restart restarts a local cluster with pg_ctl's shutdown mode "fast" or
// "immediate" (a crash: no checkpoint, recovery on start), waiting until it
// accepts connections again on the same port.
func (s *Server) Restart(ctx context.Context, mode string) error {
	if s == nil || s.restart == nil {
		return ErrCannotRestart
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
	// wins. Defaults to OUTBOX_TEST_DATABASE_URL, DATABASE_URL.
	EnvVars []string
	// Logf reports progress (which way was taken). Defaults to discarding.
	Logf func(format string, args ...any)
}

// ErrNoServer is returned when no way to a PostgreSQL server worked.
var ErrNoServer = errors.New("no PostgreSQL server available")

// Start returns a server found or started in the documented order.
func Start(ctx context.Context, opts Options) (*Server, error) {
	if len(opts.EnvVars) == 0 {
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
	srv, err := startContainer(ctx, opts.Logf)
	if err == nil {
		return srv, nil
	}
	tried = append(tried, "testcontainers: "+err.Error())
	srv, err = startLocal(ctx, opts.Logf)
	if err == nil {
		return srv, nil
	}
	tried = append(tried, "local binaries: "+err.Error())
	return nil, fmt.Errorf("%w: set %s to a server's URL, run a Docker daemon for testcontainers, "+
		"or install PostgreSQL's server binaries (Debian: apt-get install postgresql); tried: %s",
		ErrNoServer, strings.Join(opts.EnvVars, " or "), strings.Join(tried, "; "))
}
