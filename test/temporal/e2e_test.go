package temporale2e

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/worker"

	"github.com/outboxrelay/outbox"
	"github.com/outboxrelay/outbox/internal/syncbuf"
	"github.com/outboxrelay/outbox/outboxtemporal"
	"github.com/outboxrelay/outbox/relay"
)

// produce commits events from several producers at once, one to three per
// transaction, each followed by the Temporal signal, except every
// lostEvery-th commit, whose signal is "lost" (the process died after its
// commit): the relay's sweep must start that workflow.
//
// Each organization has one producer (organization i is producer
// i % producers'), so its events commit one after the other: the relay
// promises causal order (an event committed before another is appended is
// created first), and ids, assigned at insert, follow commit order only
// when the transactions of an organization do not overlap.
func produce(t *testing.T, b *bundle, s outbox.Signaler, orgs []string, producers, commits, lostEvery int) *committed {
	t.Helper()
	c := &committed{}
	var wg sync.WaitGroup
	for p := range producers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var mine []string
			for i, org := range orgs {
				if i%producers == p {
					mine = append(mine, org)
				}
			}
			if len(mine) == 0 {
				return
			}
			for i := range commits {
				org := mine[rand.IntN(len(mine))]
				signaler := s
				if lostEvery > 0 && (p*commits+i)%lostEvery == 0 {
					signaler = outbox.NopSignaler
				}
				var rs []outbox.AppendResult
				err := outbox.WithTx(b.ctx, b.db.Pool, signaler, func(tx *outbox.Tx) error {
					rs = rs[:0]
					for k := range 1 + rand.IntN(3) {
						r, err := outbox.Append(b.ctx, tx, outbox.AppendParams{
							OrganizationID: org, EventType: "invoice.paid",
							Payload: map[string]any{"producer": p, "commit": i, "k": k},
						})
						if err != nil {
							return err
						}
						rs = append(rs, r)
					}
					return nil
				})
				if err != nil {
					t.Errorf("producer %d commit %d: %v", p, i, err)
					return
				}
				c.add(rs...)
			}
		}()
	}
	wg.Wait()
	return c
}

func orgNames(n int) []string {
	orgs := make([]string, n)
	for i := range orgs {
		orgs[i] = fmt.Sprintf("org-%02d", i)
	}
	return orgs
}

// TestWorkflowsDeliverEveryCommittedEventOnce: producers commit and signal
// through the library's Signaler, a worker built with Register runs the
// workflows, and the relay in Delegate mode rescues the commits whose
// signal was lost.
func TestWorkflowsDeliverEveryCommittedEventOnce(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		opts outboxtemporal.Options
	}{
		{"activities", outboxtemporal.Options{DrainBudget: 2 * time.Second}},
		{"LocalDrain", outboxtemporal.Options{DrainBudget: 2 * time.Second, LocalDrain: true}},
		{"LocalDrain+Linger", outboxtemporal.Options{DrainBudget: 2 * time.Second, LocalDrain: true, Linger: time.Second}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			deliverEveryCommittedEventOnce(t, tc.opts)
		})
	}
}

func deliverEveryCommittedEventOnce(t *testing.T, opts outboxtemporal.Options) {
	b := setup(t)
	b.fake.SetLatency(2 * time.Millisecond)
	signaler := b.newSignaler(t)
	r, err := relay.New(b.db.Pool, relay.Config{
		SvixToken: b.fake.Token(), SvixServerURL: b.fake.URL(), Logger: b.logger,
		Delegate: signaler, PollInterval: 200 * time.Millisecond,
	})
	require.NoError(t, err)
	w := worker.New(b.client, b.queue, worker.Options{})
	require.NoError(t, outboxtemporal.Register(w, r, opts))
	require.NoError(t, w.Start())
	t.Cleanup(w.Stop)
	ctx, cancel := context.WithCancel(b.ctx)
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	t.Cleanup(func() { cancel(); require.NoError(t, <-done) })

	orgs := orgNames(12)
	c := produce(t, b, signaler, orgs, 4, 40, 10)
	b.waitMessages(t, c.total(), 60*time.Second)
	b.requireDeliveredOnceInOrder(t, c)
	b.waitWorkflowsClosed(t, c.orgs(), 30*time.Second)
	b.requireDrainedAs(t, c.orgs(), opts)
	require.Positive(t, r.Stats().HandedOff, "the sweep handed over the organizations whose signal was lost")
	require.Equal(t, uint64(c.total()), r.Stats().Delivered, "the workflows' drains, through this relay, delivered them all")
	t.Logf("%d events of %d organizations delivered once, in order; %d hand-offs by the sweep", c.total(), len(c.orgs()), r.Stats().HandedOff)
}

// workerProcess is one `outbox relay --temporal` process.
type workerProcess struct {
	cmd    *exec.Cmd
	stderr *syncbuf.Buffer
}

func (b *bundle) startWorker(t *testing.T, localDrain bool) *workerProcess {
	t.Helper()
	args := []string{"relay", "--temporal",
		"--temporal-address", b.ts.GetFrontendHostPort(), "--temporal-namespace", b.ts.GetDefaultNamespace(),
		"--temporal-task-queue", b.queue, "--temporal-drain-budget", "2s", "--temporal-heartbeat-timeout", "2s",
		"--poll-interval", "200ms", "--log-level", "info"}
	if localDrain {
		args = append(args, "--temporal-local-drain")
	}
	cmd := exec.Command(outboxBinary(t), args...)
	cmd.Env = []string{"DATABASE_URL=" + b.db.URL, "SVIX_AUTH_TOKEN=" + b.fake.Token(), "SVIX_SERVER_URL=" + b.fake.URL(), "PATH=/usr/bin:/bin"}
	p := &workerProcess{cmd: cmd, stderr: &syncbuf.Buffer{}}
	cmd.Stderr = p.stderr
	require.NoError(t, cmd.Start())
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	require.Eventually(t, func() bool { return strings.Contains(p.stderr.String(), "relay: starting") }, 30*time.Second, 10*time.Millisecond,
		"worker did not start: %s", p.stderr)
	return p
}

// TestWorkerKilledMidDrain: `outbox relay --temporal` is killed (SIGKILL)
// while its drains are sending; a new process takes over, and every event
// is still created once, in order. Nothing signals: the delegating sweep
// starts every workflow.
func TestWorkerKilledMidDrain(t *testing.T) {
	t.Parallel()
	for _, local := range []bool{false, true} {
		t.Run(fmt.Sprintf("LocalDrain=%t", local), func(t *testing.T) {
			t.Parallel()
			workerKilledMidDrain(t, local)
		})
	}
}

// workerKilledMidDrain: with local drains, the killed worker's drains are
// retried once their workflow tasks time out (10 s), not by a heartbeat
// timeout.
func workerKilledMidDrain(t *testing.T, local bool) {
	b := setup(t)
	b.fake.SetLatency(15 * time.Millisecond) // drains outlast the kill
	orgs := orgNames(4)
	c := produce(t, b, outbox.NopSignaler, orgs, 2, 60, 0)

	first := b.startWorker(t, local)
	b.waitMessages(t, c.total()/5, 60*time.Second)
	require.NoError(t, first.cmd.Process.Signal(syscall.SIGKILL))
	_ = first.cmd.Wait()
	killedAt := b.fake.MessageCount()
	require.Less(t, killedAt, c.total(), "the kill must come mid-drain")

	second := b.startWorker(t, local)
	b.waitMessages(t, c.total(), 90*time.Second)
	b.requireDeliveredOnceInOrder(t, c)
	b.waitWorkflowsClosed(t, c.orgs(), 30*time.Second)
	b.requireDrainedAs(t, c.orgs(), outboxtemporal.Options{LocalDrain: local})
	require.NoError(t, second.cmd.Process.Signal(syscall.SIGTERM))
	require.NoError(t, second.cmd.Wait(), second.stderr.String())
	require.NotContains(t, second.stderr.String(), "level=ERROR", "the second worker ran cleanly")
	t.Logf("killed after %d of %d messages; %d confirmed by 409 (sent before the kill, settled after)",
		killedAt, c.total(), b.fake.Conflicts())
}
