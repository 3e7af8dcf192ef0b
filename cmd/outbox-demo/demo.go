package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	mathrand "math/rand/v2"
	"os"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/outboxrelay/outbox"
	"github.com/outboxrelay/outbox/internal/pgcontainer"
	"github.com/outboxrelay/outbox/internal/pgserver"
	"github.com/outboxrelay/outbox/internal/sqlname"
	"github.com/outboxrelay/outbox/migrations"
	"github.com/outboxrelay/outbox/outboxtest/svixtest"
	"github.com/outboxrelay/outbox/relay"
)

// demoConfig holds the demo's flags.
type demoConfig struct {
	databaseURL  string
	events       int
	orgs         int
	handlers     int
	rollbackRate float64
	svixLatency  time.Duration
	faultRate    float64
	timeout      time.Duration
	keep         bool
	realSvix     bool
}

// parseFlags reads the demo's flags, with errors that say what is wrong.
func parseFlags(stdout io.Writer, args []string) (demoConfig, error) {
	var c demoConfig
	fs := flag.NewFlagSet("outbox-demo", flag.ContinueOnError)
	fs.SetOutput(io.Discard) // errors are reported once, by run
	fs.Usage = func() {}
	fs.StringVar(&c.databaseURL, "database-url", "", "PostgreSQL URL (default $DATABASE_URL, else one is started)")
	fs.IntVar(&c.events, "events", 2000, "events the handlers try to commit")
	fs.IntVar(&c.orgs, "orgs", 20, "organizations the events are spread over")
	fs.IntVar(&c.handlers, "handlers", 8, "concurrent handlers")
	fs.Float64Var(&c.rollbackRate, "rollback-rate", 0.1, "fraction of handler transactions that roll back")
	fs.DurationVar(&c.svixLatency, "svix-latency", 0, "latency added to every call of the in-process Svix")
	fs.Float64Var(&c.faultRate, "fault-rate", 0.05, "fraction of in-process Svix calls answered 503")
	fs.DurationVar(&c.timeout, "timeout", 2*time.Minute, "give up after this long")
	fs.BoolVar(&c.keep, "keep", false, "keep the demo schema afterwards (only with an external database)")
	fs.BoolVar(&c.realSvix, "real-svix", false, "create the messages in Svix for real (SVIX_AUTH_TOKEN, SVIX_SERVER_URL): apps outbox-demo-<run>-org-NNN, event type "+demoEventType)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fs.SetOutput(stdout)
			fmt.Fprint(stdout, usageText)
			fs.PrintDefaults()
			fmt.Fprint(stdout, "\nExamples:\n  outbox-demo\n  outbox-demo --events 20000 --orgs 100 --svix-latency 20ms --fault-rate 0.1\n")
		}
		return c, err
	}
	switch {
	case fs.NArg() > 0:
		return c, fmt.Errorf("outbox-demo takes no arguments, got %q", fs.Args())
	case c.events < 1 || c.orgs < 1 || c.handlers < 1:
		return c, errors.New("--events, --orgs and --handlers must be at least 1")
	case c.rollbackRate < 0 || c.rollbackRate >= 1 || c.faultRate < 0 || c.faultRate >= 1:
		return c, errors.New("--rollback-rate and --fault-rate must be in [0, 1)")
	}
	return c, nil
}

const usageText = `Usage: outbox-demo [flags]

The whole flow with no setup: finds a PostgreSQL (DATABASE_URL, else a Docker container through
testcontainers, else a temporary cluster from the local PostgreSQL binaries, removed afterwards),
migrates a fresh schema, serves a Svix-compatible API in-process (Svix for real only with
--real-svix, with application and event names no one can mistake), runs concurrent handlers that
write a business row and an event in one transaction (some roll back) and signal after commit,
runs the relay, and audits the result. Exits 0 only if every committed event was delivered
exactly once and no rolled-back one was.

Flags:
`

// runDemo runs one demo.
func runDemo(ctx context.Context, env *environment, c demoConfig) error {
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	d := &demo{cfg: c, env: env}
	defer d.close()
	if err := d.setUp(ctx); err != nil {
		return err
	}
	return d.run(ctx)
}

// demoEventType is the type of the demo's events: no service's real type.
const demoEventType = "outbox_demo.order.created"

// orgPrefix starts every organization id of this run, so that a run
// against real Svix makes applications no one can mistake for real ones.
func (d *demo) orgPrefix() string { return "outbox-demo-" + d.runID }

// demo is one run of outbox-demo.
type demo struct {
	cfg     demoConfig
	env     *environment
	server  *pgserver.Server
	admin   *pgxpool.Pool
	pool    *pgxpool.Pool
	schema  string
	runID   string // names the schema, the organizations and the apps
	fake    *svixtest.Server
	relay   *relay.Relay
	cleanup []func()

	mu         sync.Mutex
	committed  map[string]time.Time // event id -> commit time
	rolledBack map[string]bool
	orgOf      map[string]string
}

func (d *demo) logf(format string, args ...any) {
	fmt.Fprintf(d.env.stderr, format+"\n", args...)
}

func (d *demo) close() {
	for i := len(d.cleanup) - 1; i >= 0; i-- {
		d.cleanup[i]()
	}
}

// setUp finds PostgreSQL, migrates a fresh schema and starts Svix (or
// points at the real one) and the relay.
func (d *demo) setUp(ctx context.Context) error {
	url := d.cfg.databaseURL
	if url == "" {
		url = d.env.getenv("DATABASE_URL")
	}
	if url != "" {
		d.server = pgserver.NewServer(url, "DATABASE_URL", nil)
	} else {
		d.logf("demo: no DATABASE_URL; starting a throwaway PostgreSQL...")
		srv, err := pgserver.Start(ctx, pgserver.Options{
			EnvVars:  []string{}, // DATABASE_URL was read above, through env
			Logf:     func(f string, a ...any) { d.logf(f, a...) },
			Starters: []pgserver.Starter{pgcontainer.Starter},
		})
		if err != nil {
			return err
		}
		d.server = srv
		d.cleanup = append(d.cleanup, func() { _ = srv.Stop() })
	}
	admin, err := pgxpool.New(ctx, d.server.URL)
	if err == nil {
		err = admin.Ping(ctx)
	}
	if err != nil {
		return fmt.Errorf("cannot reach the database: %w", err)
	}
	d.admin = admin
	d.cleanup = append(d.cleanup, admin.Close)

	d.runID = randomHex(4)
	d.schema = "outbox_demo_" + d.runID
	if _, err := migrations.Up(ctx, admin, migrations.Options{Schema: d.schema}); err != nil {
		return err
	}
	if !d.cfg.keep || d.server.Source != "DATABASE_URL" {
		d.cleanup = append(d.cleanup, func() {
			dropCtx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			_, _ = admin.Exec(dropCtx, "DROP SCHEMA "+sqlname.Quote(d.schema)+" CASCADE")
		})
	}
	cfg, err := pgxpool.ParseConfig(d.server.URL)
	if err != nil {
		return err
	}
	cfg.ConnConfig.RuntimeParams["search_path"] = d.schema
	cfg.MaxConns = int32(d.cfg.handlers + 8)
	if d.pool, err = pgxpool.NewWithConfig(ctx, cfg); err != nil {
		return err
	}
	d.cleanup = append(d.cleanup, d.pool.Close)
	_, err = d.pool.Exec(ctx, `CREATE TABLE demo_orders (
		id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
		organization_id text NOT NULL, amount_cents integer NOT NULL,
		created_at timestamptz NOT NULL DEFAULT now())`)
	if err != nil {
		return err
	}
	d.logf("demo: PostgreSQL from %s, schema %s", d.server.Source, d.schema)
	return d.startRelay(ctx)
}

func (d *demo) startRelay(ctx context.Context) error {
	rc := relay.Config{
		Channel:        d.schema, // private to this run
		RetryBaseDelay: 50 * time.Millisecond,
		RetryMaxDelay:  time.Second,
		Logger:         slog.New(slog.NewTextHandler(d.env.stderr, &slog.HandlerOptions{Level: slog.LevelWarn})),
	}
	if d.cfg.realSvix {
		rc.SvixToken, rc.SvixServerURL = d.env.getenv("SVIX_AUTH_TOKEN"), d.env.getenv("SVIX_SERVER_URL")
		if rc.SvixToken == "" {
			return errors.New("--real-svix needs SVIX_AUTH_TOKEN (and SVIX_SERVER_URL for a non-default Svix)")
		}
		// The resolver names the apps it creates for what they are.
		rc.Resolver = relay.ResolverFunc(func(_ context.Context, org string) (relay.Destination, error) {
			return relay.Destination{App: org, CreateName: "outbox demo run " + d.runID + " (safe to delete)"}, nil
		})
		d.logf("demo: creating messages in Svix for real (--real-svix): applications %s-org-000 and on, event type %s",
			d.orgPrefix(), demoEventType)
	} else {
		if d.env.getenv("SVIX_AUTH_TOKEN") != "" {
			d.logf("demo: SVIX_AUTH_TOKEN is set but not used; pass --real-svix to create the demo's messages in Svix")
		}
		d.fake = svixtest.New(svixtest.Options{Latency: d.cfg.svixLatency, DisableRequestLog: true})
		d.cleanup = append(d.cleanup, d.fake.Close)
		if d.cfg.faultRate > 0 {
			d.fake.SetFaultRate(d.cfg.faultRate, svixtest.Fault{Kind: svixtest.FaultStatus, Status: 503})
		}
		rc.SvixToken, rc.SvixServerURL = d.fake.Token(), d.fake.URL()
		d.logf("demo: Svix API served in-process at %s (latency %s, %.0f%% of calls answered 503)",
			d.fake.URL(), d.cfg.svixLatency, d.cfg.faultRate*100)
	}
	r, err := relay.New(d.pool, rc)
	if err != nil {
		return err
	}
	d.relay = r
	runCtx, stop := context.WithCancel(context.WithoutCancel(ctx))
	done := make(chan error, 1)
	go func() { done <- r.Run(runCtx) }()
	d.cleanup = append(d.cleanup, func() {
		stop()
		if err := <-done; err != nil {
			d.logf("demo: relay: %v", err)
		}
	})
	return nil
}

var errRollback = errors.New("demo: this handler rolls back")

// run drives the handlers, waits for delivery and audits it.
func (d *demo) run(ctx context.Context) error {
	d.committed, d.rolledBack, d.orgOf = map[string]time.Time{}, map[string]bool{}, map[string]string{}
	notify, err := outbox.NewNotifySignaler(d.pool, d.schema)
	if err != nil {
		return err
	}
	start := time.Now()
	progress := d.startProgress()
	if err := d.produce(ctx, notify); err != nil {
		progress(true)
		return err
	}
	produced := time.Since(start)
	err = d.waitDelivered(ctx)
	progress(true)
	if err != nil {
		return err
	}
	return d.audit(ctx, start, produced)
}

// produce runs the handlers: each writes an order and its event in one
// transaction, and some roll back.
func (d *demo) produce(ctx context.Context, notify outbox.Signaler) error {
	var (
		wg   sync.WaitGroup
		next = make(chan int)
		errs = make(chan error, d.cfg.handlers)
	)
	for range d.cfg.handlers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				if err := d.handle(ctx, notify, i); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	var err error
feed:
	for i := range d.cfg.events {
		select {
		case next <- i:
		case err = <-errs:
			break feed
		case <-ctx.Done():
			err = ctx.Err()
			break feed
		}
	}
	close(next)
	wg.Wait()
	if err == nil {
		select {
		case err = <-errs:
		default:
		}
	}
	if err != nil {
		return fmt.Errorf("handlers: %w", err)
	}
	return nil
}

// handle is one request of a service handler.
func (d *demo) handle(ctx context.Context, notify outbox.Signaler, i int) error {
	org := fmt.Sprintf("%s-org-%03d", d.orgPrefix(), i%d.cfg.orgs)
	rollback := mathrand.Float64() < d.cfg.rollbackRate
	var (
		res      outbox.AppendResult
		commitAt time.Time
	)
	timed := outbox.SignalerFunc(func(ctx context.Context, org string) error {
		commitAt = time.Now() // WithTx signals right after the commit
		return notify.SignalRelay(ctx, org)
	})
	err := outbox.WithTx(ctx, d.pool, timed, func(tx *outbox.Tx) error {
		amount := 100 + mathrand.IntN(10000)
		var orderID int64
		if err := tx.QueryRow(ctx, "INSERT INTO demo_orders (organization_id, amount_cents) VALUES ($1, $2) RETURNING id", org, amount).Scan(&orderID); err != nil {
			return err
		}
		var err error
		res, err = outbox.Append(ctx, tx, outbox.AppendParams{
			OrganizationID: org,
			EventType:      demoEventType,
			Payload:        map[string]any{"order_id": orderID, "amount_cents": amount, "seq": i},
		})
		if err != nil {
			return err
		}
		if rollback {
			return errRollback
		}
		return nil
	})
	d.mu.Lock()
	defer d.mu.Unlock()
	switch {
	case errors.Is(err, errRollback):
		d.rolledBack[res.EventID.String()] = true
		return nil
	case err != nil:
		return err
	}
	d.committed[res.EventID.String()] = commitAt
	d.orgOf[res.EventID.String()] = org
	return nil
}

func (d *demo) counts() (committed, rolledBack int) {
	d.mu.Lock()
	defer d.mu.Unlock()
	return len(d.committed), len(d.rolledBack)
}

// delivered is how many events the relay settled as delivered.
func (d *demo) delivered() int { return int(d.relay.Stats().Delivered) }

// waitDelivered waits until every committed event was delivered or
// dead-lettered and nothing is pending.
func (d *demo) waitDelivered(ctx context.Context) error {
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		committed, _ := d.counts()
		st := d.relay.Stats()
		if int(st.Delivered+st.DeadLettered) >= committed {
			var pending int
			if err := d.pool.QueryRow(ctx, "SELECT count(*) FROM "+sqlname.Events).Scan(&pending); err != nil {
				return err
			}
			if pending == 0 {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("demo failed: only %d of %d committed events delivered before --timeout", d.delivered(), committed)
		case <-tick.C:
		}
	}
}

// startProgress draws a progress bar on stderr until stopped.
func (d *demo) startProgress() func(final bool) {
	tty := isTerminal(d.env.stderr)
	draw := func(end string) {
		committed, rolledBack := d.counts()
		delivered := d.delivered()
		const width = 30
		filled := 0
		if d.cfg.events > 0 {
			filled = min(width, delivered*width/max(1, d.cfg.events-rolledBack))
		}
		fmt.Fprintf(d.env.stderr, "\r[%s%s] committed %d, rolled back %d, delivered %d%s",
			strings.Repeat("#", filled), strings.Repeat(".", width-filled), committed, rolledBack, delivered, end)
	}
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		every := time.Second
		if tty {
			every = 100 * time.Millisecond
		}
		tick := time.NewTicker(every)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
				if tty {
					draw("")
				} else {
					draw("\n")
				}
			}
		}
	}()
	var once sync.Once
	return func(bool) {
		once.Do(func() {
			close(stop)
			<-done
			draw("\n")
		})
	}
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}

// audit checks every committed event was created exactly once and no
// rolled-back one was, and prints the summary.
func (d *demo) audit(ctx context.Context, start time.Time, produced time.Duration) error {
	created, err := d.createdMessages(ctx)
	if err != nil {
		return err
	}
	var (
		missing, duplicates, leaked int
		latencies                   []time.Duration
		last                        time.Time
	)
	for id, at := range d.committed {
		times := created[id]
		switch len(times) {
		case 0:
			missing++
			continue
		case 1:
		default:
			duplicates += len(times) - 1
		}
		latencies = append(latencies, times[0].Sub(at))
		if times[0].After(last) {
			last = times[0]
		}
	}
	for id := range d.rolledBack {
		if len(created[id]) > 0 {
			leaked++
		}
	}
	st := d.relay.Stats()
	elapsed := last.Sub(start)
	w := d.env.stdout
	fmt.Fprintf(w, "\noutbox demo: %d handlers, %d organizations, in %s\n", d.cfg.handlers, d.cfg.orgs, elapsed.Round(time.Millisecond))
	fmt.Fprintf(w, "  committed         %d (producers done in %s)\n", len(d.committed), produced.Round(time.Millisecond))
	fmt.Fprintf(w, "  rolled back       %d\n", len(d.rolledBack))
	fmt.Fprintf(w, "  delivered         %d\n", len(d.committed)-missing)
	fmt.Fprintf(w, "  duplicates        %d\n", duplicates)
	fmt.Fprintf(w, "  rolled back sent  %d\n", leaked)
	fmt.Fprintf(w, "  retried           %d (Svix faults met and recovered)\n", st.Retried)
	fmt.Fprintf(w, "  dead-lettered     %d\n", st.DeadLettered)
	if elapsed > 0 {
		fmt.Fprintf(w, "  throughput        %.0f events/s (first commit to last delivery)\n", float64(len(d.committed)-missing)/elapsed.Seconds())
	}
	if len(latencies) > 0 {
		sort.Slice(latencies, func(i, j int) bool { return latencies[i] < latencies[j] })
		p := func(q float64) time.Duration {
			return latencies[int(q*float64(len(latencies)-1))].Round(10 * time.Microsecond)
		}
		fmt.Fprintf(w, "  commit→Svix       p50 %s  p95 %s  p99 %s\n", p(0.50), p(0.95), p(0.99))
	}
	if missing > 0 || duplicates > 0 || leaked > 0 {
		return fmt.Errorf("demo failed: %d committed events missing, %d duplicates, %d rolled-back events sent", missing, duplicates, leaked)
	}
	fmt.Fprintln(w, "  result            OK: every committed event delivered exactly once, no rolled-back event sent")
	return nil
}

// createdMessages returns, per event id, the creation times of its
// messages in Svix: from the in-process API's records, or by asking Svix.
func (d *demo) createdMessages(ctx context.Context) (map[string][]time.Time, error) {
	created := map[string][]time.Time{}
	if d.fake != nil {
		for _, m := range d.fake.Messages() {
			created[m.EventID] = append(created[m.EventID], m.Timestamp)
		}
		return created, nil
	}
	// Real Svix: eventIds are unique per application, so look each up.
	rows, err := d.pool.Query(ctx, "SELECT event_id::text, settled_at FROM "+sqlname.Deliveries+" WHERE outcome = 'delivered'")
	if err != nil {
		return nil, err
	}
	var (
		id string
		at time.Time
	)
	_, err = pgx.ForEachRow(rows, []any{&id, &at}, func() error {
		created[id] = append(created[id], at)
		return nil
	})
	return created, err
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
