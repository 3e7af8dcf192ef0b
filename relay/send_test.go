package relay_test

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/svix/svix-webhooks/go/models"

	"github.com/outboxrelay/outbox"
	"github.com/outboxrelay/outbox/outboxtest/svixtest"
	"github.com/outboxrelay/outbox/relay"
)

func TestTransientFailuresEndInDelivery(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		fault svixtest.Fault
	}{
		{"429 with Retry-After", svixtest.Fault{Kind: svixtest.FaultRateLimit, RetryAfter: time.Second, Times: 2}},
		{"429 without Retry-After", svixtest.Fault{Kind: svixtest.FaultRateLimit, Times: 3}},
		{"500", svixtest.Fault{Kind: svixtest.FaultStatus, Status: 500, Times: 3}},
		{"502", svixtest.Fault{Kind: svixtest.FaultStatus, Status: 502, Times: 2}},
		{"503", svixtest.Fault{Kind: svixtest.FaultStatus, Status: 503, Times: 3}},
		{"hang past the deadline", svixtest.Fault{Kind: svixtest.FaultHang, Times: 2}},
		{"connection reset", svixtest.Fault{Kind: svixtest.FaultReset, Times: 3}},
		{"response lost after storing", svixtest.Fault{Kind: svixtest.FaultLostResponse, Times: 3}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			b := setup(t)
			b.cfg.SendTimeout = 300 * time.Millisecond
			b.cfg.QuickRetries = -1 // the scheduled path; quickretry_test.go has the quick one
			b.fake.InjectFault(tt.fault)
			committed := b.appendCommitted(t, []string{"org-f"}, 4)

			r, _ := b.start(t)
			b.waitMessages(t, len(committed), 20*time.Second)
			b.waitSettled(t, 10*time.Second)
			b.requireExactlyOnce(t, committed)

			var faulted int
			for _, req := range b.fake.Requests() {
				if req.Fault != "" {
					faulted++
				}
			}
			require.Equal(t, tt.fault.Times, faulted, "every injected fault was met")
			st := r.Stats()
			if tt.fault.Kind == svixtest.FaultRateLimit {
				require.Positive(t, st.RateLimited)
			} else if tt.fault.Kind != svixtest.FaultLostResponse && tt.fault.Kind != svixtest.FaultReset {
				// (Go's transport may retry a reset or lost response by itself.)
				var maxAttempts int
				for _, d := range b.deliveries(t) {
					maxAttempts = max(maxAttempts, d.attempts)
				}
				require.Greater(t, maxAttempts, 1, "attempts are recorded")
				require.Positive(t, st.Retried)
			}
			require.Zero(t, st.DeadLettered)
		})
	}
}

func TestRetryAfterIsHonoured(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.fake.InjectFault(svixtest.Fault{Kind: svixtest.FaultRateLimit, RetryAfter: time.Second, Times: 1})
	b.appendCommitted(t, []string{"org-ra"}, 1)

	b.start(t)
	b.waitMessages(t, 1, 10*time.Second)
	var creates []time.Time
	for _, req := range b.fake.Requests() {
		if req.Method == "POST" {
			creates = append(creates, req.Time)
		}
	}
	require.Len(t, creates, 2)
	require.GreaterOrEqual(t, creates[1].Sub(creates[0]), 900*time.Millisecond, "the retry came before Retry-After")
}

func TestPermanentRejectionDeadLettersAndLaneGoesOn(t *testing.T) {
	t.Parallel()
	for _, status := range []int{400, 404, 413, 422} {
		t.Run(fmt.Sprint(status), func(t *testing.T) {
			t.Parallel()
			b := setup(t)
			committed := b.appendCommitted(t, []string{"org-p"}, 5)
			poison := committed[2].EventID.String()
			b.fake.InjectFault(svixtest.Fault{Kind: svixtest.FaultStatus, Status: status,
				Match: func(r *svixtest.Request) bool { return r.EventID == poison }})

			r, _ := b.start(t)
			b.waitMessages(t, 4, 10*time.Second)
			b.waitSettled(t, 10*time.Second)
			b.requireExactlyOnce(t, append(committed[:2:2], committed[3:]...))

			dead, err := r.Admin().DeadLetters(b.ctx, relay.DeadLetterListParams{})
			require.NoError(t, err)
			require.Len(t, dead, 1)
			require.Equal(t, poison, dead[0].EventID.String())
			require.Equal(t, status, dead[0].StatusCode)
			require.NotEmpty(t, dead[0].ResponseBody)
			require.Contains(t, dead[0].LastError, fmt.Sprint(status))
			require.JSONEq(t, `{"seq":2,"org":"org-p"}`, string(dead[0].Payload))
			waitStats(t, func(st relay.Stats) bool { return st.DeadLettered == 1 }, r)
		})
	}
}

func TestBadTokenDeadLettersNothingAndDeliveryResumes(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.fake.SetToken("rotated-elsewhere")
	committed := b.appendCommitted(t, []string{"org-t1", "org-t2"}, 3)

	r, stop := b.start(t)
	require.Eventually(t, func() bool { return r.Stats().AuthFailures >= 2 }, 10*time.Second, 10*time.Millisecond,
		"the relay keeps trying after its pause")
	stop() // settles the turn in flight, so the attempts below are final
	require.Zero(t, b.fake.MessageCount())
	require.Zero(t, r.Stats().DeadLettered)
	require.Equal(t, len(committed), b.pending(t), "nothing left the outbox")
	var maxAttempts int
	require.NoError(t, b.db.Pool.QueryRow(b.ctx, "SELECT max(attempts) FROM outbox_events").Scan(&maxAttempts))
	require.Zero(t, maxAttempts, "a refused token costs the events no attempt")
	require.Contains(t, b.logs.String(), "Svix refused the API token")
	require.Contains(t, b.logs.String(), "level=ERROR")
	require.NotContains(t, b.logs.String(), b.fake.Token(), "the token must never be logged")

	// A running relay resumes by itself once the token works again.
	r, _ = b.start(t)
	require.Eventually(t, func() bool { return r.Stats().AuthFailures >= 1 }, 10*time.Second, 10*time.Millisecond)
	b.fake.SetToken(b.cfg.SvixToken)
	b.waitMessages(t, len(committed), 10*time.Second)
	b.requireExactlyOnce(t, committed)
}

func TestMaxAttemptsDeadLetters(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.cfg.MaxAttempts = 3
	b.cfg.QuickRetries = -1 // one call per attempt, to count them
	b.fake.InjectFault(svixtest.Fault{Kind: svixtest.FaultStatus, Status: 503})
	b.appendCommitted(t, []string{"org-m"}, 1)

	r, _ := b.start(t)
	require.Eventually(t, func() bool { return r.Stats().DeadLettered == 1 }, 10*time.Second, 10*time.Millisecond)
	dead, err := r.Admin().DeadLetters(b.ctx, relay.DeadLetterListParams{})
	require.NoError(t, err)
	require.Len(t, dead, 1)
	require.Equal(t, 3, dead[0].Attempts)
	require.Contains(t, dead[0].LastError, "gave up after 3 attempts")
	require.Equal(t, 3, b.fake.CreateAttempts())
}

func TestConflictIsConfirmedAsDelivered(t *testing.T) {
	t.Parallel()
	b := setup(t)
	committed := b.appendCommitted(t, []string{"org-c"}, 1)
	// An earlier attempt created the message, with another idempotency key.
	eventID := committed[0].EventID.String()
	pre, err := b.fake.Client(t).Message.Create(b.ctx, "org-c", models.MessageIn{
		EventType: "test.event", EventId: &eventID, Payload: map[string]any{"seq": 0, "org": "org-c"},
		Application: &models.ApplicationIn{Name: "org-c", Uid: ptr("org-c")},
	}, nil)
	require.NoError(t, err)

	r, _ := b.start(t)
	b.waitSettled(t, 10*time.Second)
	require.Equal(t, 1, b.fake.MessageCount())
	require.Equal(t, 1, b.fake.Conflicts())
	require.EqualValues(t, 1, r.Stats().ConflictsConfirmed)
	require.Equal(t, pre.Id, b.deliveries(t)[eventID].messageID)
}

func ptr[T any](v T) *T { return &v }

func TestGlobalRateLimit(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.cfg.RateLimit = 50
	committed := b.appendCommitted(t, []string{"org-r1", "org-r2"}, 20)

	start := time.Now()
	b.start(t)
	b.waitMessages(t, len(committed), 20*time.Second)
	// 40 messages at 50/s with a burst of 5 take at least 0.7 s.
	require.GreaterOrEqual(t, time.Since(start), 700*time.Millisecond)
	b.requireExactlyOnce(t, committed)
}

func TestPayloadNumbersStayExact(t *testing.T) {
	t.Parallel()
	b := setup(t)
	_, err := outbox.Append(b.ctx, b.db.Pool, outbox.AppendParams{OrganizationID: "org-n", EventType: "test.event",
		Payload: []byte(`{"big": 9007199254740993, "f": 1.5e300, "nested": {"a": [1, "x", null]}}`)})
	require.NoError(t, err)
	b.start(t)
	b.waitMessages(t, 1, 10*time.Second)
	require.JSONEq(t, `{"big": 9007199254740993, "f": 1.5e300, "nested": {"a": [1, "x", null]}}`, string(b.fake.Messages()[0].Payload))
	require.Contains(t, string(b.fake.Messages()[0].Payload), "9007199254740993")
}

// isGetMessage matches the lookup that confirms a 409.
func isGetMessage(r *svixtest.Request) bool {
	return r.Method == http.MethodGet && strings.Contains(r.Path, "/msg/")
}

// A 409 on eventId is confirmed with Message.Get, whose own failures are
// classified like a create's: a 404 may be read-after-write lag and is
// looked up again a few times before the event is dead-lettered; 401 pauses
// delivery; a 5xx retries.
func TestConflictLookupFailuresAreClassified(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		fault     svixtest.Fault
		delivered bool // else dead-lettered
		authPause bool
	}{
		{"404 once, then found", svixtest.Fault{Kind: svixtest.FaultStatus, Status: 404, Times: 1, Match: isGetMessage}, true, false},
		{"404 twice, then found", svixtest.Fault{Kind: svixtest.FaultStatus, Status: 404, Times: 2, Match: isGetMessage}, true, false},
		{"404 every time", svixtest.Fault{Kind: svixtest.FaultStatus, Status: 404, Match: isGetMessage}, false, false},
		{"503 on the lookup", svixtest.Fault{Kind: svixtest.FaultStatus, Status: 503, Times: 2, Match: isGetMessage}, true, false},
		{"401 on the lookup", svixtest.Fault{Kind: svixtest.FaultStatus, Status: 401, Times: 1, Match: isGetMessage}, true, true},
		{"429 on the lookup", svixtest.Fault{Kind: svixtest.FaultRateLimit, Times: 1, Match: isGetMessage}, true, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			b := setup(t)
			b.appendCreatedBefore(t, "org-c")
			b.fake.InjectFault(tt.fault)

			r, _ := b.start(t)
			b.waitSettled(t, 10*time.Second)
			require.Equal(t, 1, b.fake.MessageCount(), "never a second message")
			if tt.delivered {
				waitStats(t, func(st relay.Stats) bool { return st.Delivered == 1 && st.DeadLettered == 0 }, r)
				require.EqualValues(t, 1, r.Stats().ConflictsConfirmed)
			} else {
				waitStats(t, func(st relay.Stats) bool { return st.DeadLettered == 1 }, r)
				dead, err := r.Admin().DeadLetters(b.ctx, relay.DeadLetterListParams{})
				require.NoError(t, err)
				require.Len(t, dead, 1)
				require.Equal(t, 3, dead[0].Attempts, "looked up three times first")
				require.Equal(t, http.StatusConflict, dead[0].StatusCode)
			}
			if tt.authPause {
				require.EqualValues(t, 1, r.Stats().AuthFailures)
			}
		})
	}
}

// An event appended long ago may have been created by an attempt whose
// answer was lost, beyond Svix's idempotency window: the relay looks it up
// by eventId before it creates it.
func TestOldEventIsLookedUpBeforeCreate(t *testing.T) {
	t.Parallel()
	b := setup(t)
	committed := b.appendCommitted(t, []string{"org-old"}, 2)
	_, err := b.db.Pool.Exec(b.ctx, "UPDATE outbox_events SET created_at = now() - interval '2 days'")
	require.NoError(t, err)
	created := committed[0].EventID.String()
	pre, err := b.fake.Client(t).Message.Create(b.ctx, "org-old", models.MessageIn{
		EventType: "test.event", EventId: &created, Payload: map[string]any{"seq": 0},
		Application: &models.ApplicationIn{Name: "org-old", Uid: ptr("org-old")},
	}, nil)
	require.NoError(t, err)
	before := len(b.fake.Requests())

	r, _ := b.start(t)
	b.waitSettled(t, 10*time.Second)
	b.requireExactlyOnce(t, committed)
	require.Equal(t, pre.Id, b.deliveries(t)[created].messageID)
	waitStats(t, func(st relay.Stats) bool { return st.Delivered == 2 }, r)
	require.EqualValues(t, 1, r.Stats().FoundBeforeCreate)
	require.Zero(t, b.fake.Conflicts(), "the old event was found, not re-created")
	var gets, creates int
	for _, req := range b.fake.Requests()[before:] {
		switch {
		case isGetMessage(&req):
			gets++
		case req.Method == http.MethodPost:
			creates++
		}
	}
	require.Equal(t, 2, gets, "both old events looked up")
	require.Equal(t, 1, creates, "only the one Svix did not have created")
}

// The 409 lookups are counted on their own: an event whose first attempts
// failed for other reasons (two 503s here) still gets its lookups after a
// 409. It used to count the event's attempts, and was dead-lettered on the
// first lookup lag although the message existed.
func TestConflictLookupsAreCountedApartFromAttempts(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.cfg.QuickRetries = -1 // one call per attempt
	b.appendCreatedBefore(t, "org-c")
	b.fake.InjectFault(svixtest.Fault{Kind: svixtest.FaultStatus, Status: 503, Times: 2})
	b.fake.InjectFault(svixtest.Fault{Kind: svixtest.FaultStatus, Status: 404, Times: 1, Match: isGetMessage})

	r, _ := b.start(t)
	b.waitSettled(t, 10*time.Second)
	waitStats(t, func(st relay.Stats) bool { return st.Delivered == 1 }, r)
	require.Zero(t, r.Stats().DeadLettered)
	require.EqualValues(t, 1, r.Stats().ConflictsConfirmed)
	require.Equal(t, 1, b.fake.MessageCount(), "never a second message")
}

// appendCreatedBefore commits one event for org whose message an earlier
// attempt already created in Svix (another idempotency key), so the relay's
// create answers 409.
func (b *bundle) appendCreatedBefore(t *testing.T, org string) {
	t.Helper()
	committed := b.appendCommitted(t, []string{org}, 1)
	eventID := committed[0].EventID.String()
	_, err := b.fake.Client(t).Message.Create(b.ctx, org, models.MessageIn{
		EventType: "test.event", EventId: &eventID, Payload: map[string]any{"seq": 0},
		Application: &models.ApplicationIn{Name: org, Uid: ptr(org)},
	}, nil)
	require.NoError(t, err)
}
