// Command outbox-demo runs the whole outbox flow on embedded defaults, with
// nothing to set up: a PostgreSQL found or started for it, a Svix-compatible
// API served in-process, concurrent handlers that commit (or roll back) a
// business row and an event in one transaction, the relay, and an audit that
// every committed event reached Svix exactly once.
//
//	go run github.com/outboxrelay/outbox/cmd/outbox-demo@latest
//	go run ./cmd/outbox-demo --events 20000 --orgs 100 --svix-latency 20ms
//
// It is a command of its own, in a module of its own, so that the outbox
// command operators deploy links none of what only the demo needs (Docker's
// client through testcontainers, the in-process Svix API).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
)

// environment is what the demo reads from and writes to.
type environment struct {
	stdout, stderr io.Writer
	getenv         func(string) string
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	env := &environment{stdout: os.Stdout, stderr: os.Stderr, getenv: os.Getenv}
	code := run(ctx, env, os.Args[1:])
	stop()
	os.Exit(code)
}

// run executes the command line and returns the exit status: 0 when the
// audit passed, 1 when it failed, 2 for a usage error.
func run(ctx context.Context, env *environment, args []string) int {
	cfg, err := parseFlags(env.stdout, args)
	switch {
	case errors.Is(err, flag.ErrHelp):
		return 0
	case err != nil:
		fmt.Fprintln(env.stderr, "outbox-demo:", err)
		return 2
	}
	if err := runDemo(ctx, env, cfg); err != nil {
		fmt.Fprintln(env.stderr, "outbox-demo:", oneLine(err))
		return 1
	}
	return 0
}

// oneLine keeps error text on one line.
func oneLine(err error) string {
	return strings.ReplaceAll(err.Error(), "\n", " ")
}
