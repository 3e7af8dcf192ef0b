package relay_test

import (
	"context"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/outboxrelay/outbox"
	"github.com/outboxrelay/outbox/outboxtest/svixtest"
	"github.com/outboxrelay/outbox/relay"
)

// eventsSetup returns a bundle whose relay retries a 503 an hour later at
// most (so a failed event stays pending), Svix refusing org-retry's events
// with 503 and org-dead's with 422, and org-skip having no webhooks.
func eventsSetup(t *testing.T) *bundle {
	t.Helper()
	b := setup(t)
	b.cfg.RetryBaseDelay, b.cfg.RetryMaxDelay = time.Hour, time.Hour
	b.cfg.QuickRetries = -1 // the 503 waits for its scheduled retry
	b.cfg.Resolver = relay.ResolverFunc(func(ctx context.Context, org string) (relay.Destination, error) {
		if org == "org-skip" {
			return relay.Destination{Skip: true}, nil
		}
		return relay.DefaultResolver.Resolve(ctx, org)
	})
	b.fake.InjectFault(svixtest.Fault{Kind: svixtest.FaultStatus, Status: 503,
		Match: func(r *svixtest.Request) bool { return r.Method == "POST" && r.App == "org-retry" }})
	b.fake.InjectFault(svixtest.Fault{Kind: svixtest.FaultStatus, Status: 422,
		Match: func(r *svixtest.Request) bool { return r.Method == "POST" && r.App == "org-dead" }})
	return b
}

// drain appends n events per organization, drains each organization once,
// and returns the events by organization.
func (b *bundle) drain(t *testing.T, r *relay.Relay, orgs []string, n int) map[string][]outbox.AppendResult {
	t.Helper()
	out := map[string][]outbox.AppendResult{}
	for _, res := range b.appendCommitted(t, orgs, n) {
		out[res.OrganizationID] = append(out[res.OrganizationID], res)
	}
	for _, org := range orgs {
		_, err := r.DrainOrganization(b.ctx, org, 5*time.Second)
		require.NoError(t, err)
	}
	return out
}

func TestFindEvent(t *testing.T) {
	t.Parallel()
	b := eventsSetup(t)
	r := b.newRelay(t)
	events := b.drain(t, r, []string{"org-ok", "org-retry", "org-dead", "org-skip"}, 1)
	admin, err := relay.NewAdmin(b.db.Pool, relay.AdminConfig{})
	require.NoError(t, err)
	before := time.Now().Add(-time.Minute)

	t.Run("delivered", func(t *testing.T) {
		ev := events["org-ok"][0]
		st, err := admin.FindEvent(b.ctx, ev.EventID)
		require.NoError(t, err)
		msgs := b.fake.MessagesFor("org-ok")
		require.Len(t, msgs, 1)
		require.Equal(t, relay.EventDelivered, st.State)
		require.Equal(t, ev.EventID, st.EventID)
		require.Equal(t, ev.ID, st.ID)
		require.Equal(t, "org-ok", st.OrganizationID)
		require.Equal(t, "test.event", st.EventType)
		require.Equal(t, 1, st.Attempts)
		require.Equal(t, msgs[0].ID, st.SvixMessageID, "the message id Svix returned")
		require.NotNil(t, st.SettledAt)
		require.False(t, st.SettledAt.Before(st.CreatedAt))
		require.True(t, st.CreatedAt.After(before))
		require.Nil(t, st.DeadAt)
		require.Nil(t, st.NextAttemptAt)
		require.Empty(t, st.LastError)
	})

	t.Run("skipped", func(t *testing.T) {
		st, err := admin.FindEvent(b.ctx, events["org-skip"][0].EventID)
		require.NoError(t, err)
		require.Equal(t, relay.EventSkipped, st.State)
		require.NotNil(t, st.SettledAt)
		require.Empty(t, st.SvixMessageID)
	})

	t.Run("pending after a failed attempt", func(t *testing.T) {
		ev := events["org-retry"][0]
		st, err := admin.FindEvent(b.ctx, ev.EventID)
		require.NoError(t, err)
		require.Equal(t, relay.EventPending, st.State)
		require.Equal(t, ev.ID, st.ID)
		require.Equal(t, "org-retry", st.OrganizationID)
		require.GreaterOrEqual(t, st.Attempts, 1)
		require.Contains(t, st.LastError, "503")
		require.NotNil(t, st.LastAttemptAt)
		require.NotNil(t, st.NextAttemptAt, "a retry is scheduled")
		require.Nil(t, st.PausedUntil)
		require.Empty(t, st.HeldBy, "the drain released its lease")
		require.Nil(t, st.SettledAt)
		require.Nil(t, st.DeadAt)

		// Its lane paused after a 429, then held by a relay working it.
		_, err = b.db.Pool.Exec(b.ctx, "UPDATE outbox_lanes SET paused_until = now() + interval '1 hour' WHERE organization_id = 'org-retry'")
		require.NoError(t, err)
		st, err = admin.FindEvent(b.ctx, ev.EventID)
		require.NoError(t, err)
		require.NotNil(t, st.PausedUntil)
		require.WithinDuration(t, time.Now().Add(time.Hour), *st.PausedUntil, time.Minute)
		_, err = b.db.Pool.Exec(b.ctx, `UPDATE outbox_lanes SET paused_until = now() - interval '1 second',
			lease_token = gen_random_uuid(), leased_until = now() + interval '1 minute', leased_by = 'relay-7'
			WHERE organization_id = 'org-retry'`)
		require.NoError(t, err)
		st, err = admin.FindEvent(b.ctx, ev.EventID)
		require.NoError(t, err)
		require.Nil(t, st.PausedUntil, "a pause that ended is no pause")
		require.Equal(t, "relay-7", st.HeldBy)
	})

	t.Run("dead-lettered", func(t *testing.T) {
		ev := events["org-dead"][0]
		st, err := admin.FindEvent(b.ctx, ev.EventID)
		require.NoError(t, err)
		require.Equal(t, relay.EventDeadLettered, st.State)
		require.Equal(t, ev.ID, st.ID)
		require.Equal(t, 1, st.Attempts)
		require.Equal(t, 422, st.StatusCode)
		require.Equal(t, "svix refused the message: 422", st.LastError)
		require.NotEmpty(t, st.ResponseBody, "Svix's answer")
		require.NotNil(t, st.DeadAt)
		require.Nil(t, st.SettledAt)
		require.Empty(t, st.SvixMessageID)
	})

	t.Run("unknown", func(t *testing.T) {
		id := uuid.New()
		st, err := admin.FindEvent(b.ctx, id)
		require.NoError(t, err, "unknown is an answer, not an error")
		require.Equal(t, relay.EventRecord{State: relay.EventUnknown, EventID: id}, st)
	})
}

// An event id appended again after it settled is pending: the pending row
// is the event's state, whatever the history says.
func TestFindEventPendingAgainAfterDelivery(t *testing.T) {
	t.Parallel()
	b := setup(t)
	r := b.newRelay(t)
	id := uuid.New()
	p := outbox.AppendParams{OrganizationID: "org-again", EventType: "test.event", Payload: map[string]any{}, EventID: id}
	_, err := outbox.Append(b.ctx, b.db.Pool, p)
	require.NoError(t, err)
	_, err = r.DrainOrganization(b.ctx, "org-again", 5*time.Second)
	require.NoError(t, err)
	admin := r.Admin()
	st, err := admin.FindEvent(b.ctx, id)
	require.NoError(t, err)
	require.Equal(t, relay.EventDelivered, st.State)

	_, err = outbox.Append(b.ctx, b.db.Pool, p)
	require.NoError(t, err)
	st, err = admin.FindEvent(b.ctx, id)
	require.NoError(t, err)
	require.Equal(t, relay.EventPending, st.State)
	require.Zero(t, st.Attempts)
	require.Nil(t, st.NextAttemptAt, "due now")
	require.Nil(t, st.LastAttemptAt)
}

func TestListEvents(t *testing.T) {
	t.Parallel()
	b := eventsSetup(t)
	r := b.newRelay(t)
	events := b.drain(t, r, []string{"org-ok", "org-retry", "org-dead"}, 3)
	admin := r.Admin()
	// A pending event older than the default window, and a history row from
	// before it: the default Since (24h) leaves both out.
	old, err := outbox.Append(b.ctx, b.db.Pool, outbox.AppendParams{OrganizationID: "org-ok", EventType: "old.event", Payload: map[string]any{}})
	require.NoError(t, err)
	_, err = b.db.Pool.Exec(b.ctx, "UPDATE outbox_events SET created_at = now() - interval '25 hours' WHERE id = $1", old.ID)
	require.NoError(t, err)
	_, err = b.db.Pool.Exec(b.ctx, `INSERT INTO outbox_deliveries (id, event_id, organization_id, event_type, outcome, svix_message_id, attempts, created_at, settled_at)
		VALUES (1, gen_random_uuid(), 'org-ok', 'old.event', 'delivered', 'msg_old', 1, now() - interval '26 hours', now() - interval '25 hours')`)
	require.NoError(t, err)

	ids := func(evs []relay.EventRecord) []int64 {
		var out []int64
		for _, e := range evs {
			out = append(out, e.ID)
		}
		return out
	}
	want := func(results []outbox.AppendResult) []int64 {
		var out []int64
		for i := len(results) - 1; i >= 0; i-- { // newest first
			out = append(out, results[i].ID)
		}
		return out
	}

	t.Run("every state, newest first", func(t *testing.T) {
		got, err := admin.ListEvents(b.ctx, relay.ListEventsParams{OrganizationID: "org-ok"})
		require.NoError(t, err)
		require.Equal(t, want(events["org-ok"]), ids(got))
		msgs := map[string]string{}
		for _, m := range b.fake.MessagesFor("org-ok") {
			msgs[m.EventID] = m.ID
		}
		for _, e := range got {
			require.Equal(t, relay.EventDelivered, e.State)
			require.Equal(t, msgs[e.EventID.String()], e.SvixMessageID)
		}
	})

	t.Run("pending, with the failed attempt", func(t *testing.T) {
		got, err := admin.ListEvents(b.ctx, relay.ListEventsParams{OrganizationID: "org-retry", State: relay.EventPending})
		require.NoError(t, err)
		require.Equal(t, want(events["org-retry"]), ids(got))
		require.Contains(t, got[2].LastError, "503", "the head event was tried")
		none, err := admin.ListEvents(b.ctx, relay.ListEventsParams{OrganizationID: "org-retry", State: relay.EventDelivered})
		require.NoError(t, err)
		require.Empty(t, none)
	})

	t.Run("dead-lettered", func(t *testing.T) {
		got, err := admin.ListEvents(b.ctx, relay.ListEventsParams{OrganizationID: "org-dead", State: relay.EventDeadLettered, Limit: 2})
		require.NoError(t, err)
		require.Equal(t, want(events["org-dead"])[:2], ids(got), "the limit keeps the newest")
		require.Equal(t, 422, got[0].StatusCode)
	})

	t.Run("since", func(t *testing.T) {
		got, err := admin.ListEvents(b.ctx, relay.ListEventsParams{OrganizationID: "org-ok", Since: time.Now().Add(-48 * time.Hour)})
		require.NoError(t, err)
		require.Len(t, got, 5, "the old pending event and the old history row too")
		require.Equal(t, old.ID, got[0].ID, "newest id first")
		require.Equal(t, relay.EventPending, got[0].State)
		require.Equal(t, int64(1), got[4].ID)
		require.Equal(t, "msg_old", got[4].SvixMessageID)

		got, err = admin.ListEvents(b.ctx, relay.ListEventsParams{OrganizationID: "org-ok", Since: time.Now().Add(time.Minute)})
		require.NoError(t, err)
		require.Empty(t, got)
	})

	t.Run("another organization's events are not listed", func(t *testing.T) {
		got, err := admin.ListEvents(b.ctx, relay.ListEventsParams{OrganizationID: "org-nobody"})
		require.NoError(t, err)
		require.Empty(t, got)
	})
}

func TestListEventsRefusesBadParams(t *testing.T) {
	t.Parallel()
	admin, err := relay.NewAdmin(nopDB{}, relay.AdminConfig{}) // refused before any SQL
	require.NoError(t, err)
	for _, tt := range []struct {
		p     relay.ListEventsParams
		field string
	}{
		{relay.ListEventsParams{}, "OrganizationID"},
		{relay.ListEventsParams{OrganizationID: "o", State: relay.EventUnknown}, "State"},
		{relay.ListEventsParams{OrganizationID: "o", State: "Delivered"}, "State"},
		{relay.ListEventsParams{OrganizationID: "o", Limit: -1}, "Limit"},
		{relay.ListEventsParams{OrganizationID: "o", Limit: relay.MaxListEventsLimit + 1}, "Limit"},
	} {
		_, err := admin.ListEvents(context.Background(), tt.p)
		require.ErrorIs(t, err, relay.ErrInvalidListEventsParams, "%+v", tt.p)
		var ve *outbox.ValidationError
		require.ErrorAs(t, err, &ve)
		require.Equal(t, tt.field, ve.Field)
		require.Contains(t, err.Error(), tt.field)
		require.Equal(t, err, tt.p.Validate())
	}
	require.NoError(t, relay.ListEventsParams{OrganizationID: "o", State: relay.EventSkipped, Limit: relay.MaxListEventsLimit}.Validate())
}

// nopDB panics on every statement (its DBTX is nil): a test that uses it
// expects none.
type nopDB struct{ outbox.DBTX }
