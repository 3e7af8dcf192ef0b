package main

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"text/tabwriter"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/outboxrelay/outbox"
)

// orgStatus is one organization's line of `outbox status`.
type orgStatus struct {
	OrganizationID   string  `json:"organization_id"`
	Pending          int     `json:"pending"`
	OldestPendingAge float64 `json:"oldest_pending_age_seconds"`
	WaitingRetry     int     `json:"waiting_for_retry"`
	DeadLetters      int     `json:"dead_letters"`
}

type statusReport struct {
	Organizations []orgStatus `json:"organizations"`
	Totals        orgStatus   `json:"totals"`
}

func runStatus(ctx context.Context, env *environment, args []string) error {
	var (
		db     dbFlags
		asJSON bool
	)
	fs := newFlagSet(env, "status", "outbox status [--json]\n\n"+
		"Per organization: pending events, the age of the oldest, events waiting for a retry, and dead letters; then totals.",
		"  outbox status\n  outbox status --json --schema outbox")
	db.register(fs)
	fs.BoolVar(&asJSON, "json", false, "print the report as JSON")
	if err := parse(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usagef("status takes no arguments")
	}
	pool, err := db.connect(ctx, env)
	if err != nil {
		return err
	}
	defer pool.Close()
	rep, err := readStatus(ctx, pool, db.schema)
	if err != nil {
		return err
	}
	if asJSON {
		return json.NewEncoder(env.stdout).Encode(rep)
	}
	tw := tabwriter.NewWriter(env.stdout, 0, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "ORGANIZATION\tPENDING\tOLDEST\tRETRYING\tDEAD\t")
	for _, o := range append(rep.Organizations, rep.Totals) {
		fmt.Fprintf(tw, "%s\t%d\t%s\t%d\t%d\t\n", o.OrganizationID, o.Pending, age(o.OldestPendingAge), o.WaitingRetry, o.DeadLetters)
	}
	return tw.Flush()
}

func age(seconds float64) string {
	if seconds <= 0 {
		return "-"
	}
	return (time.Duration(seconds * float64(time.Second))).Round(time.Second).String()
}

func readStatus(ctx context.Context, db outbox.DBTX, schema string) (statusReport, error) {
	table := func(name string) string {
		if schema == "" {
			return pgx.Identifier{name}.Sanitize()
		}
		return pgx.Identifier{schema, name}.Sanitize()
	}
	rows, err := db.Query(ctx, `
		SELECT organization_id, sum(pending)::int, max(oldest_age)::float8, sum(retrying)::int, sum(dead)::int FROM (
			SELECT organization_id, count(*) AS pending,
			       extract(epoch FROM now() - min(created_at)) AS oldest_age,
			       count(*) FILTER (WHERE next_attempt_at > now()) AS retrying, 0 AS dead
			FROM `+table("outbox_events")+` GROUP BY organization_id
			UNION ALL
			SELECT organization_id, 0, 0, 0, count(*) FROM `+table("outbox_dead_letters")+` GROUP BY organization_id
		) s GROUP BY organization_id ORDER BY organization_id`)
	if err != nil {
		return statusReport{}, fmt.Errorf("read status (are the migrations applied? try 'outbox migrate up'): %w", err)
	}
	rep := statusReport{Organizations: []orgStatus{}, Totals: orgStatus{OrganizationID: "TOTAL"}}
	var o orgStatus
	_, err = pgx.ForEachRow(rows, []any{&o.OrganizationID, &o.Pending, &o.OldestPendingAge, &o.WaitingRetry, &o.DeadLetters}, func() error {
		rep.Organizations = append(rep.Organizations, o)
		rep.Totals.Pending += o.Pending
		rep.Totals.WaitingRetry += o.WaitingRetry
		rep.Totals.DeadLetters += o.DeadLetters
		rep.Totals.OldestPendingAge = max(rep.Totals.OldestPendingAge, o.OldestPendingAge)
		return nil
	})
	if err != nil {
		return statusReport{}, fmt.Errorf("read status: %w", err)
	}
	sort.SliceStable(rep.Organizations, func(i, j int) bool { return rep.Organizations[i].Pending > rep.Organizations[j].Pending })
	return rep, nil
}
