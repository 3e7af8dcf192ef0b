package main

import (
	"context"
	"encoding/json"
	"fmt"
	"text/tabwriter"
	"time"

	"github.com/outboxrelay/outbox/relay"
)

func runStatus(ctx context.Context, env *environment, args []string) error {
	var (
		db     dbFlags
		asJSON bool
	)
	fs := newFlagSet(env, "status", "outbox status [--json]\n\n"+
		"Per organization: pending events, the age of the oldest, events waiting for a retry, and dead letters; then totals,\n"+
		"and the organizations paused ('outbox pause'), with why and until when.",
		"  outbox status\n  outbox status --json --schema outbox")
	db.register(fs)
	fs.BoolVar(&asJSON, "json", false, "print the report as JSON")
	if err := parse(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usagef("status takes no arguments")
	}
	admin, done, err := db.admin(ctx, env)
	if err != nil {
		return err
	}
	defer done()
	st, err := admin.Status(ctx)
	if err != nil {
		return fmt.Errorf("%w (are the migrations applied? try 'outbox migrate up')", err)
	}
	pauses, err := admin.Pauses(ctx)
	if err != nil {
		return err
	}
	if asJSON {
		return json.NewEncoder(env.stdout).Encode(statusReport{Status: st, Paused: pauses})
	}
	tw := tabwriter.NewWriter(env.stdout, 0, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "ORGANIZATION\tPENDING\tOLDEST\tRETRYING\tDEAD\t")
	for _, o := range append(st.Organizations, st.Totals) {
		fmt.Fprintf(tw, "%s\t%d\t%s\t%d\t%d\t\n", o.OrganizationID, o.Pending, age(o.OldestPendingAge), o.WaitingRetry, o.DeadLetters)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	printPauses(env.stdout, pauses)
	return nil
}

// statusReport is status --json: the backlog, and the pauses in force.
type statusReport struct {
	relay.Status
	// Paused lists the organizations an operator paused.
	Paused []relay.OrganizationPause `json:"paused"`
}

func age(seconds float64) string {
	if seconds <= 0 {
		return "-"
	}
	return (time.Duration(seconds * float64(time.Second))).Round(time.Second).String()
}
