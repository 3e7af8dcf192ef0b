package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/outboxrelay/outbox/migrations"
	"github.com/outboxrelay/outbox/relay"
)

func runMigrate(ctx context.Context, env *environment, args []string) error {
	var (
		db          dbFlags
		asJSON      bool
		all, yes    bool
		downUsage   = "migrate down needs N (how many migrations to revert) or --all"
		stepsToUndo int
		lockTimeout time.Duration
		stmtTimeout time.Duration
	)
	fs := newFlagSet(env, "migrate", "outbox migrate up | down N|--all [--yes] | status\n\n"+
		"Apply, revert or show the shipped migrations. Safe to run from several processes at once:\n"+
		"an advisory lock per schema lets one apply while the others wait. up applies each migration\n"+
		"in a transaction of its own; one that waits longer than --lock-timeout for a table lock is\n"+
		"rolled back and tried again, so that producers never queue behind it for longer. down says\n"+
		"what it will drop (pending events, dead letters) and asks first unless --yes.",
		"  outbox migrate up --schema outbox\n  outbox migrate down 1\n  outbox migrate down --all --yes\n  outbox migrate status --json")
	db.register(fs)
	fs.BoolVar(&asJSON, "json", false, "print the result as JSON")
	fs.BoolVar(&all, "all", false, "down: revert every applied migration (drops outbox's tables and their rows)")
	fs.BoolVar(&yes, "yes", false, "down: revert without asking")
	fs.DurationVar(&stmtTimeout, "statement-timeout", 0, "up: cancel a migration's statement that runs longer, rolling the migration back (0: no limit)")
	fs.DurationVar(&lockTimeout, "lock-timeout", migrations.DefaultLockTimeout, "up: the longest a migration waits for a table lock before it is rolled back and retried (negative: no limit)")
	action, rest := splitAction(args)
	if err := parse(fs, rest); err != nil {
		return err
	}
	switch action {
	case "up", "status":
		if fs.NArg() > 0 {
			return usagef("migrate %s takes no arguments, got %q", action, fs.Args())
		}
	case "down":
		switch {
		case fs.NArg() > 1:
			return usagef("migrate down takes at most one argument (N)")
		case fs.NArg() == 1 && all:
			return usagef("migrate down: give N or --all, not both")
		case fs.NArg() == 1:
			n, err := strconv.Atoi(fs.Arg(0))
			if err != nil || n < 1 {
				return usagef("migrate down N: N must be a positive number, got %q", fs.Arg(0))
			}
			stepsToUndo = n
		case !all:
			return usagef("%s", downUsage)
		}
	default:
		return usagef("migrate needs up, down [N] or status (run 'outbox migrate --help')")
	}
	pool, err := db.connect(ctx, env)
	if err != nil {
		return err
	}
	defer pool.Close()
	opts := migrations.Options{Schema: db.schema, LockTimeout: lockTimeout, StatementTimeout: stmtTimeout}

	switch action {
	case "up", "down":
		var versions []int
		if action == "up" {
			versions, err = migrations.Up(ctx, pool, opts)
		} else {
			if !yes {
				ok, err := confirmDown(ctx, env, pool, db.schema, opts, stepsToUndo)
				if err != nil || !ok {
					return err
				}
			}
			versions, err = migrations.Down(ctx, pool, opts, stepsToUndo)
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

// confirmDown says which migrations a down of steps (0 = all) reverts and
// what the outbox holds that it would drop, and asks on stdin. It returns
// false, with nothing to do, when no migration is applied.
func confirmDown(ctx context.Context, env *environment, pool *pgxpool.Pool, schema string, opts migrations.Options, steps int) (bool, error) {
	states, err := migrations.Status(ctx, pool, opts)
	if err != nil {
		return false, err
	}
	var applied []int
	for i := len(states) - 1; i >= 0; i-- {
		if states[i].Applied && (steps == 0 || len(applied) < steps) {
			applied = append(applied, states[i].Version)
		}
	}
	if len(applied) == 0 {
		fmt.Fprintln(env.stdout, "migrate down: nothing to do")
		return false, nil
	}
	what := "outbox's tables"
	if admin, err := relay.NewAdmin(pool, relay.AdminConfig{Schema: schema}); err == nil {
		if st, err := admin.Status(ctx); err == nil {
			what = fmt.Sprintf("outbox's tables, with %d pending event(s) and %d dead letter(s)", st.Totals.Pending, st.Totals.DeadLetters)
		}
	}
	fmt.Fprintf(env.stderr, "Reverting migration(s) %v may drop %s for good.\nType 'yes' to confirm: ", applied, what)
	line, _ := bufio.NewReader(env.stdin).ReadString('\n')
	if strings.TrimSpace(line) != "yes" {
		return false, errors.New("migrate down not confirmed; nothing reverted (pass --yes to skip the question)")
	}
	return true, nil
}
