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
