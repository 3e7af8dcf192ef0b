package relay

import (
	"context"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/jackc/pgx/v5"
	"github.com/outboxrelay/outbox/internal/pgtest"
	"github.com/stretchr/testify/require"
)

// Whatever Svix or a proxy in front of it answers must be storable, or the
// settlement would fail on every try and the lane never move.
func TestCleanText(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, in, want string
		n              int
	}{
		{"plain", `{"code":"x"}`, `{"code":"x"}`, 100},
		{"NUL", "a\x00b", "ab", 100},
		{"invalid UTF-8", "a\xffb", "a\uFFFDb", 100},
		{"truncated", strings.Repeat("x", 10), "xxxx", 4},
		{"truncated inside a rune", "ab✓", "ab", 4},
	}
	for _, tt := range tests {
		got := cleanText(tt.in, tt.n)
		require.Equal(t, tt.want, got, tt.name)
		require.True(t, utf8.ValidString(got), tt.name)
		require.LessOrEqual(t, len(got), tt.n, tt.name)
	}
}

// planSettlement sorts every outcome of a turn into the statement it
// belongs to, and tallies it once.
func TestPlanSettlement(t *testing.T) {
	t.Parallel()
	r := &Relay{cfg: Config{MaxAttempts: 3, RetryBaseDelay: time.Second, RetryMaxDelay: time.Minute, RateLimitPause: 2 * time.Second}}
	ev := func(id int64, attempts int) pendingEvent { return pendingEvent{id: id, attempts: attempts} }
	tests := []struct {
		name     string
		events   []pendingEvent
		results  []result
		want     settlementPlan // the ids, messages and pause; errors and delays are checked apart
		counts   counts
		rateLim  bool
		authFail bool
	}{
		{
			name:    "delivered and skipped settle together, skipped with no message id",
			events:  []pendingEvent{ev(1, 1), ev(2, 1)},
			results: []result{{outcome: outcomeDelivered, messageID: "msg_1"}, {outcome: outcomeSkipped}},
			want:    settlementPlan{doneIDs: []int64{1, 2}, doneMsgs: []string{"msg_1", ""}},
			counts:  counts{Delivered: 1, Skipped: 1},
		},
		{
			name:    "a transient failure under MaxAttempts is retried",
			events:  []pendingEvent{ev(1, 2)},
			results: []result{{outcome: outcomeRetry, err: "503"}},
			want:    settlementPlan{retryIDs: []int64{1}},
			counts:  counts{Retried: 1},
		},
		{
			name:    "a transient failure at MaxAttempts is dead-lettered",
			events:  []pendingEvent{ev(1, 3)},
			results: []result{{outcome: outcomeRetry, err: "503", status: 503}},
			want:    settlementPlan{deadLetterIDs: []int64{1}, statuses: []int32{503}},
			counts:  counts{DeadLettered: 1},
		},
		{
			name:    "a refusal is dead-lettered with Svix's status and body",
			events:  []pendingEvent{ev(1, 1)},
			results: []result{{outcome: outcomeDeadLetter, status: 422, body: `{"detail":[]}`, err: "svix refused the message: 422"}},
			want:    settlementPlan{deadLetterIDs: []int64{1}, statuses: []int32{422}, bodies: []string{`{"detail":[]}`}},
			counts:  counts{DeadLettered: 1},
		},
		{
			name:    "429 pauses the lane for the longer of Retry-After and RateLimitPause, and costs no attempt",
			events:  []pendingEvent{ev(1, 1), ev(2, 1)},
			results: []result{{outcome: outcomeRateLimited, retryAfter: 5 * time.Second}, {outcome: outcomeUnsent}},
			want:    settlementPlan{pause: 5 * time.Second},
			counts:  counts{Unsent: 1},
			rateLim: true,
		},
		{
			name:    "429 without Retry-After pauses for RateLimitPause",
			events:  []pendingEvent{ev(1, 1)},
			results: []result{{outcome: outcomeRateLimited}},
			want:    settlementPlan{pause: 2 * time.Second},
			rateLim: true,
		},
		{
			name:    "a wild Retry-After is capped",
			events:  []pendingEvent{ev(1, 1)},
			results: []result{{outcome: outcomeRateLimited, retryAfter: 48 * time.Hour}},
			want:    settlementPlan{pause: maxRetryAfter},
			rateLim: true,
		},
		{
			name:     "401/403 costs no attempt and dead-letters nothing",
			events:   []pendingEvent{ev(1, 1)},
			results:  []result{{outcome: outcomeAuth, status: 401}},
			want:     settlementPlan{},
			authFail: true,
		},
	}
	for _, tt := range tests {
		var rep turnReport
		p := r.planSettlement(tt.events, tt.results, &rep)
		require.Equal(t, tt.want.doneIDs, p.doneIDs, tt.name)
		require.Equal(t, tt.want.doneMsgs, p.doneMsgs, tt.name)
		require.Equal(t, tt.want.retryIDs, p.retryIDs, tt.name)
		require.Equal(t, tt.want.deadLetterIDs, p.deadLetterIDs, tt.name)
		require.Equal(t, tt.want.pause, p.pause, tt.name)
		if tt.want.statuses != nil {
			require.Equal(t, tt.want.statuses, p.statuses, tt.name)
		}
		if tt.want.bodies != nil {
			require.Equal(t, tt.want.bodies, p.bodies, tt.name)
		}
		require.Len(t, p.retryDelays, len(p.retryIDs), tt.name)
		require.Len(t, p.retryErrs, len(p.retryIDs), tt.name)
		require.Len(t, p.deadLetterErrs, len(p.deadLetterIDs), tt.name)
		for _, d := range p.retryDelays {
			require.Positive(t, d, tt.name)
		}
		require.Equal(t, tt.counts, rep.counts, tt.name)
		require.Equal(t, tt.rateLim, rep.rateLimited, tt.name)
		require.Equal(t, tt.authFail, rep.authFailed, tt.name)
	}
	// Dead-lettering after MaxAttempts says so.
	var rep turnReport
	p := r.planSettlement([]pendingEvent{ev(9, 3)}, []result{{outcome: outcomeRetry, err: "503 {}"}}, &rep)
	require.Equal(t, []string{"gave up after 3 attempts: 503 {}"}, p.deadLetterErrs)
}

// Lanes settled together in one round trip are fenced each by its own
// token: a lane taken over meanwhile settles nothing, the others settle.
func TestSharedSettlementIsFencedPerLane(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := pgtest.New(t)
	for _, org := range []string{"org-kept", "org-stolen"} {
		_, err := db.Pool.Exec(ctx, `INSERT INTO outbox_events (event_id, organization_id, event_type, payload)
			VALUES (gen_random_uuid(), $1, 'x.y', '{}')`, org)
		require.NoError(t, err)
	}
	r, err := New(db.Pool, Config{SvixToken: "t"})
	require.NoError(t, err)
	rd, err := r.claim(ctx, []string{"org-kept", "org-stolen"})
	require.NoError(t, err)
	require.Len(t, rd.lanes, 2, "one claim, two lanes")
	require.Equal(t, rd.lanes[0].token, rd.lanes[1].token, "lanes of one claim share its token")
	_, err = db.Pool.Exec(ctx, "UPDATE outbox_lanes SET lease_token = gen_random_uuid() WHERE organization_id = 'org-stolen'")
	require.NoError(t, err)
	for _, ln := range rd.lanes {
		ln.results = []result{{outcome: outcomeDelivered, messageID: "msg_" + ln.org}}
		ln.rep = turnReport{leased: true}
	}
	due, err := r.settle(rd.lanes)
	require.NoError(t, err)
	_, released := due["org-stolen"]
	require.False(t, released, "the stolen lane was not released by its old holder")
	var left []string
	rows, err := db.Pool.Query(ctx, "SELECT organization_id FROM outbox_events")
	require.NoError(t, err)
	left, err = pgx.CollectRows(rows, pgx.RowTo[string])
	require.NoError(t, err)
	require.Equal(t, []string{"org-stolen"}, left, "the stolen lane's event is still pending; the kept one's is settled")
	var history int
	require.NoError(t, db.Pool.QueryRow(ctx, "SELECT count(*) FROM outbox_deliveries WHERE svix_message_id = 'msg_org-kept'").Scan(&history))
	require.Equal(t, 1, history)
	require.EqualValues(t, 1, r.Stats().Delivered, "only what was recorded is counted: the stolen lane's holder counts its own")
}

// The release deletes a lane left with nothing, and keeps, released and
// due when it next needs a turn, every lane that still has something: an
// event left, a retry, a 429 pause, an operator's suspension, a head not
// due yet. A lane another relay took over is neither released nor
// deleted by its old holder, even with nothing left.
func TestReleaseDeletesOnlyIdleLanes(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := pgtest.New(t)
	add := func(org string, n int, retryIn time.Duration) {
		for range n {
			var next *time.Time
			if retryIn > 0 {
				at := time.Now().Add(retryIn)
				next = &at
			}
			_, err := db.Pool.Exec(ctx, `INSERT INTO outbox_events (event_id, organization_id, event_type, payload, attempts, next_attempt_at)
				VALUES (gen_random_uuid(), $1, 'x.y', '{}', CASE WHEN $2::timestamptz IS NULL THEN 0 ELSE 1 END, $2)`, org, next)
			require.NoError(t, err)
		}
	}
	add("org-done", 1, 0)
	add("org-more", 2, 0)
	add("org-retry", 1, 0)
	add("org-429", 1, 0)
	add("org-suspended", 1, 0)
	add("org-not-due", 1, time.Hour)
	add("org-stolen", 1, 0)
	r, err := New(db.Pool, Config{SvixToken: "t", RetryBaseDelay: time.Minute, RetryMaxDelay: time.Minute, RateLimitPause: time.Minute})
	require.NoError(t, err)
	rd, err := r.claim(ctx, []string{"org-done", "org-more", "org-retry", "org-429", "org-suspended", "org-not-due", "org-stolen"})
	require.NoError(t, err)
	require.Len(t, rd.lanes, 7)
	for _, ln := range rd.lanes {
		ln.results = make([]result, len(ln.events))
		for i := range ln.results {
			ln.results[i] = result{outcome: outcomeDelivered, messageID: "msg"}
		}
		switch ln.org {
		case "org-more":
			ln.results[1] = result{} // unsent: left for the next turn
		case "org-retry":
			ln.results[0] = result{outcome: outcomeRetry, err: "503"}
		case "org-429":
			ln.results[0] = result{outcome: outcomeRateLimited, err: "429 rate limited"}
		}
		ln.rep = turnReport{leased: true}
	}
	// An operator suspends one lane during its turn.
	_, err = db.Pool.Exec(ctx, `UPDATE outbox_lanes SET suspended_at = now(), suspended_until = now() + interval '2 hours',
		suspend_reason = 'hold' WHERE organization_id = 'org-suspended'`)
	require.NoError(t, err)
	// Another relay takes one lane over and delivers its event.
	_, err = db.Pool.Exec(ctx, `UPDATE outbox_lanes SET lease_token = gen_random_uuid() WHERE organization_id = 'org-stolen'`)
	require.NoError(t, err)
	_, err = db.Pool.Exec(ctx, `DELETE FROM outbox_events WHERE organization_id = 'org-stolen'`)
	require.NoError(t, err)

	due, err := r.settle(rd.lanes)
	require.NoError(t, err)
	require.Len(t, due, 6, "every lane but the stolen one was released")
	require.NotContains(t, due, "org-stolen")
	require.True(t, due["org-done"].IsZero(), "nothing left")

	type laneRow struct {
		Org       string     `db:"organization_id"`
		Leased    bool       `db:"leased"`
		DueIn     *float64   `db:"due_in"`
		Paused    bool       `db:"paused"`
		Suspended bool       `db:"suspended"`
		Until     *time.Time `db:"suspended_until"`
	}
	rows, err := db.Pool.Query(ctx, `SELECT organization_id, lease_token IS NOT NULL AS leased,
		extract(epoch FROM due_at - now())::float8 AS due_in, coalesce(paused_until > now(), false) AS paused,
		suspended_at IS NOT NULL AS suspended, suspended_until FROM outbox_lanes ORDER BY 1`)
	require.NoError(t, err)
	lanes, err := pgx.CollectRows(rows, pgx.RowToStructByName[laneRow])
	require.NoError(t, err)
	byOrg := map[string]laneRow{}
	for _, l := range lanes {
		if l.Org == "org-stolen" {
			require.True(t, l.Leased, "the stolen lane is still its new holder's")
			continue
		}
		require.False(t, l.Leased, "%s released", l.Org)
		require.NotNil(t, l.DueIn, "%s kept with a due time", l.Org)
		byOrg[l.Org] = l
	}
	require.NotContains(t, byOrg, "org-done", "a lane left with nothing is deleted")
	require.Len(t, byOrg, 5)
	require.Len(t, lanes, 6, "the stolen lane is kept")
	require.InDelta(t, 0, *byOrg["org-more"].DueIn, 5, "an event left: due now")
	var atRetry bool
	require.NoError(t, db.Pool.QueryRow(ctx, `SELECT l.due_at = e.next_attempt_at FROM outbox_lanes l
		JOIN outbox_events e ON e.organization_id = l.organization_id WHERE l.organization_id = 'org-retry'`).Scan(&atRetry))
	require.True(t, atRetry, "due at the retry")
	require.True(t, byOrg["org-429"].Paused, "paused after the 429")
	require.InDelta(t, 60, *byOrg["org-429"].DueIn, 5, "due when the pause ends")
	require.True(t, byOrg["org-suspended"].Suspended, "the operator's suspension is kept")
	require.NotNil(t, byOrg["org-suspended"].Until)
	require.InDelta(t, 3600, *byOrg["org-not-due"].DueIn, 5, "due when its head is")
}

// An operator's pause that commits while a settlement is on its way is
// kept: the release reads the lane as it is once it holds it, so it
// neither deletes the paused lane with its pause, nor leaves it leased.
// The turn sent nothing (its relay was stopping) and the lane's event was
// deleted by hand meanwhile, so no earlier statement of the settlement
// locks the lane, and the release, finding nothing left, meets the pause
// alone.
func TestReleaseKeepsAPauseCommittedMeanwhile(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := pgtest.New(t)
	_, err := db.Pool.Exec(ctx, `INSERT INTO outbox_events (event_id, organization_id, event_type, payload)
		VALUES (gen_random_uuid(), 'org-race', 'x.y', '{}')`)
	require.NoError(t, err)
	r, err := New(db.Pool, Config{SvixToken: "t"})
	require.NoError(t, err)
	rd, err := r.claim(ctx, []string{"org-race"})
	require.NoError(t, err)
	require.Len(t, rd.lanes, 1)
	ln := rd.lanes[0]
	ln.results, ln.rep = []result{{outcome: outcomeUnsent}}, turnReport{leased: true}
	_, err = db.Pool.Exec(ctx, `DELETE FROM outbox_events`)
	require.NoError(t, err)

	operator, err := db.Pool.Begin(ctx)
	require.NoError(t, err)
	defer func() { _ = operator.Rollback(ctx) }()
	_, err = operator.Exec(ctx, `UPDATE outbox_lanes SET suspended_at = now(), suspend_reason = 'hold' WHERE organization_id = 'org-race'`)
	require.NoError(t, err)
	settled := make(chan error, 1)
	go func() { _, err := r.settle([]*lane{ln}); settled <- err }()
	requireBlocking(t, db, operator) // the settlement waits for the operator's row lock
	require.NoError(t, operator.Commit(ctx))
	require.NoError(t, <-settled)

	var leased, suspended bool
	require.NoError(t, db.Pool.QueryRow(ctx, `SELECT lease_token IS NOT NULL, suspended_at IS NOT NULL
		FROM outbox_lanes WHERE organization_id = 'org-race'`).Scan(&leased, &suspended))
	require.False(t, leased, "released")
	require.True(t, suspended, "the pause is kept")
}
