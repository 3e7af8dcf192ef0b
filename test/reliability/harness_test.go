// Package reliability proves the outbox survives what production does to
// it, across process boundaries: `outbox relay` processes (several, killed
// and restarted), producers committing and rolling back transactions, a
// PostgreSQL server of its own (restarted under load), and the Svix fake on
// loopback (outages, rate limits, bad tokens, poison events). Every
// scenario ends with the same audit.
//
// Scenarios run one after another, not in parallel: each drives several
// processes and measures throughput and recovery on a 2-core machine.
package reliability

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/outboxrelay/outbox"
	"github.com/outboxrelay/outbox/internal/pgserver"
	"github.com/outboxrelay/outbox/internal/syncbuf"
	"github.com/outboxrelay/outbox/migrations"
	"github.com/outboxrelay/outbox/outboxtest/svixtest"
)

var (
	// binary is the outbox command under test, built once.
	binary string
	// server is this package's own PostgreSQL, which scenarios may restart.
	server *pgserver.Server
)

func TestMain(m *testing.M) {
	flag.Parse()
	if testing.Short() {
		fmt.Println("reliability: skipped in -short mode (multi-minute suite of real processes)")
		os.Exit(0)
	}
	code, err := run(m)
	if err != nil {
		fmt.Fprintln(os.Stderr, "reliability:", err)
		os.Exit(1)
	}
	os.Exit(code)
}

func run(m *testing.M) (int, error) {
	dir, err := os.MkdirTemp("", "outbox-reliability-")
	if err != nil {
		return 0, err
	}
	defer os.RemoveAll(dir)
	binary = filepath.Join(dir, "outbox")
	build := exec.Command("go", "build", "-o", binary, "../../cmd/outbox")
	if out, err := build.CombinedOutput(); err != nil {
		return 0, fmt.Errorf("build outbox (from the repository's go.work): %w\n%s", err, out)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	// A server of our own, from the local binaries: the database-restart
	// scenario restarts it, which a shared server must never see.
	if server, err = pgserver.StartLocal(ctx, nil); err != nil {
		return 0, fmt.Errorf("this suite needs the local PostgreSQL server binaries (Debian: apt-get install postgresql): %w", err)
	}
	defer server.Stop()
	return m.Run(), nil
}

// env is one scenario's world: a fresh schema, a business table, a Svix
// fake, the relays and producers.
type env struct {
	t      *testing.T
	ctx    context.Context
	schema string
	url    string // server URL; the schema is passed to processes as --schema
	pool   *pgxpool.Pool
	fake   *svixtest.Server
	token  string

	mu           sync.Mutex
	relays       []*relayProc
	rolledBack   map[string]bool
	commitAt     map[string]time.Time
	producerErrs atomic.Int64
}

// newEnv migrates a fresh schema and starts a fake.
func newEnv(t *testing.T, fakeOpts svixtest.Options) *env {
	t.Helper()
	e := newBareEnv(t, fakeOpts)
	_, err := migrations.Up(e.ctx, e.pool, migrations.Options{Schema: e.schema})
	require.NoError(t, err)
	_, err = e.pool.Exec(e.ctx, `CREATE TABLE biz_orders (event_id uuid PRIMARY KEY, organization_id text NOT NULL, created_at timestamptz NOT NULL DEFAULT now())`)
	require.NoError(t, err)
	return e
}

// newBareEnv names a fresh schema, left empty (a scenario migrates it its
// own way), and starts a fake.
func newBareEnv(t *testing.T, fakeOpts svixtest.Options) *env {
	t.Helper()
	ctx := context.Background()
	schema := "rel_" + strings.ReplaceAll(uuid.NewString()[:8], "-", "")
	cfg, err := pgxpool.ParseConfig(server.URL)
	require.NoError(t, err)
	cfg.ConnConfig.RuntimeParams["search_path"] = schema
	cfg.MaxConns = 16
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	require.NoError(t, err)
	t.Cleanup(pool.Close)
	fake := svixtest.NewT(t, fakeOpts)
	e := &env{t: t, ctx: ctx, schema: schema, url: server.URL, pool: pool, fake: fake, token: fake.Token(),
		rolledBack: map[string]bool{}, commitAt: map[string]time.Time{}}
	t.Cleanup(e.killAll)
	return e
}

// relayProc is one `outbox relay` process.
type relayProc struct {
	name   string
	cmd    *exec.Cmd
	stderr *syncbuf.Buffer
	done   chan struct{}
	exit   error
	http   string // base URL of /healthz, /readyz, /debug/vars, if served
}

// relayArgs are the flags every scenario's relays share: short leases and
// backoffs so recovery fits in a test.
func (e *env) relayArgs(extra ...string) []string {
	return append([]string{"relay", "--schema", e.schema, "--channel", e.schema,
		"--poll-interval", "200ms", "--lease", "2s", "--send-timeout", "500ms", "--shutdown-timeout", "2s",
		"--retry-base-delay", "100ms", "--retry-max-delay", "1s", "--log-format", "json"}, extra...)
}

// startRelay starts a relay process that reaches the fake with token.
func (e *env) startRelay(name, token string, extra ...string) *relayProc {
	e.t.Helper()
	return e.startRelayWith(name, token, e.fake.URL(), extra...)
}

// startRelayVia starts a relay process that reaches Svix at svixURL (a
// proxy in front of the fake).
func (e *env) startRelayVia(name, svixURL string, extra ...string) *relayProc {
	e.t.Helper()
	return e.startRelayWith(name, e.token, svixURL, extra...)
}

func (e *env) startRelayWith(name, token, svixURL string, extra ...string) *relayProc {
	e.t.Helper()
	return e.startRelayOn(e.url, name, token, svixURL, extra...)
}

// startRelayOn starts a relay process that reaches PostgreSQL at dbURL (a
// pooler or a proxy in front of the suite's server).
func (e *env) startRelayOn(dbURL, name, token, svixURL string, extra ...string) *relayProc {
	e.t.Helper()
	return e.startRelayBinary(binary, dbURL, name, token, svixURL, extra...)
}

// startRelayBinary starts bin (an outbox command, this tree's or another
// release's) as a relay.
func (e *env) startRelayBinary(bin, dbURL, name, token, svixURL string, extra ...string) *relayProc {
	e.t.Helper()
	cmd := exec.Command(bin, e.relayArgs(append([]string{"--id", name}, extra...)...)...)
	cmd.Env = []string{"DATABASE_URL=" + dbURL, "SVIX_AUTH_TOKEN=" + token, "SVIX_SERVER_URL=" + svixURL, "PATH=" + os.Getenv("PATH")}
	p := &relayProc{name: name, cmd: cmd, stderr: &syncbuf.Buffer{}, done: make(chan struct{})}
	cmd.Stderr = p.stderr
	require.NoError(e.t, cmd.Start())
	go func() { p.exit = cmd.Wait(); close(p.done) }()
	for _, a := range extra {
		if strings.HasPrefix(a, "127.0.0.1:") {
			p.http = "http://" + a
		}
	}
	require.Eventually(e.t, func() bool { return strings.Contains(p.stderr.String(), "relay: starting") || p.exited() },
		20*time.Second, 5*time.Millisecond, "relay %s did not start", name)
	require.False(e.t, p.exited(), "relay %s exited at start: %s", name, p.stderr)
	e.mu.Lock()
	e.relays = append(e.relays, p)
	e.mu.Unlock()
	return p
}

func (p *relayProc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// kill9 kills the process without a chance to clean up.
func (p *relayProc) kill9() {
	_ = p.cmd.Process.Signal(syscall.SIGKILL)
	<-p.done
}

// stop asks the process to stop (SIGTERM) and checks it exited 0.
func (e *env) stop(p *relayProc) {
	e.t.Helper()
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
		require.NoError(e.t, p.exit, "relay %s: %s", p.name, p.stderr)
	case <-time.After(30 * time.Second):
		p.kill9()
		e.t.Fatalf("relay %s did not stop within 30s", p.name)
	}
}

func (e *env) killAll() {
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, p := range e.relays {
		if !p.exited() {
			p.kill9()
		}
	}
}

func (e *env) running() []*relayProc {
	e.mu.Lock()
	defer e.mu.Unlock()
	var out []*relayProc
	for _, p := range e.relays {
		if !p.exited() {
			out = append(out, p)
		}
	}
	return out
}

// logs returns every relay's stderr.
func (e *env) logs() string {
	e.mu.Lock()
	defer e.mu.Unlock()
	var b strings.Builder
	for _, p := range e.relays {
		fmt.Fprintf(&b, "--- %s\n%s", p.name, p.stderr.String())
	}
	return b.String()
}

// producer appends events in transactions until ctx ends or n events were
// attempted (n <= 0: no count limit), one event per transaction with a
// business row, rolling back rollbackRate of them, at most rate per second
// (0: as fast as it can). Errors (a restarting database) are counted and
// retried: the database is the truth of what committed.
type producer struct {
	orgs         int
	rollbackRate float64
	rate         float64
	n            int
	payload      func(i int) any
}

func (e *env) produce(ctx context.Context, workers int, p producer) *sync.WaitGroup {
	var (
		wg   sync.WaitGroup
		next atomic.Int64
	)
	notify, err := outbox.NewNotifySignaler(e.pool, e.schema)
	require.NoError(e.t, err)
	var tick <-chan time.Time
	if p.rate > 0 {
		t := time.NewTicker(time.Duration(float64(time.Second) / p.rate))
		tick = t.C
		go func() { <-ctx.Done(); t.Stop() }()
	}
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				i := int(next.Add(1)) - 1
				if p.n > 0 && i >= p.n {
					return
				}
				if tick != nil {
					select {
					case <-tick:
					case <-ctx.Done():
						return
					}
				}
				e.appendOne(ctx, notify, p, i)
			}
		}()
	}
	return &wg
}

func (e *env) appendOne(ctx context.Context, notify outbox.Signaler, p producer, i int) {
	org := fmt.Sprintf("org_%02d", i%max(1, p.orgs))
	rollback := rand.Float64() < p.rollbackRate
	var payload any = map[string]any{"seq": i, "org": org}
	if p.payload != nil {
		payload = p.payload(i)
	}
	var (
		res      outbox.AppendResult
		commitAt time.Time
	)
	timed := outbox.SignalerFunc(func(ctx context.Context, org string) error {
		commitAt = time.Now()
		return notify.SignalRelay(ctx, org)
	})
	errRollback := errors.New("roll back")
	err := outbox.WithTx(ctx, e.pool, timed, func(tx *outbox.Tx) error {
		var err error
		if res, err = outbox.Append(ctx, tx, outbox.AppendParams{OrganizationID: org, EventType: "order.created", Payload: payload}); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, "INSERT INTO biz_orders (event_id, organization_id) VALUES ($1, $2)", res.EventID, org); err != nil {
			return err
		}
		if rollback {
			return errRollback
		}
		return nil
	})
	e.mu.Lock()
	defer e.mu.Unlock()
	switch {
	case errors.Is(err, errRollback):
		e.rolledBack[res.EventID.String()] = true
	case err != nil:
		e.producerErrs.Add(1)
		if ctx.Err() == nil {
			time.Sleep(20 * time.Millisecond) // the database is restarting
		}
	default:
		e.commitAt[res.EventID.String()] = commitAt
	}
}

// pending counts events in the hot table (-1 if the database is away).
func (e *env) pending() int {
	var n int
	ctx, cancel := context.WithTimeout(e.ctx, 2*time.Second)
	defer cancel()
	if err := e.pool.QueryRow(ctx, "SELECT count(*) FROM outbox_events").Scan(&n); err != nil {
		return -1
	}
	return n
}

// sampleBacklog records the largest backlog seen until stop is called.
func (e *env) sampleBacklog() (stop func() int) {
	var (
		peak atomic.Int64
		done = make(chan struct{})
		wg   sync.WaitGroup
	)
	wg.Add(1)
	go func() {
		defer wg.Done()
		tick := time.NewTicker(100 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-done:
				return
			case <-tick.C:
				if n := int64(e.pending()); n > peak.Load() {
					peak.Store(n)
				}
			}
		}
	}()
	return func() int { close(done); wg.Wait(); return int(peak.Load()) }
}

// auditResult is the outcome of the audit every scenario ends with.
type auditResult struct {
	Committed, RolledBack, Delivered, Duplicates, Lost, RolledBackSent, DeadLettered int
	Conflicts, CreateCalls                                                           int
	Recovery                                                                         time.Duration
	LatencyP50, LatencyP99                                                           time.Duration
}

// audit waits (up to within) until nothing deliverable is pending, then
// checks that each committed event was created in Svix exactly once per
// eventId, no rolled-back event was, and nothing else was. expectDead are
// the events that must have been dead-lettered instead.
func (e *env) audit(within time.Duration, expectDead map[string]bool) auditResult {
	e.t.Helper()
	start := time.Now()
	// A commit the producer gave up on (its context ended mid-COMMIT) may
	// still land on the server: read the committed set again once all is
	// quiet, until it stops changing.
	var committed map[string]bool
	for settled := false; !settled; {
		committed = e.committedIDs()
		want := len(committed) - len(expectDead)
		require.Eventually(e.t, func() bool { return e.fake.MessageCount() >= want && e.pending() == 0 },
			within, 50*time.Millisecond, "audit: %d of %d delivered, %d pending after %s\n%s",
			e.fake.MessageCount(), want, e.pending(), within, tail(e.logs(), 4000))
		settled = len(e.committedIDs()) == len(committed)
	}
	res := auditResult{Committed: len(committed), Recovery: time.Since(start), Conflicts: e.fake.Conflicts(), CreateCalls: e.fake.CreateAttempts()}

	created := map[string][]time.Time{}
	for _, m := range e.fake.Messages() {
		created[m.EventID] = append(created[m.EventID], m.Timestamp)
	}
	var latencies []time.Duration
	e.mu.Lock()
	res.RolledBack = len(e.rolledBack)
	for id := range e.rolledBack {
		res.RolledBackSent += len(created[id])
	}
	for id := range committed {
		n := len(created[id])
		switch {
		case expectDead[id]:
			require.Zero(e.t, n, "poison event %s was created", id)
			continue
		case n == 0:
			res.Lost++
		case n > 1:
			res.Duplicates += n - 1
		}
		if n > 0 {
			res.Delivered++
			if at, ok := e.commitAt[id]; ok {
				latencies = append(latencies, created[id][0].Sub(at))
			}
		}
	}
	e.mu.Unlock()
	for id := range created {
		if !committed[id] {
			var inBiz, inEvents, inDeliveries bool
			_ = e.pool.QueryRow(e.ctx, "SELECT EXISTS(SELECT 1 FROM biz_orders WHERE event_id = $1), EXISTS(SELECT 1 FROM outbox_events WHERE event_id = $1), EXISTS(SELECT 1 FROM outbox_deliveries WHERE event_id = $1)", id).Scan(&inBiz, &inEvents, &inDeliveries)
			e.mu.Lock()
			_, heardCommit := e.commitAt[id]
			e.mu.Unlock()
			e.t.Fatalf("a message was created for event %s, which never committed (now in biz: %v, events: %v, deliveries: %v; producer heard commit: %v; biz rows at audit start %d)",
				id, inBiz, inEvents, inDeliveries, heardCommit, len(committed))
		}
	}
	require.NoError(e.t, e.pool.QueryRow(e.ctx, "SELECT count(*) FROM outbox_dead_letters").Scan(&res.DeadLettered))
	require.Zero(e.t, res.Lost, "committed events lost")
	require.Zero(e.t, res.Duplicates, "events created twice")
	require.Zero(e.t, res.RolledBackSent, "rolled-back events created")
	require.Equal(e.t, len(expectDead), res.DeadLettered, "dead letters")
	if len(latencies) > 0 {
		sort.Slice(latencies, func(i, j int) bool { return latencies[i] < latencies[j] })
		res.LatencyP50 = latencies[len(latencies)/2]
		res.LatencyP99 = latencies[(len(latencies)-1)*99/100]
	}
	return res
}

// committedIDs reads what committed from the database itself: a business
// row exists if and only if its transaction committed, whatever the
// producer heard back (a commit cut by a server restart may have landed).
func (e *env) committedIDs() map[string]bool {
	e.t.Helper()
	rows, err := e.pool.Query(e.ctx, "SELECT event_id::text FROM biz_orders")
	require.NoError(e.t, err)
	ids, err := pgx.CollectRows(rows, pgx.RowTo[string])
	require.NoError(e.t, err)
	out := make(map[string]bool, len(ids))
	for _, id := range ids {
		out[id] = true
	}
	return out
}

// report logs a scenario's figures as one JSON line (collected into
// docs/RELIABILITY.md) and writes it to $RELIABILITY_REPORT if set.
func report(t *testing.T, scenario string, figures map[string]any) {
	t.Helper()
	figures["scenario"] = scenario
	b, _ := json.Marshal(figures)
	t.Logf("REPORT %s", b)
	if path := os.Getenv("RELIABILITY_REPORT"); path != "" {
		f, err := os.OpenFile(path, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
		if err == nil {
			_, _ = f.Write(append(b, '\n'))
			_ = f.Close()
		}
	}
}

func (r auditResult) figures() map[string]any {
	return map[string]any{
		"committed": r.Committed, "rolled_back": r.RolledBack, "delivered": r.Delivered,
		"duplicates": r.Duplicates, "lost": r.Lost, "rolled_back_sent": r.RolledBackSent,
		"dead_lettered": r.DeadLettered, "svix_conflicts_409": r.Conflicts, "svix_create_calls": r.CreateCalls,
		"recovery_ms":    r.Recovery.Milliseconds(),
		"latency_p50_ms": float64(r.LatencyP50.Microseconds()) / 1000, "latency_p99_ms": float64(r.LatencyP99.Microseconds()) / 1000,
	}
}

func tail(s string, n int) string {
	if len(s) > n {
		return "..." + s[len(s)-n:]
	}
	return s
}

// getJSON fetches a JSON document (relay /debug/vars).
func getJSON(url string, v any) error {
	resp, err := http.Get(url)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	return json.NewDecoder(resp.Body).Decode(v)
}
