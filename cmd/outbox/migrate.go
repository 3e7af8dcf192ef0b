package main

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"text/tabwriter"

	"github.com/outboxrelay/outbox/migrations"
)

func runMigrate(ctx context.Context, env *environment, args []string) error {
	var (
		db     dbFlags
		asJSON bool
	)
	fs := newFlagSet(env, "migrate", "outbox migrate up | down [N] | status\n\n"+
		"Apply, revert or show the shipped migrations. Safe to run from several processes at once:\n"+
		"an advisory lock per schema lets one apply while the others wait.",
		"  outbox migrate up --schema outbox\n  outbox migrate down 1\n  outbox migrate status --json")
	db.register(fs)
	fs.BoolVar(&asJSON, "json", false, "print the result as JSON")
	action, rest := "", args
	if len(args) > 0 && args[0] != "" && args[0][0] != '-' {
		action, rest = args[0], args[1:]
	}
	if err := parse(fs, rest); err != nil {
		return err
	}
	steps := 0
	switch action {
	case "up", "status":
		if fs.NArg() > 0 {
			return usagef("migrate %s takes no arguments, got %q", action, fs.Args())
		}
	case "down":
		if fs.NArg() > 1 {
			return usagef("migrate down takes at most one argument (N)")
		}
		if fs.NArg() == 1 {
			n, err := strconv.Atoi(fs.Arg(0))
			if err != nil || n < 1 {
				return usagef("migrate down N: N must be a positive number, got %q", fs.Arg(0))
			}
			steps = n
		}
	default:
		return usagef("migrate needs up, down [N] or status (run 'outbox migrate --help')")
	}
	pool, err := db.connect(ctx, env)
	if err != nil {
		return err
	}
	defer pool.Close()
	opts := migrations.Options{Schema: db.schema}

	switch action {
	case "up", "down":
		var versions []int
		if action == "up" {
			versions, err = migrations.Up(ctx, pool, opts)
		} else {
			versions, err = migrations.Down(ctx, pool, opts, steps)
		}
		if err != nil {
			return err
		}
		if asJSON {
			return json.NewEncoder(env.stdout).Encode(map[string]any{"action": action, "versions": nonNil(versions)})
		}
		if len(versions) == 0 {
			fmt.Fprintf(env.stdout, "migrate %s: nothing to do\n", action)
			return nil
		}
		verb := map[string]string{"up": "applied", "down": "reverted"}[action]
		for _, v := range versions {
			fmt.Fprintf(env.stdout, "%s %04d\n", verb, v)
		}
		return nil
	default:
		states, err := migrations.Status(ctx, pool, opts)
		if err != nil {
			return err
		}
		if asJSON {
			return json.NewEncoder(env.stdout).Encode(states)
		}
		tw := tabwriter.NewWriter(env.stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "VERSION\tNAME\tAPPLIED")
		for _, s := range states {
			applied := "no"
			if s.Applied {
				applied = s.AppliedAt.Format("2006-01-02 15:04:05Z07:00")
			}
			fmt.Fprintf(tw, "%04d\t%s\t%s\n", s.Version, s.Name, applied)
		}
		return tw.Flush()
	}
}

func nonNil[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}
