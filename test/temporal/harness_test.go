// Package temporale2e runs outbox's Temporal integration end to end: a real
// Temporal server in process (go.temporal.io/server/temporaltest), a real
// PostgreSQL, the Svix fake over HTTP, the library's Signaler and worker,
// and the outbox command's --temporal mode as a process killed mid-drain.
// It is a module of its own, so the server's dependencies stay out of every
// other build, and it tests the integration on the newest SDK that builds
// with the server (the temporal module itself requires the oldest it
// supports, and its own tests run on that).
package temporale2e

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	enumspb "go.temporal.io/api/enums/v1"
	historypb "go.temporal.io/api/history/v1"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/converter"
	"go.temporal.io/server/temporaltest"

	"github.com/outboxrelay/outbox"
	"github.com/outboxrelay/outbox/internal/pgtest"
	"github.com/outboxrelay/outbox/internal/syncbuf"
	"github.com/outboxrelay/outbox/outboxtemporal"
	"github.com/outboxrelay/outbox/outboxtest/svixtest"
)

// The Temporal server's goroutines outlive its Stop.
func TestMain(m *testing.M) { pgtest.MainNoLeakCheck(m) }

// bundle is what an end-to-end test works with.
type bundle struct {
	ctx    context.Context
	ts     *temporaltest.TestServer
	client client.Client
	db     *pgtest.DB
	fake   *svixtest.Server
	logs   *syncbuf.Buffer
	logger *slog.Logger
	// queue is this test's task queue, so tests share nothing.
	queue string
}

func setup(t *testing.T) *bundle {
	t.Helper()
	ts := temporaltest.NewServer(temporaltest.WithT(t))
	logs := &syncbuf.Buffer{}
	return &bundle{
		ctx: context.Background(), ts: ts, client: ts.GetDefaultClient(),
		db: pgtest.New(t), fake: svixtest.NewT(t, svixtest.Options{}),
		logs: logs, logger: slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelInfo})),
		queue: "outbox-" + strings.ReplaceAll(strings.ToLower(t.Name()), "/", "-"),
	}
}

func (b *bundle) newSignaler(t *testing.T) *outboxtemporal.Signaler {
	t.Helper()
	s, err := outboxtemporal.NewSignaler(outboxtemporal.SignalerConfig{Client: b.client, TaskQueue: b.queue, Logger: b.logger})
	require.NoError(t, err)
	t.Cleanup(func() { _ = s.Close() })
	return s
}

// committed is what the producers committed, per organization in id order.
type committed struct {
	mu    sync.Mutex
	byOrg map[string][]outbox.AppendResult
}

func (c *committed) add(rs ...outbox.AppendResult) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.byOrg == nil {
		c.byOrg = map[string][]outbox.AppendResult{}
	}
	for _, r := range rs {
		c.byOrg[r.OrganizationID] = append(c.byOrg[r.OrganizationID], r)
	}
}

func (c *committed) total() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	for _, rs := range c.byOrg {
		n += len(rs)
	}
	return n
}

func (c *committed) orgs() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	var orgs []string
	for org := range c.byOrg {
		orgs = append(orgs, org)
	}
	slices.Sort(orgs)
	return orgs
}

// requireDeliveredOnceInOrder checks the fake holds every committed event
// exactly once, and each organization's in id order.
func (b *bundle) requireDeliveredOnceInOrder(t *testing.T, c *committed) {
	t.Helper()
	c.mu.Lock()
	defer c.mu.Unlock()
	total := 0
	for org, rs := range c.byOrg {
		total += len(rs)
		slices.SortFunc(rs, func(a, b outbox.AppendResult) int { return int(a.ID - b.ID) })
		want := make([]string, len(rs))
		for i, r := range rs {
			want[i] = r.EventID.String()
		}
		msgs := b.fake.MessagesFor(org)
		got := make([]string, len(msgs))
		for i, m := range msgs {
			got[i] = m.EventID
		}
		require.Equal(t, want, got, "organization %s: each event once, in id order", org)
	}
	require.Equal(t, total, b.fake.MessageCount(), "no message beyond the committed events")
}

// waitMessages waits until the fake holds n messages.
func (b *bundle) waitMessages(t *testing.T, n int, within time.Duration) {
	t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, within)
	defer cancel()
	if err := b.fake.WaitForMessages(ctx, n); err != nil {
		var pending int
		_ = b.db.Pool.QueryRow(b.ctx, "SELECT count(*) FROM outbox_events").Scan(&pending)
		t.Fatalf("waited %s for %d messages, have %d, pending %d; logs:\n%s", within, n, b.fake.MessageCount(), pending, b.logs.String())
	}
}

// waitWorkflowsClosed waits until every organization's workflow has
// completed: idle workflows end (a Linger after their last drain, if
// they linger).
func (b *bundle) waitWorkflowsClosed(t *testing.T, orgs []string, within time.Duration) {
	t.Helper()
	require.Eventually(t, func() bool {
		for _, org := range orgs {
			d, err := b.client.DescribeWorkflowExecution(b.ctx, outboxtemporal.WorkflowID("", org), "")
			if err != nil || d.GetWorkflowExecutionInfo().GetStatus() != enumspb.WORKFLOW_EXECUTION_STATUS_COMPLETED {
				return false
			}
		}
		return true
	}, within, 100*time.Millisecond, "every workflow completes once its lane is empty")
}

// requireDrainedAs checks, in the last run of each organization's
// workflow, that it drained and lingered as opts ask: its drains ran as
// local activities (a local activity's marker, no activity task) or as
// activities (the reverse), and it recorded the version marker of each
// change it uses and of no other (the defaults record nothing: no version
// marker, no search attribute upsert). A run that lingers also started its
// linger's timer after that marker.
func (b *bundle) requireDrainedAs(t *testing.T, orgs []string, opts outboxtemporal.Options) {
	t.Helper()
	for _, org := range orgs {
		var markers, activities, upserts, lingerTimers int
		changes := map[string]bool{}
		it := b.client.GetWorkflowHistory(b.ctx, outboxtemporal.WorkflowID("", org), "", false, enumspb.HISTORY_EVENT_FILTER_TYPE_ALL_EVENT)
		for it.HasNext() {
			e, err := it.Next()
			require.NoError(t, err)
			switch {
			case e.GetEventType() == enumspb.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
				activities++
			case e.GetMarkerRecordedEventAttributes().GetMarkerName() == "LocalActivity":
				markers++
			case e.GetMarkerRecordedEventAttributes().GetMarkerName() == "Version":
				changes[versionChangeID(t, e)] = true
			case e.GetEventType() == enumspb.EVENT_TYPE_UPSERT_WORKFLOW_SEARCH_ATTRIBUTES:
				upserts++
			case e.GetEventType() == enumspb.EVENT_TYPE_TIMER_STARTED && changes["outbox-linger"]:
				lingerTimers++
			}
		}
		if opts.LocalDrain {
			require.Positive(t, markers, "%s: a local drain's marker", org)
			require.Zero(t, activities, "%s: no activity task", org)
		} else {
			require.Positive(t, activities, "%s: a drain activity", org)
			require.Zero(t, markers, "%s: no local activity", org)
		}
		require.Equal(t, opts.LocalDrain, changes["outbox-local-drain"], "%s: the local-drain change's marker", org)
		require.Equal(t, opts.Linger > 0, changes["outbox-linger"], "%s: the linger change's marker", org)
		require.Equal(t, opts.Linger > 0, lingerTimers > 0, "%s: a linger's timer", org)
		require.Len(t, changes, upserts, "%s: the SDK upserts a search attribute with each version marker, and only then", org)
	}
}

// versionChangeID is the change id a version marker records.
func versionChangeID(t *testing.T, e *historypb.HistoryEvent) string {
	t.Helper()
	payloads := e.GetMarkerRecordedEventAttributes().GetDetails()["change-id"]
	var id string
	require.NoError(t, converter.GetDefaultDataConverter().FromPayloads(payloads, &id))
	return id
}

var (
	binaryOnce sync.Once
	binaryPath string
	binaryErr  error
)

// outboxBinary builds the outbox command with Temporal support, once.
func outboxBinary(t *testing.T) string {
	t.Helper()
	binaryOnce.Do(func() {
		dir, err := os.MkdirTemp("", "outbox-e2e-")
		if err != nil {
			binaryErr = err
			return
		}
		binaryPath = filepath.Join(dir, "outbox")
		cmd := exec.Command("go", "build", "-tags", "temporal", "-o", binaryPath, ".")
		cmd.Dir = filepath.Join("..", "..", "cmd", "outbox")
		// In the repository's workspace: outside it, cmd/outbox requires
		// the library at the release VERSION, which no proxy serves
		// before it is tagged.
		work, err := filepath.Abs(filepath.Join("..", "..", "go.work"))
		if err != nil {
			binaryErr = err
			return
		}
		cmd.Env = append(os.Environ(), "GOWORK="+work)
		if out, err := cmd.CombinedOutput(); err != nil {
			binaryErr = fmt.Errorf("go build -tags temporal ./cmd/outbox: %v\n%s", err, out)
		}
	})
	require.NoError(t, binaryErr)
	return binaryPath
}
