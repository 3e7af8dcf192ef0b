package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/outboxrelay/outbox/relay"
)

func runPause(ctx context.Context, env *environment, args []string) error {
	var (
		db       dbFlags
		reason   string
		until    string
		duration time.Duration
		asJSON   bool
	)
	fs := newFlagSet(env, "pause", "outbox pause <organization> --reason TEXT [--until TIME | --for DURATION]\n\n"+
		"Hold an organization's deliveries: every relay stops starting turns of its lane within one sweep;\n"+
		"its events stay pending, in order, and producers go on appending. Until resumed ('outbox resume'),\n"+
		"or until the end given. Pausing a paused organization replaces its reason and end.",
		"  outbox pause org_42 --reason 'tenant flooding, INC-1234'\n  outbox pause org_42 --reason 'customer asked to hold' --for 2h")
	db.register(fs)
	fs.StringVar(&reason, "reason", "", "why, for the operators who read it in status and the console (required)")
	fs.StringVar(&until, "until", "", "end the pause by itself at this time (RFC 3339)")
	fs.DurationVar(&duration, "for", 0, "end the pause by itself after this long (2h, 30m)")
	fs.BoolVar(&asJSON, "json", false, "print the pause as JSON")
	if err := parse(fs, args); err != nil {
		return err
	}
	org, err := oneOrganization(fs, "pause")
	if err != nil {
		return err
	}
	p := relay.PauseParams{OrganizationID: org, Reason: reason}
	switch {
	case until != "" && duration != 0:
		return usagef("pause: --until and --for go alone: give one")
	case duration < 0:
		return usagef("pause: --for %s must be positive", duration)
	case duration > 0:
		p.Until = time.Now().Add(duration)
	case until != "":
		if p.Until, err = time.Parse(time.RFC3339, until); err != nil {
			return usagef("pause: --until %q: want an RFC 3339 time such as 2026-12-04T18:00:00Z", until)
		}
	}
	admin, done, err := db.admin(ctx, env)
	if err != nil {
		return err
	}
	defer done()
	got, err := admin.PauseOrganization(ctx, p)
	if errors.Is(err, relay.ErrInvalidPause) {
		return usagef("pause: %v", err)
	}
	if err != nil {
		return err
	}
	if asJSON {
		return json.NewEncoder(env.stdout).Encode(got)
	}
	fmt.Fprintf(env.stdout, "paused %s %s: %s\n", got.OrganizationID, pauseEnd(got), got.Reason)
	return nil
}

func runResume(ctx context.Context, env *environment, args []string) error {
	var db dbFlags
	fs := newFlagSet(env, "resume", "outbox resume <organization>\n\n"+
		"Lift an organization's pause: its lane is due at once, and the next sweep of any relay delivers it.",
		"  outbox resume org_42")
	db.register(fs)
	if err := parse(fs, args); err != nil {
		return err
	}
	org, err := oneOrganization(fs, "resume")
	if err != nil {
		return err
	}
	admin, done, err := db.admin(ctx, env)
	if err != nil {
		return err
	}
	defer done()
	was, err := admin.ResumeOrganization(ctx, org)
	if err != nil {
		return err
	}
	if !was {
		fmt.Fprintf(env.stdout, "%s was not paused\n", org)
		return nil
	}
	fmt.Fprintf(env.stdout, "resumed %s\n", org)
	return nil
}

func oneOrganization(fs *flagSet, cmd string) (string, error) {
	switch {
	case fs.NArg() == 0:
		return "", usagef("%s: give the organization (run 'outbox %s --help')", cmd, cmd)
	case fs.NArg() > 1:
		return "", usagef("%s takes one organization, got %d", cmd, fs.NArg())
	}
	return fs.Arg(0), nil
}

// pauseEnd says when a pause ends.
func pauseEnd(p relay.OrganizationPause) string {
	if p.Until == nil {
		return "until resumed"
	}
	return "until " + p.Until.UTC().Format(time.RFC3339)
}

// printPauses lists the pauses in force under the status table.
func printPauses(w io.Writer, pauses []relay.OrganizationPause) {
	if len(pauses) == 0 {
		return
	}
	fmt.Fprintln(w, "\nPAUSED")
	for _, p := range pauses {
		fmt.Fprintf(w, "%s  since %s, %s: %s\n", p.OrganizationID, p.PausedAt.UTC().Format(time.RFC3339), pauseEnd(p), p.Reason)
	}
}
