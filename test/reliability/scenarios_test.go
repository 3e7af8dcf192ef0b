package reliability

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/outboxrelay/outbox/internal/testnet"
	"github.com/outboxrelay/outbox/outboxtest/svixtest"
)

// 1. Relays killed with SIGKILL at random moments while producers append,
// including between a Svix call and its settlement.
func TestRelayCrash(t *testing.T) {
	e := newEnv(t, svixtest.Options{Latency: time.Millisecond, DisableRequestLog: true})
	for i := range 3 {
		e.startRelay(fmt.Sprintf("relay-%d", i), e.token)
	}
	ctx, stopProducing := context.WithCancel(e.ctx)
	producers := e.produce(ctx, 4, producer{orgs: 12, rollbackRate: 0.1, rate: 400})
	peak := e.sampleBacklog()

	// Twice, kill every relay the moment one of them calls Svix: the
	// message is stored, the response never arrives, nobody settles.
	var midCallKills atomic.Int32
	e.fake.InjectFault(svixtest.Fault{Kind: svixtest.FaultLostResponse, Match: func(*svixtest.Request) bool {
		if midCallKills.Load() >= 2 || rand.IntN(200) != 0 {
			return false
		}
		midCallKills.Add(1)
		for _, p := range e.running() {
			p.kill9()
		}
		return true
	}})
	kills := 0
	deadline := time.Now().Add(8 * time.Second)
	for n := 0; time.Now().Before(deadline); n++ {
		time.Sleep(time.Duration(300+rand.IntN(700)) * time.Millisecond)
		if run := e.running(); len(run) > 0 {
			run[rand.IntN(len(run))].kill9()
			kills++
		}
		for len(e.running()) < 3 {
			e.startRelay(fmt.Sprintf("relay-r%d-%d", n, len(e.running())), e.token)
		}
	}
	stopProducing()
	producers.Wait()
	res := e.audit(60*time.Second, nil)
	fig := res.figures()
	fig["random_kills"], fig["kills_between_call_and_settlement"], fig["max_backlog"] = kills, midCallKills.Load(), peak()
	report(t, "relay crash", fig)
	require.Positive(t, kills)
}

// 2. PostgreSQL restarted (fast, then immediate) under load: producers see
// errors and nothing half-written; relays and their LISTEN connections
// come back and finish the backlog by themselves.
func TestDatabaseRestart(t *testing.T) {
	e := newEnv(t, svixtest.Options{Latency: time.Millisecond, DisableRequestLog: true})
	for i := range 2 {
		e.startRelay(fmt.Sprintf("relay-%d", i), e.token)
	}
	ctx, stopProducing := context.WithCancel(e.ctx)
	producers := e.produce(ctx, 4, producer{orgs: 10, rollbackRate: 0.1, rate: 300})
	peak := e.sampleBacklog()

	time.Sleep(2 * time.Second)
	restartStart := time.Now()
	require.NoError(t, server.Restart(e.ctx, "fast"))
	fastDown := time.Since(restartStart)
	time.Sleep(2 * time.Second)
	restartStart = time.Now()
	require.NoError(t, server.Restart(e.ctx, "immediate"))
	immediateDown := time.Since(restartStart)
	time.Sleep(2 * time.Second)
	stopProducing()
	producers.Wait()

	// Nothing half-written: every business row has its event, settled or
	// pending, and no event exists without its business row.
	var orphans int
	require.NoError(t, e.pool.QueryRow(e.ctx, `SELECT
		(SELECT count(*) FROM outbox_events e WHERE NOT EXISTS (SELECT 1 FROM biz_orders b WHERE b.event_id = e.event_id)) +
		(SELECT count(*) FROM outbox_deliveries d WHERE NOT EXISTS (SELECT 1 FROM biz_orders b WHERE b.event_id = d.event_id))`).Scan(&orphans))
	require.Zero(t, orphans, "events without their business row")

	res := e.audit(60*time.Second, nil)
	require.Positive(t, e.producerErrs.Load(), "producers should have seen the restarts")
	for _, p := range e.running() {
		require.Contains(t, p.stderr.String(), "reconnecting", "relay %s's LISTEN connection should have reconnected", p.name)
	}
	fig := res.figures()
	fig["producer_errors"], fig["max_backlog"] = e.producerErrs.Load(), peak()
	fig["restart_fast_ms"], fig["restart_immediate_ms"] = fastDown.Milliseconds(), immediateDown.Milliseconds()
	report(t, "database restart", fig)
}

// 3. Svix unreachable (503s, then connections refused, then hanging calls)
// while the backlog grows; then it recovers and the backlog drains with
// nothing dead-lettered, and retries kept to their backoff.
func TestSvixOutage(t *testing.T) {
	e := newEnv(t, svixtest.Options{DisableRequestLog: true})
	proxy := testnet.NewProxy(t, e.fake.URL())
	relayURL := proxy.URL()
	for i := range 2 {
		e.startRelayVia(fmt.Sprintf("relay-%d", i), relayURL)
	}
	const orgs = 10
	ctx, stopProducing := context.WithCancel(e.ctx)
	producers := e.produce(ctx, 2, producer{orgs: orgs, rate: 100})
	peak := e.sampleBacklog()
	time.Sleep(time.Second)

	phase := func(name string, d time.Duration, down func() func()) map[string]any {
		before := e.fake.CreateAttempts()
		up := down()
		time.Sleep(d)
		up()
		calls := e.fake.CreateAttempts() - before
		// Each organization's lane retries only its head event, with
		// backoff (100 ms doubling to 1 s, full jitter): a handful of calls
		// per lane per second, where a hot loop would make thousands.
		require.LessOrEqual(t, calls, orgs*int(d/time.Second)*6+orgs*6, "%s: %d calls in %s: retries ignore their backoff", name, calls, d)
		return map[string]any{"phase": name, "seconds": d.Seconds(), "create_calls": calls}
	}
	var phases []map[string]any
	phases = append(phases, phase("503 on every call", 3*time.Second, func() func() {
		return e.fake.InjectFault(svixtest.Fault{Kind: svixtest.FaultStatus, Status: 503})
	}))
	phases = append(phases, phase("connection refused", 3*time.Second, func() func() {
		proxy.Down()
		return proxy.Up
	}))
	phases = append(phases, phase("calls hang past the deadline", 3*time.Second, func() func() {
		return e.fake.InjectFault(svixtest.Fault{Kind: svixtest.FaultHang})
	}))
	recovered := time.Now()
	stopProducing()
	producers.Wait()
	res := e.audit(60*time.Second, nil)
	maxBacklog := peak()
	require.Greater(t, maxBacklog, 100, "the backlog should have grown during the outage")
	fig := res.figures()
	fig["max_backlog"], fig["phases"], fig["drain_after_recovery_ms"] = maxBacklog, phases, time.Since(recovered).Milliseconds()
	report(t, "svix outage", fig)
}

// 4. Svix answers 429, with and without Retry-After; and a relay with a
// rate limit stays under it.
func TestRateLimiting(t *testing.T) {
	e := newEnv(t, svixtest.Options{DisableRequestLog: true})
	e.startRelay("relay-0", e.token)
	e.startRelay("relay-1", e.token)
	ctx, stopProducing := context.WithCancel(e.ctx)
	producers := e.produce(ctx, 2, producer{orgs: 8, rate: 200})

	e.fake.SetFaultRate(0.3, svixtest.Fault{Kind: svixtest.FaultRateLimit, RetryAfter: time.Second})
	time.Sleep(3 * time.Second)
	e.fake.SetFaultRate(0.3, svixtest.Fault{Kind: svixtest.FaultRateLimit})
	time.Sleep(3 * time.Second)
	e.fake.SetFaultRate(0, svixtest.Fault{})
	stopProducing()
	producers.Wait()
	res := e.audit(60*time.Second, nil)
	fig := res.figures()
	report(t, "rate limiting (429)", fig)

	// A relay told to stay under 50 messages/s does, from a standing backlog.
	for _, p := range e.running() {
		e.stop(p)
	}
	e2 := newEnv(t, svixtest.Options{DisableRequestLog: true})
	e2.produce(e2.ctx, 4, producer{orgs: 8, n: 600}).Wait()
	e2.startRelay("limited", e2.token, "--rate-limit", "50")
	time.Sleep(time.Second)
	from, fromAt := e2.fake.MessageCount(), time.Now()
	time.Sleep(4 * time.Second)
	rate := float64(e2.fake.MessageCount()-from) / time.Since(fromAt).Seconds()
	require.LessOrEqual(t, rate, 50*1.15, "created %.1f/s with --rate-limit 50", rate)
	require.Greater(t, rate, 50*0.7, "the limit should not starve delivery")
	res2 := e2.audit(60*time.Second, nil)
	fig2 := res2.figures()
	fig2["measured_rate_per_s"] = rate
	report(t, "rate limit 50/s", fig2)
}

// 5. A bad token: 401 for a while, nothing dead-lettered, loud logs; a
// restart with the right token delivers everything.
func TestBadToken(t *testing.T) {
	e := newEnv(t, svixtest.Options{DisableRequestLog: true})
	bad := []*relayProc{e.startRelay("relay-bad-0", "sk_revoked"), e.startRelay("relay-bad-1", "sk_revoked")}
	e.produce(e.ctx, 2, producer{orgs: 5, n: 200}).Wait()
	time.Sleep(3 * time.Second)

	require.Zero(t, e.fake.MessageCount())
	var dead int
	require.NoError(t, e.pool.QueryRow(e.ctx, "SELECT count(*) FROM outbox_dead_letters").Scan(&dead))
	require.Zero(t, dead, "a bad token must not dead-letter events")
	loud := 0
	for _, p := range bad {
		if strings.Contains(p.stderr.String(), `"level":"ERROR","msg":"relay: Svix refused the API token`) {
			loud++
		}
		require.NotContains(t, p.stderr.String(), "sk_revoked", "the token must never be logged")
		e.stop(p)
	}
	require.Positive(t, loud, "the refusal must be logged at error level")
	fixedAt := time.Now()
	e.startRelay("relay-fixed", e.token)
	res := e.audit(30*time.Second, nil)
	fig := res.figures()
	fig["recovery_after_fix_ms"] = time.Since(fixedAt).Milliseconds()
	report(t, "bad token", fig)
}

// 6. Poison events (Svix answers 422, or 413 for an oversized payload) are
// dead-lettered with the reason while the rest of their lane flows.
func TestPoisonEvents(t *testing.T) {
	e := newEnv(t, svixtest.Options{MaxPayloadBytes: 2048})
	e.fake.InjectFault(svixtest.Fault{Kind: svixtest.FaultStatus, Status: 422, Match: func(r *svixtest.Request) bool {
		return strings.Contains(string(r.Body), `"poison":true`)
	}})
	e.produce(e.ctx, 2, producer{orgs: 4, n: 400, payload: func(i int) any {
		switch i % 25 {
		case 7:
			return map[string]any{"seq": i, "poison": true}
		case 19:
			return map[string]any{"seq": i, "blob": strings.Repeat("x", 4096)} // over the fake's 2 KiB limit: 413
		}
		return map[string]any{"seq": i}
	}}).Wait()

	poison := map[string]bool{}
	rows, err := e.pool.Query(e.ctx, "SELECT event_id::text FROM outbox_events WHERE payload ? 'poison' OR payload ? 'blob'")
	require.NoError(t, err)
	for rows.Next() {
		var id string
		require.NoError(t, rows.Scan(&id))
		poison[id] = true
	}
	require.NoError(t, rows.Err())
	require.Len(t, poison, 32)
	e.startRelay("relay-0", e.token)

	res := e.audit(30*time.Second, poison)
	var by422, by413 int
	require.NoError(t, e.pool.QueryRow(e.ctx, `SELECT count(*) FILTER (WHERE status_code = 422 AND payload ? 'poison'),
		count(*) FILTER (WHERE status_code = 413 AND payload ? 'blob') FROM outbox_dead_letters WHERE last_error <> ''`).Scan(&by422, &by413))
	require.Equal(t, 16, by422)
	require.Equal(t, 16, by413)
	for _, org := range []string{"org_00", "org_01", "org_02", "org_03"} {
		msgs := e.fake.MessagesFor(org)
		for i := 1; i < len(msgs); i++ {
			require.Less(t, msgs[i-1].Seq, msgs[i].Seq)
		}
	}
	fig := res.figures()
	fig["dead_422"], fig["dead_413"] = by422, by413
	report(t, "poison events", fig)
}

// 7. 1, 2 and 4 relay processes share one database: nothing twice, nothing
// lost, and throughput adds up. Each relay has 8 calls in flight against a
// Svix answering in 20 ms, so one relay tops out near 400 events/s.
func TestScaleOut(t *testing.T) {
	const events = 2400
	for _, relays := range []int{1, 2, 4} {
		t.Run(fmt.Sprintf("relays=%d", relays), func(t *testing.T) {
			e := newEnv(t, svixtest.Options{Latency: 20 * time.Millisecond, DisableRequestLog: true})
			e.produce(e.ctx, 4, producer{orgs: 48, n: events}).Wait()
			start := time.Now()
			for i := range relays {
				e.startRelay(fmt.Sprintf("relay-%d", i), e.token, "--concurrency", "8")
			}
			res := e.audit(2*time.Minute, nil)
			elapsed := time.Since(start)
			fig := res.figures()
			fig["relays"], fig["events_per_s"] = relays, float64(res.Delivered)/elapsed.Seconds()
			report(t, "scale-out", fig)
			require.Zero(t, res.Conflicts, "two relays sent the same event")
		})
	}
}
