package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/google/uuid"

	"github.com/outboxrelay/outbox"
	"github.com/outboxrelay/outbox/relay"
)

// eventsListFlags are the flags only events list takes.
var eventsListFlags = []string{"org", "since", "state", "limit"}

func runEvents(ctx context.Context, env *environment, args []string) error {
	var (
		db     dbFlags
		p      relay.ListEventsParams
		state  string
		since  sinceFlag
		asJSON bool
	)
	fs := newFlagSet(env, "events", "outbox events show <event-id> [--json] | list --org ORG [filters]\n\n"+
		"Did an event reach Svix? show finds one event by its public id (the EventID outbox.Append returned,\n"+
		"which is also its Svix eventId) and prints its state first, then that state's fields, one per line:\n"+
		"pending (attempts, next attempt, last error, lane paused or held), delivered or skipped (when, the\n"+
		"Svix message id), dead_lettered (when, Svix's status and answer).\n"+
		"list prints an organization's events created since --since, newest first, as a table.\n\n"+
		"Exit status of show: 0 when the event is found, whatever its state; 1 when it is unknown (not\n"+
		"pending, not dead-lettered, and not in the delivery history, which the relay keeps for its\n"+
		"--retention, 24h by default) and when the lookup fails; 2 for a usage error, a malformed id among\n"+
		"them. With --json an unknown event still prints {\"state\": \"unknown\", ...}: a script tells\n"+
		"unknown (exit 1, state on stdout) from a failed lookup (exit 1, nothing on stdout).",
		"  outbox events show 01930f4e-8a7b-7c3d-9e2f-5a6b7c8d9e0f\n"+
			"  outbox events show 01930f4e-8a7b-7c3d-9e2f-5a6b7c8d9e0f --json | jq -r .state\n"+
			"  outbox events list --org org_42 --since 1h\n"+
			"  outbox events list --org org_42 --state dead_lettered --limit 20 --json")
	db.register(fs)
	fs.StringVar(&p.OrganizationID, "org", "", "list: the organization whose events to list (required)")
	fs.Var(&since, "since", "list: only events created since this time (RFC 3339) or duration ago (2h); default 24h")
	fs.StringVar(&state, "state", "", "list: only events in this state: pending, delivered, skipped or dead_lettered")
	fs.IntVar(&p.Limit, "limit", relay.DefaultListEventsLimit, fmt.Sprintf("list: at most this many (1 to %d)", relay.MaxListEventsLimit))
	fs.BoolVar(&asJSON, "json", false, "print the result as JSON")
	action, rest := splitAction(args)
	if err := parse(fs, rest); err != nil {
		return err
	}
	switch action {
	case "show":
		id, err := eventIDArg(fs)
		if err != nil {
			return err
		}
		admin, done, err := db.admin(ctx, env)
		if err != nil {
			return err
		}
		defer done()
		st, err := admin.FindEvent(ctx, id)
		if err != nil {
			return err
		}
		return printEvent(env, st, asJSON)
	case "list":
		if fs.NArg() > 0 {
			return usagef("events list takes no arguments, got %q", fs.Args())
		}
		p.State, p.Since = relay.EventState(state), since.t
		if err := listUsage(p); err != nil {
			return err
		}
		admin, done, err := db.admin(ctx, env)
		if err != nil {
			return err
		}
		defer done()
		events, err := admin.ListEvents(ctx, p)
		if err != nil {
			return err
		}
		return printEvents(env, events, asJSON)
	default:
		return usagef("events needs show or list (run 'outbox events --help')")
	}
}

// eventIDArg returns show's one argument as an event id, refusing list's
// flags and anything but one UUID as usage errors.
func eventIDArg(fs *flagSet) (uuid.UUID, error) {
	var listOnly []string
	fs.Visit(func(f *flag.Flag) {
		for _, name := range eventsListFlags {
			if f.Name == name {
				listOnly = append(listOnly, "--"+name)
			}
		}
	})
	switch {
	case len(listOnly) > 0:
		return uuid.UUID{}, usagef("events show finds an event by its id alone: %s is for events list", strings.Join(listOnly, ", "))
	case fs.NArg() == 0:
		return uuid.UUID{}, usagef("events show needs <event-id>, the event's public id (run 'outbox events --help')")
	case fs.NArg() > 1:
		return uuid.UUID{}, usagef("events show takes one <event-id>, got %q", fs.Args())
	}
	id, err := uuid.Parse(fs.Arg(0))
	if err != nil {
		return uuid.UUID{}, usagef("events show: <event-id> %q is not an event id: want the UUID outbox.Append returned as EventID", fs.Arg(0))
	}
	return id, nil
}

// listUsage validates p before connecting, as a usage error naming the
// flag at fault.
func listUsage(p relay.ListEventsParams) error {
	err := p.Validate()
	var ve *outbox.ValidationError
	if !errors.As(err, &ve) {
		return err
	}
	switch ve.Field {
	case "OrganizationID":
		return usagef("events list needs --org, the organization whose events to list")
	case "State":
		return usagef("events list: --state must be pending, delivered, skipped or dead_lettered, got %q", p.State)
	case "Limit":
		return usagef("events list: --limit must be 1 to %d", relay.MaxListEventsLimit)
	}
	return usagef("events list: %v", err)
}

// unknownEvent is show's answer for an event found nowhere.
func unknownEvent(id uuid.UUID) error {
	return fmt.Errorf("event %s: unknown: not pending, not dead-lettered, and not in the delivery history (kept for --retention)", id)
}

func printEvent(env *environment, st relay.EventRecord, asJSON bool) error {
	if asJSON {
		if err := json.NewEncoder(env.stdout).Encode(st); err != nil {
			return err
		}
	}
	if st.State == relay.EventUnknown {
		return unknownEvent(st.EventID)
	}
	if asJSON {
		return nil
	}
	now := time.Now()
	tw := tabwriter.NewWriter(env.stdout, 0, 4, 2, ' ', 0)
	field := func(name, value string) {
		if value != "" {
			fmt.Fprintf(tw, "%s:\t%s\n", name, value)
		}
	}
	field("state", string(st.State))
	field("event_id", st.EventID.String())
	field("id", strconv.FormatInt(st.ID, 10))
	field("organization_id", st.OrganizationID)
	field("event_type", st.EventType)
	field("created_at", when(now, &st.CreatedAt))
	field("attempts", strconv.Itoa(st.Attempts))
	switch st.State {
	case relay.EventPending:
		next := "due now"
		if st.NextAttemptAt != nil && st.NextAttemptAt.After(now) {
			next = when(now, st.NextAttemptAt)
		}
		field("next_attempt_at", next)
		field("last_attempt_at", when(now, st.LastAttemptAt))
		field("last_error", printable(st.LastError))
		field("paused_until", when(now, st.PausedUntil))
		field("held_by", st.HeldBy)
	case relay.EventDelivered, relay.EventSkipped:
		field("settled_at", when(now, st.SettledAt))
		field("svix_message_id", st.SvixMessageID)
	case relay.EventDeadLettered:
		field("dead_at", when(now, st.DeadAt))
		field("last_error", printable(st.LastError))
		if st.StatusCode != 0 {
			field("status_code", strconv.Itoa(st.StatusCode))
		}
		field("response_body", printable(st.ResponseBody))
	}
	return tw.Flush()
}

// when formats t (nil: "") with how long ago, or how soon, it is.
func when(now time.Time, t *time.Time) string {
	if t == nil || t.IsZero() {
		return ""
	}
	return t.Format(time.RFC3339) + " (" + relative(now, *t) + ")"
}

// relative says how long ago, or how soon, t is: "3s ago", "in 5m0s".
func relative(now, t time.Time) string {
	d := t.Sub(now).Round(time.Second)
	switch {
	case d < 0:
		return (-d).String() + " ago"
	case d > 0:
		return "in " + d.String()
	}
	return "now"
}

// printable keeps a value on its line: quoted when it holds a line break.
func printable(s string) string {
	if strings.ContainsAny(s, "\r\n") {
		return strconv.Quote(s)
	}
	return s
}

func printEvents(env *environment, events []relay.EventRecord, asJSON bool) error {
	if asJSON {
		if events == nil {
			events = []relay.EventRecord{}
		}
		return json.NewEncoder(env.stdout).Encode(events)
	}
	now := time.Now()
	tw := tabwriter.NewWriter(env.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tEVENT ID\tEVENT TYPE\tSTATE\tATTEMPTS\tCREATED\tDETAIL")
	for _, e := range events {
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%d\t%s\t%s\n", e.ID, e.EventID, e.EventType, e.State, e.Attempts,
			e.CreatedAt.Format(time.RFC3339), detail(now, e))
	}
	return tw.Flush()
}

// detail is a list row's last column: what the event's state says.
func detail(now time.Time, e relay.EventRecord) string {
	switch e.State {
	case relay.EventDelivered:
		return e.SvixMessageID
	case relay.EventSkipped:
		return "no webhooks"
	case relay.EventDeadLettered:
		return oneLine(e.LastError, 80)
	case relay.EventPending:
		var s string
		switch {
		case e.PausedUntil != nil:
			s = "lane paused until " + e.PausedUntil.Format(time.RFC3339)
		case e.HeldBy != "":
			s = "being sent by " + e.HeldBy
		case e.NextAttemptAt != nil && e.NextAttemptAt.After(now):
			s = "retry " + relative(now, *e.NextAttemptAt)
		default:
			s = "due"
		}
		if e.LastError != "" {
			s += ": " + oneLine(e.LastError, 60)
		}
		return s
	}
	return "-"
}
