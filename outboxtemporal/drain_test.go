package outboxtemporal_test

import (
	"context"
	"log/slog"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/converter"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/testsuite"
	"go.temporal.io/sdk/workflow"

	"github.com/outboxrelay/outbox"
	"github.com/outboxrelay/outbox/internal/pgtest"
	"github.com/outboxrelay/outbox/outboxtemporal"
	"github.com/outboxrelay/outbox/outboxtest/svixtest"
	"github.com/outboxrelay/outbox/relay"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// relaySetup returns a schema of its own with the events appended, a Svix
// fake, and a function that makes relays on both.
type relayBundle struct {
	db   *pgtest.DB
	fake *svixtest.Server
}

func relaySetup(t *testing.T, events map[string]int) *relayBundle {
	t.Helper()
	b := &relayBundle{db: pgtest.New(t), fake: svixtest.NewT(t, svixtest.Options{})}
	for org, n := range events {
		for i := range n {
			_, err := outbox.Append(context.Background(), b.db.Pool, outbox.AppendParams{
				OrganizationID: org, EventType: "test.event", Payload: map[string]any{"seq": i},
			})
			require.NoError(t, err)
		}
	}
	return b
}

func (b *relayBundle) newRelay(t *testing.T) *relay.Relay {
	t.Helper()
	r, err := relay.New(b.db.Pool, relay.Config{
		SvixToken: b.fake.Token(), SvixServerURL: b.fake.URL(),
		LeaseDuration: 5 * time.Second, SendTimeout: time.Second,
		Logger: slog.New(slog.NewTextHandler(tWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn})),
	})
	require.NoError(t, err)
	return r
}

// requireInOrderOnce checks the fake holds each of org's n events once, in
// append order.
func (b *relayBundle) requireInOrderOnce(t *testing.T, org string, n int) {
	t.Helper()
	msgs := b.fake.MessagesFor(org)
	require.Len(t, msgs, n)
	seen := map[string]bool{}
	var payloads []string
	for _, m := range msgs {
		require.False(t, seen[m.EventID], "event %s created twice", m.EventID)
		seen[m.EventID] = true
		payloads = append(payloads, string(m.Payload))
	}
	for i, p := range payloads {
		require.JSONEq(t, `{"seq":`+strconv.Itoa(i)+`}`, p, "message %d out of order", i)
	}
}

func TestWorkflowDeliversThroughTheRelayWhileHeartbeating(t *testing.T) {
	t.Parallel()
	b := relaySetup(t, map[string]int{"org-a": 30, "org-b": 5})
	b.fake.SetLatency(60 * time.Millisecond) // the drain takes about 2 s
	env := newTestEnv(t)
	require.NoError(t, outboxtemporal.Register(env, b.newRelay(t), outboxtemporal.Options{
		DrainBudget: 10 * time.Second, ActivityHeartbeatTimeout: 600 * time.Millisecond,
	}))
	var mu sync.Mutex
	var starts, heartbeats int
	env.SetOnActivityStartedListener(func(*activity.Info, context.Context, converter.EncodedValues) {
		mu.Lock()
		starts++
		mu.Unlock()
	})
	env.SetOnActivityHeartbeatListener(func(*activity.Info, converter.EncodedValues) {
		mu.Lock()
		heartbeats++
		mu.Unlock()
	})

	run(env, "org-a")
	require.True(t, env.IsWorkflowCompleted())
	require.NoError(t, env.GetWorkflowError())
	b.requireInOrderOnce(t, "org-a", 30)
	require.Empty(t, b.fake.MessagesFor("org-b"), "the workflow drains its own organization only")
	mu.Lock()
	defer mu.Unlock()
	require.Equal(t, 1, starts, "one drain did it all, never timed out for want of heartbeats")
	require.GreaterOrEqual(t, heartbeats, 2, "a drain longer than the heartbeat timeout heartbeats")
}

func TestDuplicateDrainsCreateEachMessageOnce(t *testing.T) {
	t.Parallel()
	b := relaySetup(t, map[string]int{"org-dup": 40})
	b.fake.SetLatency(5 * time.Millisecond)
	// Two attempts of one drain at once (a retry while the first attempt,
	// timed out, still runs), on two workers.
	var wg sync.WaitGroup
	results := make([]outboxtemporal.DrainResult, 2)
	for i := range results {
		env := (&testsuite.WorkflowTestSuite{}).NewTestActivityEnvironment()
		require.NoError(t, outboxtemporal.Register(activityOnly{env}, b.newRelay(t), outboxtemporal.Options{}))
		wg.Add(1)
		go func() {
			defer wg.Done()
			for first := true; first || results[i].Remaining > 0; first = false {
				v, err := env.ExecuteActivity(outboxtemporal.ActivityName, outboxtemporal.DrainInput{OrganizationID: "org-dup", BudgetMillis: 5000})
				if !assert.NoError(t, err) {
					return
				}
				var res outboxtemporal.DrainResult
				if !assert.NoError(t, v.Get(&res)) {
					return
				}
				res.Delivered += results[i].Delivered
				results[i] = res
				if res.Busy {
					time.Sleep(50 * time.Millisecond)
				}
			}
		}()
	}
	wg.Wait()
	b.requireInOrderOnce(t, "org-dup", 40)
	require.Equal(t, 40, results[0].Delivered+results[1].Delivered, "every event delivered by exactly one attempt")
}

func TestDrainActivityRefusesABadOrganizationID(t *testing.T) {
	t.Parallel()
	env := (&testsuite.WorkflowTestSuite{}).NewTestActivityEnvironment()
	require.NoError(t, outboxtemporal.Register(activityOnly{env}, &scripted{}, outboxtemporal.Options{}))
	_, err := env.ExecuteActivity(outboxtemporal.ActivityName, outboxtemporal.DrainInput{OrganizationID: "", BudgetMillis: 1000})
	var appErr *temporal.ApplicationError
	require.ErrorAs(t, err, &appErr)
	require.Equal(t, outboxtemporal.ErrorTypeInvalidInput, appErr.Type())
	require.True(t, appErr.NonRetryable())
	require.ErrorContains(t, err, "OrganizationID")
}

// activityOnly lets Register register on a TestActivityEnvironment, which
// has no workflows.
type activityOnly struct {
	*testsuite.TestActivityEnvironment
}

func (activityOnly) RegisterWorkflowWithOptions(any, workflow.RegisterOptions) {}
