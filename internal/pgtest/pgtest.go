// Package pgtest gives each test its own schema on a real PostgreSQL server,
// migrated and ready, so tests run in parallel without seeing each other.
//
// The server is found once per test binary by internal/pgserver, in this
// order: OUTBOX_TEST_DATABASE_URL or DATABASE_URL; a container through
// testcontainers-go when a Docker daemon answers (internal/pgcontainer:
// OUTBOX_TEST_POSTGRES_IMAGE, default postgres:16-alpine); a throwaway
// cluster from the local PostgreSQL binaries. The way taken is printed in
// one line on standard error. Packages that use pgtest call [Main] from
// TestMain so a server started for the run is stopped afterwards.
package pgtest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"flag"
	"fmt"
	"net/url"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"go.uber.org/goleak"

	"github.com/outboxrelay/outbox/internal/pgcontainer"
	"github.com/outboxrelay/outbox/internal/pgserver"
	"github.com/outboxrelay/outbox/internal/sqlname"
	"github.com/outboxrelay/outbox/migrations"
)

var (
	serverOnce sync.Once
	server     *pgserver.Server
	serverErr  error
	admin      *pgxpool.Pool
)

// Main runs the tests, stops a server pgtest started, and fails the run if
// goroutines outlive the tests (goleak), so a leak in the code under test
// shows up as a failure. Use it as
//
//	func TestMain(m *testing.M) { pgtest.Main(m) }
func Main(m *testing.M) { os.Exit(runMain(m, true)) }

// MainParallel is Main running up to n parallel tests at once (at least
// GOMAXPROCS), unless the command line sets -test.parallel: for a package
// whose tests mostly wait (on a fake's latency, on the database's clock
// for leases and liveness) rather than compute, where the default of
// GOMAXPROCS leaves the machine idle.
func MainParallel(m *testing.M, n int) {
	flag.Parse()
	set := false
	flag.Visit(func(f *flag.Flag) { set = set || f.Name == "test.parallel" })
	if !set {
		if err := flag.Set("test.parallel", strconv.Itoa(max(n, runtime.GOMAXPROCS(0)))); err != nil {
			fmt.Fprintln(os.Stderr, "pgtest: set -test.parallel:", err)
		}
	}
	Main(m)
}

// MainNoLeakCheck is Main without the goroutine check, for test binaries
// that host a server whose goroutines outlive its Stop (the in-process
// Temporal server of temporaltest).
func MainNoLeakCheck(m *testing.M) { os.Exit(runMain(m, false)) }

func runMain(m *testing.M, leakCheck bool) int {
	code := m.Run()
	for _, drop := range exampleCleanups {
		drop()
	}
	if admin != nil {
		admin.Close()
	}
	if err := server.Stop(); err != nil {
		fmt.Fprintln(os.Stderr, "pgtest: stop server:", err)
	}
	if code == 0 && leakCheck {
		if err := goleak.Find(); err != nil {
			fmt.Fprintln(os.Stderr, "pgtest: goroutines outlived the tests:", err)
			code = 1
		}
	}
	return code
}

// ServerURL returns the URL of the test server, starting one if needed.
func ServerURL(tb testing.TB) string {
	tb.Helper()
	u, err := serverURL()
	if err != nil {
		tb.Fatalf("pgtest: %v", err)
	}
	return u
}

// SourceEnv names a variable that, when set, requires the test server to
// come from that way (pgserver.Server.Source: "env:", "testcontainers",
// "local"), so that CI proves the container path ran rather than fell back.
const SourceEnv = "OUTBOX_TEST_SERVER_SOURCE"

// logf writes the harness's one-line notes to standard error.
func logf(format string, args ...any) { fmt.Fprintf(os.Stderr, format+"\n", args...) }

func serverURL() (string, error) {
	serverOnce.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		server, serverErr = pgserver.Start(ctx, pgserver.Options{Starters: []pgserver.Starter{pgcontainer.Starter}, Logf: logf})
		if serverErr != nil {
			return
		}
		if want := os.Getenv(SourceEnv); want != "" && !strings.HasPrefix(server.Source, want) {
			serverErr = fmt.Errorf("%s=%s, but the server came from %s", SourceEnv, want, server.Source)
			_ = server.Stop()
			return
		}
		logf("pgtest: PostgreSQL from %s", server.Source)
		admin, serverErr = pgxpool.New(ctx, server.URL)
	})
	if serverErr != nil {
		return "", serverErr
	}
	return server.URL, nil
}

// DB is one test's schema on the test server.
type DB struct {
	// Pool connects with search_path set to Schema, so unqualified outbox
	// table names resolve to this test's tables.
	Pool *pgxpool.Pool
	// Schema is the test's own schema.
	Schema string
	// URL is the server URL with search_path set to Schema, for other
	// processes and pools.
	URL string
}

// New returns a fresh schema with every migration applied.
func New(tb testing.TB) *DB {
	tb.Helper()
	db := NewEmpty(tb)
	if _, err := migrations.Up(context.Background(), db.Pool, migrations.Options{Schema: db.Schema}); err != nil {
		tb.Fatalf("pgtest: migrate %s: %v", db.Schema, err)
	}
	return db
}

// NewEmpty returns a fresh schema with nothing in it (for migration tests).
// The schema and its pool go away when the test ends.
func NewEmpty(tb testing.TB) *DB {
	tb.Helper()
	db, drop, err := create(context.Background())
	if err != nil {
		tb.Fatalf("pgtest: %v", err)
	}
	tb.Cleanup(drop)
	return db
}

// exampleCleanups drop what ForExample made, once the tests are done.
var (
	exampleMu       sync.Mutex
	exampleCleanups []func()
)

// ForExample returns a migrated schema for an Example function, which has no
// testing.TB to clean up after it: Main drops it after the run.
func ForExample() *DB {
	db, drop, err := create(context.Background())
	if err == nil {
		exampleMu.Lock()
		exampleCleanups = append(exampleCleanups, drop)
		exampleMu.Unlock()
		_, err = migrations.Up(context.Background(), db.Pool, migrations.Options{Schema: db.Schema})
	}
	if err != nil {
		panic("pgtest: " + err.Error())
	}
	return db
}

func create(ctx context.Context) (*DB, func(), error) {
	base, err := serverURL()
	if err != nil {
		return nil, nil, err
	}
	schema := "t_" + randomHex(8)
	if _, err := admin.Exec(ctx, "CREATE SCHEMA "+sqlname.Quote(schema)); err != nil {
		return nil, nil, fmt.Errorf("create schema: %w", err)
	}
	u, err := WithSearchPath(base, schema)
	if err != nil {
		return nil, nil, err
	}
	cfg, err := pgxpool.ParseConfig(u)
	if err != nil {
		return nil, nil, err
	}
	cfg.MaxConns = 8
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, nil, err
	}
	drop := func() {
		pool.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		_, _ = admin.Exec(ctx, "DROP SCHEMA "+sqlname.Quote(schema)+" CASCADE")
	}
	return &DB{Pool: pool, Schema: schema, URL: u}, drop, nil
}

// NewDatabase returns a pool on a database of its own, for tests that must
// use the public schema (or anything database-wide). It is dropped when the
// test ends.
func NewDatabase(tb testing.TB) *pgxpool.Pool {
	tb.Helper()
	base, err := serverURL()
	if err != nil {
		tb.Fatalf("pgtest: %v", err)
	}
	ctx := context.Background()
	name := "t_" + randomHex(8)
	if _, err := admin.Exec(ctx, "CREATE DATABASE "+sqlname.Quote(name)); err != nil {
		tb.Fatalf("pgtest: create database: %v", err)
	}
	u, err := url.Parse(base)
	if err != nil {
		tb.Fatalf("pgtest: %v", err)
	}
	u.Path = "/" + name
	pool, err := pgxpool.New(ctx, u.String())
	if err != nil {
		tb.Fatalf("pgtest: %v", err)
	}
	tb.Cleanup(func() {
		pool.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		_, _ = admin.Exec(ctx, "DROP DATABASE IF EXISTS "+sqlname.Quote(name)+" WITH (FORCE)")
	})
	return pool
}

// WithSearchPath returns rawURL with search_path set to schema; pgx sends
// unknown URL parameters as run-time parameters.
func WithSearchPath(rawURL, schema string) (string, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		return "", fmt.Errorf("parse database URL: %w", err)
	}
	q := u.Query()
	q.Set("search_path", schema)
	u.RawQuery = q.Encode()
	return u.String(), nil
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
