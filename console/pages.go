package console

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"html/template"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/outboxrelay/outbox/relay"
)

// pageSize bounds every list a page shows.
const pageSize = 50

// chartMinutes is the span of the overview's chart.
const chartMinutes = 180

var funcs = template.FuncMap{
	"age": func(seconds float64) string {
		if seconds <= 0 {
			return "-"
		}
		return (time.Duration(seconds * float64(time.Second))).Round(time.Second).String()
	},
	"when": func(t any) string {
		switch v := t.(type) {
		case time.Time:
			if v.IsZero() {
				return "-"
			}
			return v.UTC().Format("2006-01-02 15:04:05Z")
		case *time.Time:
			if v == nil || v.IsZero() {
				return "-"
			}
			return v.UTC().Format("2006-01-02 15:04:05Z")
		}
		return "-"
	},
	"query": func(kv ...string) template.URL {
		v := url.Values{}
		for i := 0; i+1 < len(kv); i += 2 {
			if kv[i+1] != "" {
				v.Set(kv[i], kv[i+1])
			}
		}
		return template.URL(v.Encode())
	},
	"pathescape": url.PathEscape,
}

func (c *Console) loginPage(w http.ResponseWriter, r *http.Request) {
	if c.cfg.Token == "" {
		http.Redirect(w, r, c.path("/"), http.StatusSeeOther)
		return
	}
	c.render(w, r, session{}, "login", http.StatusOK, map[string]any{"Title": "Log in"})
}

// login checks the token and starts a session. A login form needs no CSRF
// token (there is no session yet) but must be same-origin.
func (c *Console) login(w http.ResponseWriter, r *http.Request) {
	if err := http.NewCrossOriginProtection().Check(r); err != nil {
		http.Error(w, "cross-origin login refused", http.StatusForbidden)
		return
	}
	if c.cfg.Token == "" || !equalSecret(r.PostFormValue("token"), c.cfg.Token) {
		c.cfg.Logger.Warn("console: login refused", "remote", r.RemoteAddr)
		c.render(w, r, session{}, "login", http.StatusUnauthorized, map[string]any{"Title": "Log in", "Error": "wrong token"})
		return
	}
	c.sessions.create(w, r, c.cfg.Prefix)
	c.cfg.Logger.Info("console: logged in", "remote", r.RemoteAddr)
	http.Redirect(w, r, c.path("/"), http.StatusSeeOther)
}

func (c *Console) logout(w http.ResponseWriter, r *http.Request, _ session) {
	c.sessions.end(w, r, c.cfg.Prefix)
	http.Redirect(w, r, c.path("/login"), http.StatusSeeOther)
}

// overview is the page an on-call engineer opens first.
func (c *Console) overview(w http.ResponseWriter, r *http.Request, ses session) {
	ctx := r.Context()
	st, at, err := c.summary.get(ctx)
	if err != nil {
		c.fail(w, r, ses, http.StatusInternalServerError, err)
		return
	}
	relays, err := c.admin.Relays(ctx)
	if err != nil {
		c.fail(w, r, ses, http.StatusInternalServerError, err)
		return
	}
	pauses, err := c.admin.Pauses(ctx)
	if err != nil {
		c.fail(w, r, ses, http.StatusInternalServerError, err)
		return
	}
	var health relay.SvixHealth
	for _, ri := range relays {
		if ri.Alive && ri.SvixHealth != nil {
			health.Calls += ri.SvixHealth.Calls
			health.OK += ri.SvixHealth.OK
			health.Errors += ri.SvixHealth.Errors
			health.RateLimited += ri.SvixHealth.RateLimited
			health.Unauthorized += ri.SvixHealth.Unauthorized
		}
	}
	c.render(w, r, ses, "overview", http.StatusOK, map[string]any{
		"Title": "Overview", "Totals": st.Totals, "Organizations": len(st.Organizations),
		"SummaryAge": time.Since(at).Round(time.Second), "Relays": relays, "Pauses": pauses,
		"Health": health, "ErrorRate": rate(health.Errors+health.RateLimited+health.Unauthorized, health.Calls),
		"Refresh": true,
	})
}

func rate(part, whole int64) string {
	if whole == 0 {
		return "-"
	}
	return fmt.Sprintf("%.1f%%", 100*float64(part)/float64(whole))
}

// organizations lists organizations with pending events or dead letters,
// from the summary, sorted by backlog or by the age of the oldest.
func (c *Console) organizations(w http.ResponseWriter, r *http.Request, ses session) {
	ctx := r.Context()
	st, at, err := c.summary.get(ctx)
	if err != nil {
		c.fail(w, r, ses, http.StatusInternalServerError, err)
		return
	}
	sortBy := r.URL.Query().Get("sort")
	orgs := slices.Clone(st.Organizations)
	if sortBy == "oldest" {
		slices.SortStableFunc(orgs, func(a, b relay.OrganizationStatus) int {
			return cmp.Or(cmp.Compare(b.OldestPendingAge, a.OldestPendingAge), strings.Compare(a.OrganizationID, b.OrganizationID))
		})
	} else {
		sortBy = "pending" // Status's order
	}
	page, _ := strconv.Atoi(r.URL.Query().Get("page"))
	page = max(page, 1)
	from := min((page-1)*pageSize, len(orgs))
	shown := orgs[from:min(from+pageSize, len(orgs))]
	ids := make([]string, len(shown))
	for i, o := range shown {
		ids[i] = o.OrganizationID
	}
	lanes, err := c.admin.Lanes(ctx, ids)
	if err != nil {
		c.fail(w, r, ses, http.StatusInternalServerError, err)
		return
	}
	type row struct {
		relay.OrganizationStatus
		Lane *relay.LaneState
	}
	rows := make([]row, len(shown))
	for i, o := range shown {
		rows[i].OrganizationStatus = o
		if l, ok := lanes[o.OrganizationID]; ok {
			rows[i].Lane = &l
		}
	}
	c.render(w, r, ses, "organizations", http.StatusOK, map[string]any{
		"Title": "Organizations", "Rows": rows, "Sort": sortBy, "Page": page, "Total": len(orgs),
		"Prev": page - 1, "Next": nextPage(page, len(orgs)), "SummaryAge": time.Since(at).Round(time.Second),
	})
}

func nextPage(page, total int) int {
	if page*pageSize >= total {
		return 0
	}
	return page + 1
}

// organization is one organization's page: its lane, pending events, dead
// letters and recent deliveries.
func (c *Console) organization(w http.ResponseWriter, r *http.Request, ses session) {
	ctx := r.Context()
	org := r.PathValue("org")
	lanes, err := c.admin.Lanes(ctx, []string{org})
	if err != nil {
		c.fail(w, r, ses, http.StatusInternalServerError, err)
		return
	}
	pending, err := c.admin.ListEvents(ctx, relay.ListEventsParams{OrganizationID: org, State: relay.EventPending, Limit: pageSize})
	if err != nil {
		c.fail(w, r, ses, http.StatusBadRequest, err)
		return
	}
	delivered, err := c.admin.ListEvents(ctx, relay.ListEventsParams{
		OrganizationID: org, State: relay.EventDelivered, Limit: 20, Since: time.Now().Add(-time.Hour),
	})
	if err != nil {
		c.fail(w, r, ses, http.StatusInternalServerError, err)
		return
	}
	dead, err := c.admin.DeadLetters(ctx, relay.DeadLetterListParams{DeadLetterFilter: relay.DeadLetterFilter{OrganizationID: org}, Limit: 20})
	if err != nil {
		c.fail(w, r, ses, http.StatusInternalServerError, err)
		return
	}
	var lane *relay.LaneState
	if l, ok := lanes[org]; ok {
		lane = &l
	}
	c.render(w, r, ses, "organization", http.StatusOK, map[string]any{
		"Title": "Organization " + org, "Org": org, "Lane": lane, "Pending": pending,
		"Delivered": delivered, "Dead": dead,
	})
}

// event finds an event by its public id.
func (c *Console) event(w http.ResponseWriter, r *http.Request, ses session) {
	ctx := r.Context()
	raw := strings.TrimSpace(r.URL.Query().Get("id"))
	if raw == "" {
		c.render(w, r, ses, "event", http.StatusOK, map[string]any{"Title": "Find an event"})
		return
	}
	id, err := uuid.Parse(raw)
	if err != nil {
		c.render(w, r, ses, "event", http.StatusBadRequest, map[string]any{
			"Title": "Find an event", "Query": raw, "Error": "id: must be an event id (a UUID)",
		})
		return
	}
	ev, err := c.admin.FindEvent(ctx, id)
	if err != nil {
		c.fail(w, r, ses, http.StatusInternalServerError, err)
		return
	}
	data := map[string]any{"Title": "Event " + id.String(), "Query": raw, "Event": ev, "SvixConfigured": c.cfg.Svix != nil}
	if ev.State == relay.EventDelivered && c.cfg.Svix != nil && ev.SvixMessageID != "" {
		attempts, err := c.attempts(ctx, ev)
		data["Attempts"], data["AttemptsError"] = attempts, errString(err)
	}
	if ev.State == relay.EventDeadLettered && r.URL.Query().Get("payload") == "1" {
		dl, err := c.admin.DeadLetters(ctx, relay.DeadLetterListParams{DeadLetterFilter: relay.DeadLetterFilter{IDs: []int64{ev.ID}}, Limit: 1})
		if err == nil && len(dl) == 1 {
			data["Payload"] = string(dl[0].Payload)
		}
	}
	c.render(w, r, ses, "event", http.StatusOK, data)
}

// attempt is one delivery attempt of a message, as Svix reports it.
type attempt struct {
	Endpoint string
	Status   int16
	State    string
	At       time.Time
	Duration time.Duration
}

// attempts fetches a delivered event's message attempts from Svix. The
// request is bounded by a short timeout: Svix's bad hour must not hang the
// page.
func (c *Console) attempts(ctx context.Context, ev relay.EventRecord) ([]attempt, error) {
	dest, err := c.cfg.Resolver.Resolve(ctx, ev.OrganizationID)
	if err != nil {
		return nil, fmt.Errorf("resolve the organization's application: %w", err)
	}
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	out, err := c.cfg.Svix.MessageAttempt.ListByMsg(ctx, dest.App, ev.SvixMessageID, nil)
	if err != nil {
		return nil, fmt.Errorf("ask svix for the attempts: %w", err)
	}
	list := make([]attempt, 0, len(out.Data))
	for _, a := range out.Data {
		list = append(list, attempt{Endpoint: a.EndpointId, Status: a.ResponseStatusCode, State: string(a.StatusText),
			At: a.Timestamp, Duration: time.Duration(a.ResponseDurationMs) * time.Millisecond})
	}
	return list, nil
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

// deadLetterFilter reads a dead-letter filter from a request's form or
// query; the error names the bad field.
func deadLetterFilter(r *http.Request) (relay.DeadLetterFilter, error) {
	f := relay.DeadLetterFilter{OrganizationID: r.FormValue("org"), EventType: r.FormValue("type")}
	if s := r.FormValue("status"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < -1 || n > 599 {
			return f, fmt.Errorf("status: must be an HTTP status code, or -1 for never answered (got %q)", s)
		}
		f.StatusCode = n
	}
	for _, t := range []struct {
		field string
		to    *time.Time
	}{{"since", &f.Since}, {"before", &f.Before}} {
		if s := r.FormValue(t.field); s != "" {
			v, err := parseTime(s)
			if err != nil {
				return f, fmt.Errorf("%s: must be a time as 2006-01-02T15:04 or RFC 3339 (got %q)", t.field, s)
			}
			*t.to = v
		}
	}
	for _, s := range r.Form["id"] {
		id, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return f, fmt.Errorf("id: must be a dead letter's id (got %q)", s)
		}
		f.IDs = append(f.IDs, id)
	}
	return f, nil
}

func parseTime(s string) (time.Time, error) {
	if t, err := time.Parse(time.RFC3339, s); err == nil {
		return t, nil
	}
	return time.Parse("2006-01-02T15:04", s) // an <input type=datetime-local>, read as UTC
}

// deadLetters lists the dead letters a filter matches.
func (c *Console) deadLetters(w http.ResponseWriter, r *http.Request, ses session) {
	ctx := r.Context()
	_ = r.ParseForm()
	f, err := deadLetterFilter(r)
	data := map[string]any{"Title": "Dead letters", "Form": r.Form}
	if err != nil {
		data["Error"] = err.Error()
		c.render(w, r, ses, "deadletters", http.StatusBadRequest, data)
		return
	}
	list, err := c.admin.DeadLetters(ctx, relay.DeadLetterListParams{DeadLetterFilter: f, Limit: pageSize})
	if err != nil {
		c.fail(w, r, ses, http.StatusInternalServerError, err)
		return
	}
	n, err := c.admin.CountDeadLetters(ctx, f)
	if err != nil {
		c.fail(w, r, ses, http.StatusInternalServerError, err)
		return
	}
	data["List"], data["Matching"] = list, n
	c.render(w, r, ses, "deadletters", http.StatusOK, data)
}

// actOnDeadLetters requeues or purges the dead letters a form selects: the
// ticked ids, or everything the filter matches. The first POST answers with
// a confirmation that states the count; the action runs when the POST
// carries that count and the selection still matches it.
func (c *Console) actOnDeadLetters(w http.ResponseWriter, r *http.Request, ses session) {
	ctx := r.Context()
	action := r.PathValue("action")
	if action != "requeue" && action != "purge" {
		c.fail(w, r, ses, http.StatusNotFound, errors.New("action: must be requeue or purge"))
		return
	}
	f, err := deadLetterFilter(r)
	if err != nil {
		c.fail(w, r, ses, http.StatusBadRequest, err)
		return
	}
	if len(f.IDs) == 0 && r.FormValue("all") != "1" {
		c.fail(w, r, ses, http.StatusBadRequest, errors.New("selection: tick dead letters, or choose every one the filter matches"))
		return
	}
	n, err := c.admin.CountDeadLetters(ctx, f)
	if err != nil {
		c.fail(w, r, ses, http.StatusInternalServerError, err)
		return
	}
	if confirmed, _ := strconv.Atoi(r.FormValue("confirm")); confirmed != n || r.FormValue("confirm") == "" {
		c.render(w, r, ses, "confirm", http.StatusOK, map[string]any{
			"Title": "Confirm", "Action": action, "Count": n, "Form": r.PostForm,
			"Changed": r.FormValue("confirm") != "",
		})
		return
	}
	sel := relay.DeadLetterSelection{DeadLetterFilter: f, All: true}
	var done int
	if action == "requeue" {
		done, err = c.admin.RequeueDeadLetters(ctx, sel)
	} else {
		done, err = c.admin.PurgeDeadLetters(ctx, sel)
	}
	if err != nil {
		c.fail(w, r, ses, http.StatusInternalServerError, err)
		return
	}
	c.summary.invalidate()
	c.cfg.Logger.Info("console: dead letters "+action+"d", "rows", done, "organization", f.OrganizationID,
		"event_type", f.EventType, "status", f.StatusCode, "ids", len(f.IDs), "remote", r.RemoteAddr)
	http.Redirect(w, r, c.path("/dead-letters?"+url.Values{"org": {f.OrganizationID}, "done": {fmt.Sprintf("%s %d", action, done)}}.Encode()), http.StatusSeeOther)
}

// pause pauses an organization with a reason and an optional end.
func (c *Console) pause(w http.ResponseWriter, r *http.Request, ses session) {
	org := r.PathValue("org")
	p := relay.PauseParams{OrganizationID: org, Reason: strings.TrimSpace(r.PostFormValue("reason"))}
	if s := r.PostFormValue("until"); s != "" {
		until, err := parseTime(s)
		if err != nil {
			c.fail(w, r, ses, http.StatusBadRequest, fmt.Errorf("until: must be a time as 2006-01-02T15:04 or RFC 3339 (got %q)", s))
			return
		}
		p.Until = until
	}
	got, err := c.admin.PauseOrganization(r.Context(), p)
	if err != nil {
		status := http.StatusInternalServerError
		if errors.Is(err, relay.ErrInvalidPause) {
			status = http.StatusBadRequest
		}
		c.fail(w, r, ses, status, err)
		return
	}
	c.cfg.Logger.Info("console: organization paused", "organization", org, "until", got.Until, "remote", r.RemoteAddr)
	http.Redirect(w, r, c.path("/orgs/"+url.PathEscape(org)), http.StatusSeeOther)
}

// resume lifts an organization's pause.
func (c *Console) resume(w http.ResponseWriter, r *http.Request, ses session) {
	org := r.PathValue("org")
	lifted, err := c.admin.ResumeOrganization(r.Context(), org)
	if err != nil {
		c.fail(w, r, ses, http.StatusInternalServerError, err)
		return
	}
	c.cfg.Logger.Info("console: organization resumed", "organization", org, "lifted", lifted, "remote", r.RemoteAddr)
	http.Redirect(w, r, c.path("/orgs/"+url.PathEscape(org)), http.StatusSeeOther)
}
