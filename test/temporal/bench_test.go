package temporale2e

import (
	"bufio"
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/client"
	sdklog "go.temporal.io/sdk/log"
	"go.temporal.io/sdk/worker"
	"go.temporal.io/server/temporaltest"

	"github.com/outboxrelay/outbox"
	"github.com/outboxrelay/outbox/internal/pgtest"
	"github.com/outboxrelay/outbox/outboxtemporal"
	"github.com/outboxrelay/outbox/outboxtest/svixtest"
	"github.com/outboxrelay/outbox/relay"
)

// BenchmarkDelivery delivers batches of events for many organizations,
// appended in one transaction per organization and signalled after it:
//
//   - mode=relay: relay.Run woken by NOTIFY, the baseline;
//   - mode=temporal: the Temporal workflows, the server in this process;
//   - mode=temporal_process: the same, the server in a process of its own
//     (cmd/temporalserver, built on first use; OUTBOX_TEMPORAL_SERVER names
//     a binary built already), so this process's CPU is the adapter's, the
//     worker's, the relay's, the fake's and the producers';
//   - mode=temporal_process_local: the same with Options.LocalDrain, each
//     drain a local activity;
//   - mode=temporal_process_linger, temporal_process_local_linger: the
//     last two with Options.Linger of 5 s as well, so an organization woken
//     again within 5 s is a signal to its running workflow, not a new one.
//
// Every op wakes the same organizations, once each, a little more often
// than every 2 s. The -fresh variants wake new organizations in each op,
// so no lingering run is ever woken again: they measure what Linger costs
// when it cannot help (its timers' firing counted after the last op).
//
// events/s is committed events over the time until the last is in Svix;
// cpu_ms/1000ev is this process's CPU (user and system) per thousand
// events, server_cpu_ms/1000ev the server process's.
//
//	cd test/temporal && GOWORK=off go test -run '^$' -bench Delivery -benchtime 5x .
func BenchmarkDelivery(b *testing.B) {
	const orgs, perOrg = 50, 40
	for _, bc := range []struct {
		mode  string
		fresh bool
	}{
		{mode: "relay"}, {mode: "temporal"}, {mode: "temporal_process"}, {mode: "temporal_process_local"},
		{mode: "temporal_process_linger"}, {mode: "temporal_process_local_linger"},
		{mode: "temporal_process_local", fresh: true}, {mode: "temporal_process_local_linger", fresh: true},
	} {
		mode, name := bc.mode, fmt.Sprintf("mode=%s/orgs=%d", bc.mode, orgs)
		if bc.fresh {
			name += "-fresh"
		}
		b.Run(name, func(b *testing.B) {
			db := pgtest.New(b)
			fake := svixtest.New(svixtest.Options{})
			b.Cleanup(fake.Close)
			quiet := slog.New(slog.DiscardHandler)
			cfg := relay.Config{SvixToken: fake.Token(), SvixServerURL: fake.URL(), Logger: quiet, Channel: "outbox_" + db.Schema}
			var (
				signaler  outbox.Signaler
				serverCPU func() time.Duration // the server process's CPU so far, or nil
				c         client.Client        // the Temporal client, or nil
			)
			ctx, cancel := context.WithCancel(context.Background())
			switch mode {
			case "temporal", "temporal_process", "temporal_process_local", "temporal_process_linger", "temporal_process_local_linger":
				if mode == "temporal" {
					ts := temporaltest.NewServer()
					b.Cleanup(ts.Stop)
					c = ts.GetDefaultClient()
				} else {
					c, serverCPU = temporalProcess(b, quiet)
				}
				s, err := outboxtemporal.NewSignaler(outboxtemporal.SignalerConfig{Client: c, Logger: quiet})
				require.NoError(b, err)
				b.Cleanup(func() { _ = s.Close() })
				signaler, cfg.Delegate = s, s
				r, err := relay.New(db.Pool, cfg)
				require.NoError(b, err)
				w := worker.New(c, outboxtemporal.DefaultTaskQueue, worker.Options{})
				opts := outboxtemporal.Options{LocalDrain: strings.HasPrefix(mode, "temporal_process_local")}
				if strings.HasSuffix(mode, "_linger") {
					opts.Linger = linger
				}
				require.NoError(b, outboxtemporal.Register(w, r, opts))
				require.NoError(b, w.Start())
				b.Cleanup(w.Stop)
				go func() { _ = r.Run(ctx) }()
			default:
				n, err := outbox.NewNotifySignaler(db.Pool, cfg.Channel)
				require.NoError(b, err)
				signaler = n
				r, err := relay.New(db.Pool, cfg)
				require.NoError(b, err)
				go func() { _ = r.Run(ctx) }()
			}
			b.Cleanup(cancel)
			time.Sleep(500 * time.Millisecond) // LISTEN up, first sweep done

			b.ResetTimer()
			var elapsed, cpu, srvCPU time.Duration
			for op := range b.N {
				want := fake.MessageCount() + orgs*perOrg
				start, cpuStart := time.Now(), processCPU(b)
				var srvStart time.Duration
				if serverCPU != nil {
					srvStart = serverCPU()
				}
				for o := range orgs {
					err := outbox.WithTx(ctx, db.Pool, signaler, func(tx *outbox.Tx) error {
						params := make([]outbox.AppendParams, perOrg)
						for i := range params {
							params[i] = outbox.AppendParams{OrganizationID: benchOrg(o, op, bc.fresh), EventType: "invoice.paid", Payload: map[string]any{"i": i}}
						}
						_, err := outbox.AppendBatch(ctx, tx, params)
						return err
					})
					require.NoError(b, err)
				}
				waitCtx, stop := context.WithTimeout(ctx, 2*time.Minute)
				require.NoError(b, fake.WaitForMessages(waitCtx, want))
				stop()
				elapsed += time.Since(start)
				cpu += processCPU(b) - cpuStart
				if serverCPU != nil {
					srvCPU += serverCPU() - srvStart
				}
			}
			if serverCPU != nil {
				// The lingering runs end a Linger after their last drain:
				// count their timers' CPU too, not their time. The last
				// op's runs are the last to close.
				cpuStart, srvStart := processCPU(b), serverCPU()
				waitWorkflowsClosed(b, c, b.N-1, orgs, bc.fresh)
				cpu += processCPU(b) - cpuStart
				srvCPU += serverCPU() - srvStart
			}
			events := float64(b.N * orgs * perOrg)
			b.ReportMetric(events/elapsed.Seconds(), "events/s")
			b.ReportMetric(float64(cpu.Milliseconds())/events*1000, "cpu_ms/1000ev")
			if serverCPU != nil {
				b.ReportMetric(float64(srvCPU.Milliseconds())/events*1000, "server_cpu_ms/1000ev")
			}
		})
	}
}

// linger is the benchmark's Options.Linger.
const linger = 5 * time.Second

// benchOrg is organization o of op: the same in every op, or one of its
// own (fresh).
func benchOrg(o, op int, fresh bool) string {
	if fresh {
		return fmt.Sprintf("org-%03d-%d", o, op)
	}
	return fmt.Sprintf("org-%03d", o)
}

// waitWorkflowsClosed waits until the workflows of op's organizations have
// all closed.
func waitWorkflowsClosed(b *testing.B, c client.Client, op, orgs int, fresh bool) {
	b.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for o := range orgs {
		for {
			d, err := c.DescribeWorkflowExecution(ctx, outboxtemporal.WorkflowID("", benchOrg(o, op, fresh)), "")
			require.NoError(b, err)
			if d.GetWorkflowExecutionInfo().GetStatus() != enumspb.WORKFLOW_EXECUTION_STATUS_RUNNING {
				break
			}
			select {
			case <-ctx.Done():
				b.Fatalf("the workflow of %s is still running after a minute", benchOrg(o, op, fresh))
			case <-time.After(100 * time.Millisecond):
			}
		}
	}
}

// processCPU is this process's CPU time so far, user and system.
func processCPU(b *testing.B) time.Duration {
	var ru syscall.Rusage
	require.NoError(b, syscall.Getrusage(syscall.RUSAGE_SELF, &ru))
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// temporalProcess starts cmd/temporalserver and returns a client of its
// namespace, and a function reading the server process's CPU so far.
func temporalProcess(b *testing.B, logger *slog.Logger) (client.Client, func() time.Duration) {
	b.Helper()
	bin := os.Getenv("OUTBOX_TEMPORAL_SERVER")
	if bin == "" {
		bin = filepath.Join(b.TempDir(), "temporalserver")
		build := exec.Command("go", "build", "-o", bin, "./cmd/temporalserver")
		build.Env = append(os.Environ(), "GOWORK=off")
		out, err := build.CombinedOutput()
		require.NoError(b, err, "build cmd/temporalserver: %s", out)
	}
	cmd := exec.Command(bin)
	stdin, err := cmd.StdinPipe() // closed with this process: the server ends
	require.NoError(b, err)
	stdout, err := cmd.StdoutPipe()
	require.NoError(b, err)
	cmd.Stderr = os.Stderr
	require.NoError(b, cmd.Start())
	b.Cleanup(func() {
		_ = stdin.Close()
		_ = cmd.Process.Signal(syscall.SIGTERM)
		_ = cmd.Wait()
	})
	line, err := bufio.NewReader(stdout).ReadString('\n')
	require.NoError(b, err, "the server's address line")
	addr, namespace, ok := strings.Cut(strings.TrimSpace(line), " ")
	require.True(b, ok, "address line %q", line)
	c, err := client.Dial(client.Options{HostPort: addr, Namespace: namespace, Logger: sdklog.NewStructuredLogger(logger)})
	require.NoError(b, err)
	b.Cleanup(c.Close)
	pid := cmd.Process.Pid
	return c, func() time.Duration { return procCPU(b, pid) }
}

// procCPU reads a process's CPU time so far (user and system) from
// /proc/PID/stat, in clock ticks of 10 ms (USER_HZ on Linux).
func procCPU(b *testing.B, pid int) time.Duration {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	require.NoError(b, err)
	// The command name, field 2, is parenthesised and may hold spaces:
	// the fields counted from after it, utime is 14th and stime 15th.
	fields := strings.Fields(string(raw[strings.LastIndexByte(string(raw), ')')+2:]))
	utime, err := strconv.ParseInt(fields[11], 10, 64)
	require.NoError(b, err)
	stime, err := strconv.ParseInt(fields[12], 10, 64)
	require.NoError(b, err)
	return time.Duration(utime+stime) * 10 * time.Millisecond
}
