package reliability

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/outboxrelay/outbox/migrations"
	"github.com/outboxrelay/outbox/outboxtest/svixtest"
)

// previousRelease builds the outbox command of the commit before the
// newest migration was added (a git worktree of this repository): the
// release an installation runs while it is migrated to this one's schema.
func previousRelease(t *testing.T) (bin, commit string) {
	t.Helper()
	all := migrations.All()
	newest := all[len(all)-1]
	git := func(args ...string) string {
		out, err := exec.Command("git", args...).CombinedOutput()
		require.NoError(t, err, "git %s: %s (the test needs the repository's history)", strings.Join(args, " "), out)
		return strings.TrimSpace(string(out))
	}
	added := git("log", "--diff-filter=A", "--format=%H", "-1", "--", fmt.Sprintf("../../migrations/%04d_%s.up.sql", newest.Version, newest.Name))
	require.NotEmpty(t, added, "the commit that added migration %04d", newest.Version)
	commit = git("rev-parse", added+"^")
	dir := filepath.Join(t.TempDir(), "previous")
	git("worktree", "add", "--detach", dir, commit)
	t.Cleanup(func() { _ = exec.Command("git", "worktree", "remove", "--force", dir).Run() })
	bin = filepath.Join(t.TempDir(), "outbox-previous")
	build := exec.Command("go", "build", "-o", bin, "./cmd/outbox")
	build.Dir = dir
	build.Env = append(os.Environ(), "GOWORK=") // the worktree's own go.work
	out, err := build.CombinedOutput()
	require.NoError(t, err, "build the previous release's outbox: %s", out)
	return bin, commit
}

// A rolling upgrade: the previous release's relay and producers work while
// the database is migrated to this release's schema, then this release's
// relay joins them. Every committed event is created in Svix once, and in
// order per organization (one producer per organization, so the order of
// appends is the order of commits).
func TestRollingUpgrade(t *testing.T) {
	prevBin, commit := previousRelease(t)
	t.Logf("previous release: %s", commit)
	e := newBareEnv(t, svixtest.Options{Latency: 2 * time.Millisecond})
	ctx, schema, pool, fake := e.ctx, e.schema, e.pool, e.fake

	migrate := exec.Command(prevBin, "migrate", "up", "--schema", schema)
	migrate.Env = []string{"DATABASE_URL=" + server.URL, "PATH=" + os.Getenv("PATH")}
	out, err := migrate.CombinedOutput()
	require.NoError(t, err, "the previous release migrates its schema: %s", out)
	old := e.startRelayBinary(prevBin, e.url, "previous", e.token, fake.URL())

	// Producers as every release writes: the first release's columns, a
	// NOTIFY after each commit; one producer per organization.
	const orgs = 8
	var (
		stop      atomic.Bool
		wg        sync.WaitGroup
		committed atomic.Int64
		perOrg    [orgs]atomic.Int64
	)
	for o := range orgs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			org := fmt.Sprintf("org-up-%d", o)
			for seq := 0; !stop.Load(); seq++ {
				_, err := pool.Exec(ctx, `INSERT INTO outbox_events (event_id, organization_id, event_type, payload) VALUES ($1, $2, 'upgrade.event', $3)`,
					uuid.Must(uuid.NewV7()), org, fmt.Sprintf(`{"seq":%d}`, seq))
				if !assertNoError(t, err) {
					return
				}
				perOrg[o].Add(1)
				committed.Add(1)
				_, _ = pool.Exec(ctx, "SELECT pg_notify($1, $2)", schema, org)
				time.Sleep(5 * time.Millisecond) // pacing: 200 events/s per organization
			}
		}()
	}
	require.Eventually(t, func() bool { return fake.MessageCount() >= 200 }, 30*time.Second, 10*time.Millisecond, "the previous relay delivers")

	applied, err := migrations.Up(ctx, pool, migrations.Options{Schema: schema})
	require.NoError(t, err, "migrate to this release's schema while the previous release runs")
	require.NotEmpty(t, applied)
	atUpgrade := fake.MessageCount()
	require.Eventually(t, func() bool { return fake.MessageCount() >= atUpgrade+200 }, 30*time.Second, 10*time.Millisecond,
		"the previous relay goes on delivering on the new schema; its logs:\n%s", old.stderr)
	current := e.startRelay("current", e.token)
	require.Eventually(t, func() bool { return fake.MessageCount() >= atUpgrade+600 }, 30*time.Second, 10*time.Millisecond, "both relays deliver")
	stop.Store(true)
	wg.Wait()

	total := int(committed.Load())
	require.Eventually(t, func() bool { return fake.MessageCount() >= total && e.pending() == 0 }, time.Minute, 10*time.Millisecond,
		"every committed event delivered (%d of %d)", fake.MessageCount(), total)
	seen := map[string]bool{}
	for o := range orgs {
		org := fmt.Sprintf("org-up-%d", o)
		msgs := fake.MessagesFor(org)
		require.Len(t, msgs, int(perOrg[o].Load()), "%s: each committed event once", org)
		for i, m := range msgs {
			require.False(t, seen[m.EventID], "event %s created twice", m.EventID)
			seen[m.EventID] = true
			var p struct{ Seq int }
			require.NoError(t, json.Unmarshal(m.Payload, &p))
			require.Equal(t, i, p.Seq, "%s: message %d out of order", org, i)
		}
	}
	report(t, "rolling upgrade", map[string]any{"committed": total, "previous_release": commit[:12],
		"delivered_before_upgrade": atUpgrade, "migrations_applied": applied})
	e.stop(current)
	e.stop(old)
}

// assertNoError reports err on t from a producer goroutine.
func assertNoError(t *testing.T, err error) bool {
	if err != nil {
		t.Errorf("produce: %v", err)
		return false
	}
	return true
}
