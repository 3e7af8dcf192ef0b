// Command outbox runs and operates the outbox: schema migrations, the relay
// as a standalone process, status, dead letters, and a self-contained demo.
//
//	outbox migrate up                 apply the shipped migrations
//	outbox relay                      deliver events to Svix until SIGINT/SIGTERM
//	outbox status                     pending events, retries and dead letters per organization
//	outbox dead-letters list|requeue|purge
//	outbox events show|list           did an event reach Svix? find one by id, or list an organization's
//	outbox event-types sync|export    the event catalog in Svix, or as OpenAPI / JSON Schema
//
// The demo (the whole flow on embedded defaults) is a command of its own,
// github.com/outboxrelay/outbox/cmd/outbox-demo, so that this binary, which
// operators deploy, links no test infrastructure.
//
// The database comes from DATABASE_URL or --database-url, the schema from
// --schema, Svix from SVIX_AUTH_TOKEN and SVIX_SERVER_URL. Run any command
// with --help for its flags and examples.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

// command is one subcommand.
type command struct {
	name, summary string
	run           func(ctx context.Context, env *environment, args []string) error
}

var commands = []command{
	{"migrate", "apply, revert or show the schema migrations", runMigrate},
	{"relay", "deliver outbox events to Svix until stopped", runRelay},
	{"status", "pending events, retries and dead letters per organization", runStatus},
	{"pause", "hold an organization's deliveries, with a reason and an optional end", runPause},
	{"resume", "lift an organization's pause", runResume},
	{"console", "serve the operator console (a web page) on --http-addr", runConsole},
	{"dead-letters", "list, requeue or purge dead letters", runDeadLetters},
	{"events", "find an event by id, or list an organization's events", runEvents},
	{"event-types", "sync the event catalog to Svix, or export it for customers", runEventTypes},
}

// environment is what a command reads from and writes to: the process's
// standard streams and environment, passed down rather than read globally.
type environment struct {
	stdin          io.Reader
	stdout, stderr io.Writer
	getenv         func(string) string
}

// errUsage marks errors whose message explains a usage problem; they exit
// with status 2. Its own text is empty so it adds nothing to the message.
var errUsage = errors.New("")

// usagef returns a usage error with the formatted message.
func usagef(format string, args ...any) error {
	return fmt.Errorf("%w"+format, append([]any{errUsage}, args...)...)
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, &environment{stdin: os.Stdin, stdout: os.Stdout, stderr: os.Stderr, getenv: os.Getenv}, os.Args[1:])
	stop()
	os.Exit(code)
}

// run executes the command line and returns the exit status.
func run(ctx context.Context, env *environment, args []string) int {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		usage(env.stdout)
		if len(args) == 0 {
			return 2
		}
		return 0
	}
	for _, c := range commands {
		if c.name == args[0] {
			return exitCode(env, c.run(ctx, env, args[1:]))
		}
	}
	if args[0] == "demo" {
		fmt.Fprintln(env.stderr, "outbox: the demo is its own command now: go run github.com/outboxrelay/outbox/cmd/outbox-demo@latest (in a clone: go run ./cmd/outbox-demo)")
		return 2
	}
	fmt.Fprintf(env.stderr, "outbox: unknown command %q (run 'outbox --help' for the list)\n", args[0])
	return 2
}

func exitCode(env *environment, err error) int {
	switch {
	case err == nil:
		return 0
	case errors.Is(err, flag.ErrHelp):
		return 0
	case errors.Is(err, errUsage):
		fmt.Fprintln(env.stderr, "outbox:", err)
		return 2
	default:
		fmt.Fprintln(env.stderr, "outbox:", err)
		return 1
	}
}

func usage(w io.Writer) {
	fmt.Fprint(w, `outbox: the transactional outbox for Go services on PostgreSQL that send webhooks through Svix.

Usage: outbox <command> [flags]

Commands:
`)
	for _, c := range commands {
		fmt.Fprintf(w, "  %-13s %s\n", c.name, c.summary)
	}
	fmt.Fprint(w, `
Environment:
  DATABASE_URL      PostgreSQL URL (or --database-url)
  SVIX_AUTH_TOKEN   Svix API token (relay, event-types sync)
  SVIX_SERVER_URL   Svix API base URL (optional)

Examples:
  DATABASE_URL=postgres://localhost/app outbox migrate up --schema outbox
  outbox relay --concurrency 64 --http-addr :8080
  outbox status --json
  outbox dead-letters requeue --org org_42
  outbox events show 01930f4e-8a7b-7c3d-9e2f-5a6b7c8d9e0f

Run 'outbox <command> --help' for a command's flags.
`)
}
