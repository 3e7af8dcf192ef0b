package console_test

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	"github.com/svix/svix-webhooks/go/models"

	"github.com/outboxrelay/outbox"
	"github.com/outboxrelay/outbox/console"
	"github.com/outboxrelay/outbox/internal/pgtest"
	"github.com/outboxrelay/outbox/internal/syncbuf"
	"github.com/outboxrelay/outbox/outboxtest/svixtest"
)

func TestMain(m *testing.M) { pgtest.MainParallel(m, 4) }

// bundle is a console served over real HTTP on a fresh schema.
type bundle struct {
	ctx     context.Context
	db      *pgtest.DB
	console *console.Console
	srv     *httptest.Server
	client  *http.Client
	logs    *syncbuf.Buffer
}

func setup(t *testing.T, cfg console.Config) *bundle {
	t.Helper()
	db := pgtest.New(t)
	logs := &syncbuf.Buffer{}
	cfg.Logger = slog.New(slog.NewTextHandler(logs, nil))
	c, err := console.New(db.Pool, cfg)
	require.NoError(t, err)
	t.Cleanup(c.Close)
	srv := httptest.NewServer(c)
	t.Cleanup(srv.Close)
	jar, err := cookiejar.New(nil)
	require.NoError(t, err)
	client := &http.Client{Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	return &bundle{ctx: context.Background(), db: db, console: c, srv: srv, client: client, logs: logs}
}

// get fetches a page and returns its status and body.
func (b *bundle) get(t *testing.T, path string) (int, string) {
	t.Helper()
	res, err := b.client.Get(b.srv.URL + path)
	require.NoError(t, err)
	defer res.Body.Close()
	body, err := io.ReadAll(res.Body)
	require.NoError(t, err)
	return res.StatusCode, string(body)
}

// post sends a form as a same-origin browser would.
func (b *bundle) post(t *testing.T, path string, form url.Values) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, b.srv.URL+path, strings.NewReader(form.Encode()))
	require.NoError(t, err)
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Sec-Fetch-Site", "same-origin")
	res, err := b.client.Do(req)
	require.NoError(t, err)
	defer res.Body.Close()
	body, err := io.ReadAll(res.Body)
	require.NoError(t, err)
	return res, string(body)
}

var csrfField = regexp.MustCompile(`name="csrf" value="([^"]+)"`)

// csrf reads the CSRF token from a page the session was served.
func (b *bundle) csrf(t *testing.T, page string) string {
	t.Helper()
	_, body := b.get(t, page)
	m := csrfField.FindStringSubmatch(body)
	require.NotNil(t, m, "no CSRF field on %s", page)
	return m[1]
}

func (b *bundle) appendEvents(t *testing.T, org string, n int) []outbox.AppendResult {
	t.Helper()
	var out []outbox.AppendResult
	for i := range n {
		res, err := outbox.Append(b.ctx, b.db.Pool, outbox.AppendParams{OrganizationID: org, EventType: "test.event", Payload: map[string]any{"n": i, "secret": "personal-data"}})
		require.NoError(t, err)
		out = append(out, res)
	}
	return out
}

// deadLetter writes a dead letter as the relay would have.
func (b *bundle) deadLetter(t *testing.T, id int64, org string, status int) {
	t.Helper()
	_, err := b.db.Pool.Exec(b.ctx, `INSERT INTO outbox_dead_letters
		(id, event_id, organization_id, event_type, payload, created_at, attempts, last_error, status_code)
		VALUES ($1, gen_random_uuid(), $2, 'x.y', '{"secret": "personal-data"}', now(), 1, 'svix refused the message', $3)`, id, org, status)
	require.NoError(t, err)
}

func (b *bundle) count(t *testing.T, query string, args ...any) int {
	t.Helper()
	var n int
	require.NoError(t, b.db.Pool.QueryRow(b.ctx, query, args...).Scan(&n))
	return n
}

func TestOverviewShowsTheBacklog(t *testing.T) {
	t.Parallel()
	b := setup(t, console.Config{})
	b.appendEvents(t, "org-a", 3)
	b.appendEvents(t, "org-b", 2)
	b.deadLetter(t, 1_000_001, "org-b", 422)
	_, err := b.db.Pool.Exec(b.ctx, `INSERT INTO outbox_relays (instance, name, alive_until, svix_health)
		VALUES (gen_random_uuid(), 'relay-eu-1', now() + interval '1 minute',
		        '{"window_seconds": 300, "calls": 10, "ok": 8, "errors": 1, "rate_limited": 1, "last_error": "503"}')`)
	require.NoError(t, err)

	res, err := b.client.Get(b.srv.URL + "/")
	require.NoError(t, err)
	body, _ := io.ReadAll(res.Body)
	res.Body.Close()
	require.Equal(t, http.StatusOK, res.StatusCode)
	require.Contains(t, string(body), `data-test="pending">5<`)
	require.Contains(t, string(body), `data-test="dead"><a href="/dead-letters">1<`)
	require.Contains(t, res.Header.Get("Content-Security-Policy"), "default-src 'none'")
	require.NotContains(t, res.Header.Get("Content-Security-Policy"), "unsafe", "no inline script or style on a page")
	require.NotContains(t, string(body), "<script", "the console runs no JavaScript")
	require.NotContains(t, string(body), "personal-data", "no payload on the overview")
	require.Contains(t, string(body), "relay-eu-1")
	require.Contains(t, string(body), "1 of 10 (last 503)", "the relay's view of Svix")

	status, body2 := b.get(t, "/orgs?sort=pending")
	require.Equal(t, http.StatusOK, status)
	require.Less(t, strings.Index(body2, ">org-a<"), strings.Index(body2, ">org-b<"), "most pending first")

	res, err = b.client.Get(b.srv.URL + "/chart.svg")
	require.NoError(t, err)
	svg, _ := io.ReadAll(res.Body)
	res.Body.Close()
	require.Equal(t, "image/svg+xml", res.Header.Get("Content-Type"))
	require.Contains(t, string(svg), "<svg")
}

func TestATokenGuardsEveryPage(t *testing.T) {
	t.Parallel()
	const token = "a-token-of-sixteen-or-more"
	b := setup(t, console.Config{Token: token})

	for _, path := range []string{"/", "/orgs", "/dead-letters", "/events?id=x", "/chart.svg"} {
		res, err := b.client.Get(b.srv.URL + path)
		require.NoError(t, err)
		res.Body.Close()
		require.Equal(t, http.StatusSeeOther, res.StatusCode, path)
		require.Equal(t, "/login", res.Header.Get("Location"), path)
	}

	res, body := b.post(t, "/login", url.Values{"token": {"wrong-wrong-wrong-wrong"}})
	require.Equal(t, http.StatusUnauthorized, res.StatusCode)
	require.Contains(t, body, "wrong token")
	require.NotContains(t, b.logs.String(), "wrong-wrong", "a refused token is not logged")

	res, _ = b.post(t, "/login", url.Values{"token": {token}})
	require.Equal(t, http.StatusSeeOther, res.StatusCode)
	cookies := res.Cookies()
	require.Len(t, cookies, 1)
	require.True(t, cookies[0].HttpOnly)
	require.Equal(t, http.SameSiteStrictMode, cookies[0].SameSite)
	require.NotContains(t, cookies[0].Value, token, "the cookie is a session id, not the token")

	status, page := b.get(t, "/")
	require.Equal(t, http.StatusOK, status)
	require.NotContains(t, page, token, "no secret reaches a page")
	require.NotContains(t, b.logs.String(), token, "nor a log")

	res, _ = b.post(t, "/logout", url.Values{"csrf": {b.csrf(t, "/")}})
	require.Equal(t, http.StatusSeeOther, res.StatusCode)
	status, _ = b.get(t, "/")
	require.Equal(t, http.StatusSeeOther, status, "logged out")
}

func TestMutationsNeedTheSessionsCSRFTokenAndTheSameOrigin(t *testing.T) {
	t.Parallel()
	b := setup(t, console.Config{})
	b.deadLetter(t, 1_000_001, "org-x", 422)
	token := b.csrf(t, "/dead-letters")
	form := url.Values{"id": {"1000001"}, "confirm": {"1"}}

	res, body := b.post(t, "/dead-letters/purge", form)
	require.Equal(t, http.StatusForbidden, res.StatusCode, body)

	form.Set("csrf", "not-the-token")
	res, _ = b.post(t, "/dead-letters/purge", form)
	require.Equal(t, http.StatusForbidden, res.StatusCode)

	form.Set("csrf", token)
	req, err := http.NewRequest(http.MethodPost, b.srv.URL+"/dead-letters/purge", strings.NewReader(form.Encode()))
	require.NoError(t, err)
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Sec-Fetch-Site", "cross-site")
	res, err = b.client.Do(req)
	require.NoError(t, err)
	res.Body.Close()
	require.Equal(t, http.StatusForbidden, res.StatusCode, "a cross-site POST is refused even with the token")
	require.Equal(t, 1, b.count(t, `SELECT count(*) FROM outbox_dead_letters`), "nothing was purged")

	res, _ = b.post(t, "/dead-letters/purge", form)
	require.Equal(t, http.StatusSeeOther, res.StatusCode)
	require.Zero(t, b.count(t, `SELECT count(*) FROM outbox_dead_letters`))
	require.Contains(t, b.logs.String(), "rows=1")
}

func TestRequeueConfirmsTheCountFirst(t *testing.T) {
	t.Parallel()
	b := setup(t, console.Config{})
	b.deadLetter(t, 1_000_001, "org-r", 422)
	b.deadLetter(t, 1_000_002, "org-r", 422)
	b.deadLetter(t, 1_000_003, "org-other", 422)
	form := url.Values{"csrf": {b.csrf(t, "/dead-letters")}, "org": {"org-r"}, "all": {"1"}}

	res, body := b.post(t, "/dead-letters/requeue", form)
	require.Equal(t, http.StatusOK, res.StatusCode)
	require.Contains(t, body, `data-test="confirm-count">Requeue for delivery <strong>2</strong>`)
	require.Equal(t, 3, b.count(t, `SELECT count(*) FROM outbox_dead_letters`), "a confirmation changes nothing")

	b.deadLetter(t, 1_000_004, "org-r", 422) // the selection grows before the operator confirms
	form.Set("confirm", "2")
	res, body = b.post(t, "/dead-letters/requeue", form)
	require.Equal(t, http.StatusOK, res.StatusCode)
	require.Contains(t, body, "it now matches 3")
	require.Equal(t, 4, b.count(t, `SELECT count(*) FROM outbox_dead_letters`))

	form.Set("confirm", "3")
	res, _ = b.post(t, "/dead-letters/requeue", form)
	require.Equal(t, http.StatusSeeOther, res.StatusCode)
	require.Equal(t, 1, b.count(t, `SELECT count(*) FROM outbox_dead_letters`))
	require.Equal(t, 3, b.count(t, `SELECT count(*) FROM outbox_events WHERE organization_id = 'org-r'`))
	require.Contains(t, b.logs.String(), "dead letters requeued")
	require.Contains(t, b.logs.String(), "rows=3")

	_, page := b.get(t, "/")
	require.Contains(t, page, `data-test="pending">3<`, "the overview counts again after a mutation")
}

func TestReadOnlyHidesAndRefusesEveryAction(t *testing.T) {
	t.Parallel()
	b := setup(t, console.Config{ReadOnly: true})
	b.deadLetter(t, 1_000_001, "org-ro", 422)

	_, page := b.get(t, "/dead-letters")
	require.Contains(t, page, "Read-only")
	require.NotContains(t, page, "Requeue")
	require.NotContains(t, page, "Purge")
	_, page = b.get(t, "/orgs/org-ro")
	require.NotContains(t, page, "Pause")

	m := csrfField.FindStringSubmatch(page)
	token := ""
	if m != nil {
		token = m[1]
	}
	res, _ := b.post(t, "/dead-letters/purge", url.Values{"csrf": {token}, "id": {"1000001"}, "confirm": {"1"}})
	require.Equal(t, http.StatusForbidden, res.StatusCode)
	require.Equal(t, 1, b.count(t, `SELECT count(*) FROM outbox_dead_letters`))
}

func TestAnEventIsFoundByItsID(t *testing.T) {
	t.Parallel()
	b := setup(t, console.Config{})
	ev := b.appendEvents(t, "org-e", 1)[0]

	status, page := b.get(t, "/events?id="+ev.EventID.String())
	require.Equal(t, http.StatusOK, status)
	require.Contains(t, page, `data-test="event-state">pending<`)
	require.Contains(t, page, "org-e")
	require.NotContains(t, page, "personal-data")

	status, page = b.get(t, "/events?id=not-a-uuid")
	require.Equal(t, http.StatusBadRequest, status)
	require.Contains(t, page, "id: must be an event id")

	status, page = b.get(t, "/events?id=00000000-0000-4000-8000-000000000000")
	require.Equal(t, http.StatusOK, status)
	require.Contains(t, page, `data-test="event-state">unknown<`)
}

// A delivered event's page asks Svix, through the SDK, for its message's
// attempts (the fake has no endpoints, so none), and says so when Svix
// does not know the message.
func TestADeliveredEventsAttemptsAreAskedOfSvix(t *testing.T) {
	t.Parallel()
	fake := svixtest.NewT(t, svixtest.Options{AutoCreateApps: true})
	b := setup(t, console.Config{Svix: fake.Client(t)})
	eventID := "01a2413b-b3f2-7be6-98a9-e5b76fd80e7b"
	msg, err := fake.Client(t).Message.Create(b.ctx, "org-s", models.MessageIn{EventType: "x.y", EventId: &eventID, Payload: map[string]any{}}, nil)
	require.NoError(t, err)
	_, err = b.db.Pool.Exec(b.ctx, `INSERT INTO outbox_deliveries (id, event_id, organization_id, event_type, outcome, svix_message_id, attempts, created_at, settled_at)
		VALUES (1, $1, 'org-s', 'x.y', 'delivered', $2, 1, now(), now()),
		       (2, '01a2413b-b3f2-7be6-98a9-000000000002', 'org-s', 'x.y', 'delivered', 'msg_unknown', 1, now(), now())`, eventID, msg.Id)
	require.NoError(t, err)

	status, page := b.get(t, "/events?id="+eventID)
	require.Equal(t, http.StatusOK, status)
	require.Contains(t, page, `data-test="event-state">delivered<`)
	require.Contains(t, page, "Svix has no attempts for this message")
	asked := false
	for _, r := range fake.Requests() {
		asked = asked || r.Method == http.MethodGet && r.Path == "/api/v1/app/org-s/attempt/msg/"+msg.Id
	}
	require.True(t, asked, "the page asked Svix")

	status, page = b.get(t, "/events?id=01a2413b-b3f2-7be6-98a9-000000000002")
	require.Equal(t, http.StatusOK, status)
	require.Contains(t, page, "ask svix for the attempts: ")
	require.Contains(t, page, "404")
	require.NotContains(t, page, fake.Token(), "no secret on a page")
}

func TestADeadLettersPayloadIsShownOnlyOnRequest(t *testing.T) {
	t.Parallel()
	b := setup(t, console.Config{})
	b.deadLetter(t, 1_000_001, "org-p", 422)
	var id string
	require.NoError(t, b.db.Pool.QueryRow(b.ctx, `SELECT event_id::text FROM outbox_dead_letters`).Scan(&id))

	_, page := b.get(t, "/events?id="+id)
	require.Contains(t, page, `data-test="event-state">dead_lettered<`)
	require.NotContains(t, page, "personal-data")
	require.Contains(t, page, "Show the payload")
	_, page = b.get(t, "/events?id="+id+"&payload=1")
	require.Contains(t, page, "personal-data")
}

func TestDeadLetterFiltersNameTheBadField(t *testing.T) {
	t.Parallel()
	b := setup(t, console.Config{})
	b.deadLetter(t, 1_000_001, "org-f", 422)
	b.deadLetter(t, 1_000_002, "org-f", 400)

	for _, tc := range []struct {
		query, want string
		status      int
	}{
		{"?status=422", `data-test="matching">1 dead letters`, http.StatusOK},
		{"?org=org-f", `data-test="matching">2 dead letters`, http.StatusOK},
		{"?org=nobody", `data-test="matching">0 dead letters`, http.StatusOK},
		{"?status=abc", "status: must be an HTTP status code", http.StatusBadRequest},
		{"?since=yesterday", "since: must be a time", http.StatusBadRequest},
		{"?before=2026-13-01T00:00", "before: must be a time", http.StatusBadRequest},
	} {
		status, page := b.get(t, "/dead-letters"+tc.query)
		require.Equal(t, tc.status, status, tc.query)
		require.Contains(t, page, tc.want, tc.query)
	}
}

func TestPauseAndResumeAnOrganization(t *testing.T) {
	t.Parallel()
	b := setup(t, console.Config{})
	b.appendEvents(t, "org-hold", 2)
	token := b.csrf(t, "/orgs/org-hold")

	res, body := b.post(t, "/orgs/org-hold/pause", url.Values{"csrf": {token}, "reason": {""}})
	require.Equal(t, http.StatusBadRequest, res.StatusCode, "a pause needs a reason")
	require.Contains(t, body, "Reason")

	res, _ = b.post(t, "/orgs/org-hold/pause", url.Values{"csrf": {token}, "reason": {"tenant flooding"}})
	require.Equal(t, http.StatusSeeOther, res.StatusCode)
	_, page := b.get(t, "/orgs/org-hold")
	require.Contains(t, page, "paused by an operator: tenant flooding")
	_, page = b.get(t, "/")
	require.Contains(t, page, "tenant flooding")
	require.Contains(t, b.logs.String(), "organization paused")

	res, _ = b.post(t, "/orgs/org-hold/resume", url.Values{"csrf": {token}})
	require.Equal(t, http.StatusSeeOther, res.StatusCode)
	_, page = b.get(t, "/orgs/org-hold")
	require.NotContains(t, page, "paused by an operator")
}

func TestConfigIsValidated(t *testing.T) {
	t.Parallel()
	db := pgtest.New(t)
	for _, tc := range []struct {
		cfg   console.Config
		field string
	}{
		{console.Config{Token: "short"}, "Token"},
		{console.Config{Prefix: "outbox"}, "Prefix"},
		{console.Config{Prefix: "/outbox/"}, "Prefix"},
		{console.Config{SummaryInterval: -1}, "SummaryInterval"},
		{console.Config{SessionTTL: -1}, "SessionTTL"},
	} {
		_, err := console.New(db.Pool, tc.cfg)
		require.ErrorIs(t, err, console.ErrInvalidConfig, tc.field)
		require.ErrorContains(t, err, tc.field)
	}
	_, err := console.New(nil, console.Config{})
	require.ErrorIs(t, err, console.ErrInvalidConfig)
}

func TestMountedUnderAPrefix(t *testing.T) {
	t.Parallel()
	db := pgtest.New(t)
	c, err := console.New(db.Pool, console.Config{Prefix: "/outbox"})
	require.NoError(t, err)
	t.Cleanup(c.Close)
	mux := http.NewServeMux()
	mux.Handle("/outbox/", c)
	rec := httptest.NewRecorder()
	mux.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/outbox/", nil))
	require.Equal(t, http.StatusOK, rec.Code)
	require.Contains(t, rec.Body.String(), `href="/outbox/static/console.css"`)
	require.Contains(t, rec.Body.String(), `href="/outbox/orgs"`)
	rec = httptest.NewRecorder()
	mux.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/outbox/static/console.css", nil))
	require.Equal(t, http.StatusOK, rec.Code)
	require.Contains(t, rec.Body.String(), "prefers-color-scheme: dark")
}
