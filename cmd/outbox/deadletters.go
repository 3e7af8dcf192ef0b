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

	"github.com/outboxrelay/outbox/relay"
)

// idList is a repeatable --id flag that also takes comma-separated ids.
type idList []int64

func (l *idList) String() string { return fmt.Sprint([]int64(*l)) }
func (l *idList) Set(v string) error {
	for _, part := range strings.Split(v, ",") {
		id, err := strconv.ParseInt(strings.TrimSpace(part), 10, 64)
		if err != nil {
			return fmt.Errorf("not an id: %q", part)
		}
		*l = append(*l, id)
	}
	return nil
}

// sinceFlag takes an RFC 3339 time or a duration back from now ("2h").
type sinceFlag struct{ t time.Time }

func (s *sinceFlag) String() string {
	if s.t.IsZero() {
		return ""
	}
	return s.t.Format(time.RFC3339)
}

func (s *sinceFlag) Set(v string) error {
	if d, err := time.ParseDuration(v); err == nil {
		s.t = time.Now().Add(-d)
		return nil
	}
	t, err := time.Parse(time.RFC3339, v)
	if err != nil {
		return fmt.Errorf("want an RFC 3339 time or a duration such as 2h, got %q", v)
	}
	s.t = t
	return nil
}

func runDeadLetters(ctx context.Context, env *environment, args []string) error {
	var (
		db     dbFlags
		filter relay.DeadLetterFilter
		all    bool
		limit  int
		ids    idList
		since  sinceFlag
		asJSON bool
		yes    bool
	)
	fs := newFlagSet(env, "dead-letters", "outbox dead-letters list | requeue | purge [filters]\n\n"+
		"Events Svix refused for good, or that ran out of attempts. requeue puts them back in the outbox\n"+
		"(same eventId, fresh attempts); purge deletes them for good and asks first unless --yes.\n"+
		"requeue and purge need a filter, or --all.",
		"  outbox dead-letters list --org org_42 --since 24h\n"+
			"  outbox dead-letters requeue --id 1234,1235\n"+
			"  outbox dead-letters requeue --event-type invoice.paid\n"+
			"  outbox dead-letters purge --all --yes")
	db.register(fs)
	fs.StringVar(&filter.OrganizationID, "org", "", "only this organization")
	fs.StringVar(&filter.EventType, "event-type", "", "only this event type")
	fs.Var(&since, "since", "only dead letters since this time (RFC 3339) or duration ago (2h)")
	fs.Var(&ids, "id", "only these outbox ids (repeatable, or comma-separated)")
	fs.BoolVar(&all, "all", false, "requeue or purge every dead letter")
	fs.IntVar(&limit, "limit", relay.DefaultDeadLetterListLimit, "list at most this many")
	fs.BoolVar(&asJSON, "json", false, "print the result as JSON")
	fs.BoolVar(&yes, "yes", false, "purge without asking")
	action, rest := splitAction(args)
	if err := parse(fs, rest); err != nil {
		return err
	}
	if action != "list" && action != "requeue" && action != "purge" {
		return usagef("dead-letters needs list, requeue or purge (run 'outbox dead-letters --help')")
	}
	if fs.NArg() > 0 {
		return usagef("dead-letters %s takes no arguments, got %q", action, fs.Args())
	}
	filter.IDs, filter.Since = ids, since.t
	selection := relay.DeadLetterSelection{DeadLetterFilter: filter, All: all}
	if action != "list" {
		// Refuse an empty selection before connecting or asking anything.
		if err := noFilterHint(selection.Validate()); err != nil {
			return err
		}
	}
	admin, done, err := db.admin(ctx, env)
	if err != nil {
		return err
	}
	defer done()

	switch action {
	case "list":
		letters, err := admin.DeadLetters(ctx, relay.DeadLetterListParams{DeadLetterFilter: filter, Limit: limit})
		if err != nil {
			return err
		}
		return printDeadLetters(env, letters, asJSON)
	case "requeue":
		n, err := admin.RequeueDeadLetters(ctx, selection)
		if err != nil {
			return err
		}
		return report(env, asJSON, "requeued", n)
	default:
		if !yes {
			if err := confirm(env); err != nil {
				return err
			}
		}
		n, err := admin.PurgeDeadLetters(ctx, selection)
		if err != nil {
			return err
		}
		return report(env, asJSON, "purged", n)
	}
}

func noFilterHint(err error) error {
	if errors.Is(err, relay.ErrNoFilter) {
		return usagef("give a filter (--org, --event-type, --since, --id) or --all")
	}
	return err
}

func report(env *environment, asJSON bool, verb string, n int) error {
	if asJSON {
		return json.NewEncoder(env.stdout).Encode(map[string]int{verb: n})
	}
	fmt.Fprintf(env.stdout, "%s %d dead letter(s)\n", verb, n)
	return nil
}

// confirm asks on stdin before a purge.
func confirm(env *environment) error {
	fmt.Fprintf(env.stderr, "Purge the matching dead letters for good? Type 'yes' to confirm: ")
	line, _ := bufio.NewReader(env.stdin).ReadString('\n')
	if strings.TrimSpace(line) != "yes" {
		return errors.New("purge not confirmed; nothing deleted (pass --yes to skip the question)")
	}
	return nil
}

func printDeadLetters(env *environment, letters []relay.DeadLetter, asJSON bool) error {
	if asJSON {
		if letters == nil {
			letters = []relay.DeadLetter{}
		}
		return json.NewEncoder(env.stdout).Encode(letters)
	}
	tw := tabwriter.NewWriter(env.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tORGANIZATION\tEVENT TYPE\tATTEMPTS\tSTATUS\tDIED\tERROR")
	for _, d := range letters {
		status := "-"
		if d.StatusCode != 0 {
			status = strconv.Itoa(d.StatusCode)
		}
		fmt.Fprintf(tw, "%d\t%s\t%s\t%d\t%s\t%s\t%s\n", d.ID, d.OrganizationID, d.EventType, d.Attempts, status,
			d.DeadAt.Format(time.RFC3339), oneLine(d.LastError, 80))
	}
	return tw.Flush()
}

func oneLine(s string, width int) string {
	s = strings.Join(strings.Fields(s), " ")
	if len(s) > width {
		s = s[:width-3] + "..."
	}
	return s
}
