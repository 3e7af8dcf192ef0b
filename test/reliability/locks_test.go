package reliability

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/url"
	"os"
	"regexp"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/outboxrelay/outbox/outboxtest/svixtest"
)

// lockWaitThreshold is deadlock_timeout while a scenario watches the
// server's locks: PostgreSQL runs its deadlock check, and logs a wait
// (log_lock_waits), once a lock has been waited for that long.
const lockWaitThreshold = 100 * time.Millisecond

// 12. Replicas do not deadlock: 3 relays, 300 organizations, a NOTIFY
// after every commit (every replica hears every one, and claims), Svix
// failing some calls (503, 429, a lost response), and a replica killed
// twice with SIGKILL. PostgreSQL logs every lock wait past 100 ms and every
// deadlock: there must be no deadlock; the waits are reported (not
// asserted) by the statement that waited and what held the lock, and what
// a sampler of pg_locks saw waiting past 50 ms for what.
func TestReplicaLockContention(t *testing.T) {
	e := newEnv(t, svixtest.Options{Latency: 2 * time.Millisecond, DisableRequestLog: true})
	blocked := e.sampleBlocking()
	log := watchLocks(t, e, blocked)

	for _, f := range []struct {
		rate  float64
		fault svixtest.Fault
	}{
		{0.05, svixtest.Fault{Kind: svixtest.FaultStatus, Status: 503}},
		{0.02, svixtest.Fault{Kind: svixtest.FaultRateLimit}},
		{0.01, svixtest.Fault{Kind: svixtest.FaultLostResponse}},
	} {
		f.fault.Match = func(r *svixtest.Request) bool { // a message create, at the rate
			return r.Method == http.MethodPost && r.EventID != "" && rand.Float64() < f.rate
		}
		e.fake.InjectFault(f.fault)
	}
	start := func(name string) { e.startRelayOn(e.appURL(name), name, e.token, e.fake.URL()) }
	for i := range 3 {
		start(fmt.Sprintf("relay-%d", i))
	}
	const (
		orgs   = 300
		events = 10000
	)
	began := time.Now()
	producers := e.produce(e.ctx, 8, producer{orgs: orgs, rollbackRate: 0.05, rate: 500, n: events})
	// Kill a replica at a third and at two thirds of the events, mid-work:
	// its lanes are taken over (mourning, then claims of lanes a dead
	// holder leased) while the others claim and settle.
	for k := 1; k <= 2; k++ {
		require.Eventually(t, func() bool { return e.fake.MessageCount() >= events*k/3 }, time.Minute, 10*time.Millisecond,
			"fewer than %d events delivered", events*k/3)
		run := e.running()
		run[rand.IntN(len(run))].kill9()
		start(fmt.Sprintf("relay-r%d", k))
	}
	producers.Wait()
	res := e.audit(time.Minute, nil)
	elapsed := time.Since(began)
	pairs, apps, passes := blocked.stop()

	entries := log.read()
	var deadlocks []string
	cycles := map[string]int{}
	waits := map[string]int{}
	nWaits := 0
	for _, en := range entries {
		switch {
		case en.level == "ERROR" && en.message == "deadlock detected":
			deadlocks = append(deadlocks, en.detail)
			cycles[e.describeDeadlock(en)]++
		case en.level == "LOG" && strings.Contains(en.message, "still waiting for"):
			nWaits++
			waits[e.describeWait(en, apps)]++
		}
	}
	t.Logf("%d deadlocks, %d lock waits past %s (server log), in %s:\n%s", len(deadlocks), nWaits, lockWaitThreshold,
		elapsed.Round(time.Millisecond), countsTable(waits))
	t.Logf("waits seen past %s in pg_locks, in %d passes (a 20 ms ticker; fewer when the machine is busy) (waiter <- holder):\n%s", lockWaitThreshold/2, passes, countsTable(pairs))
	if len(deadlocks) > 0 {
		t.Logf("deadlocks by the statements of their cycle:\n%s\nthe first:\n%s", countsTable(cycles), tail(deadlocks[0], 3000))
	}
	fig := res.figures()
	fig["relays"], fig["organizations"], fig["seconds"] = 3, orgs, elapsed.Seconds()
	fig["deadlocks"], fig["lock_waits"], fig["lock_waits_by_statement"] = len(deadlocks), nWaits, waits
	report(t, "replica lock contention", fig)
	require.Empty(t, deadlocks, "PostgreSQL detected deadlocks")
}

// appURL is the server's URL with application_name set to name, so that
// the server's log and pg_stat_activity say which relay a connection is.
func (e *env) appURL(name string) string {
	u, err := url.Parse(e.url)
	require.NoError(e.t, err)
	q := u.Query()
	q.Set("application_name", name)
	u.RawQuery = q.Encode()
	return u.String()
}

// serverLog is the suite's PostgreSQL log (its stderr, which pg_ctl sends to
// a file), from an offset on.
type serverLog struct {
	t      *testing.T
	path   string
	offset int64
}

// watchLocks has the server log every lock waited for past
// lockWaitThreshold (deadlocks are logged anyway) with the application's
// name, until t ends, and returns its log from now on. internal/pgserver
// starts the server without settings of the caller's, so they are set with
// ALTER SYSTEM and a reload, and reset after t.
func watchLocks(t *testing.T, e *env, blocked *blockSampler) *serverLog {
	t.Helper()
	// The server's stderr is the log: find it through a backend, which
	// inherits it from the postmaster.
	var pid int
	require.NoError(t, e.pool.QueryRow(e.ctx, "SELECT pg_backend_pid()").Scan(&pid))
	path, err := os.Readlink(fmt.Sprintf("/proc/%d/fd/2", pid))
	require.NoError(t, err, "the server's log")
	st, err := os.Stat(path)
	require.NoError(t, err)
	require.True(t, st.Mode().IsRegular(), "the server's stderr (%s) is not a file", path)
	log := &serverLog{t: t, path: path, offset: st.Size()}

	settings := [][2]string{
		{"log_lock_waits", "on"},
		{"deadlock_timeout", fmt.Sprintf("%dms", lockWaitThreshold.Milliseconds())},
		{"log_line_prefix", "%m [%p] [%a] "},
	}
	reload := func() {
		_, err := e.pool.Exec(e.ctx, "SELECT pg_reload_conf()")
		require.NoError(t, err)
	}
	t.Cleanup(func() {
		for _, s := range settings {
			_, _ = e.pool.Exec(e.ctx, "ALTER SYSTEM RESET "+s[0])
		}
		reload()
	})
	for _, s := range settings {
		_, err := e.pool.Exec(e.ctx, fmt.Sprintf("ALTER SYSTEM SET %s = '%s'", s[0], s[1]))
		require.NoError(t, err)
	}
	reload()
	// The postmaster logs each change it read: from then on, new
	// connections (the relays', started after) have the settings.
	require.Eventually(t, func() bool {
		var logged int
		for _, en := range log.read() {
			for _, s := range settings {
				if en.message == fmt.Sprintf("parameter %q changed to %q", s[0], s[1]) {
					logged++
				}
			}
		}
		return logged == len(settings)
	}, 10*time.Second, 10*time.Millisecond, "the server did not log its new settings in %s", path)
	log.canary(e, blocked)
	return log
}

// canary makes a lock wait and then a deadlock, checks that they are read
// from the log as such (and the wait seen by the sampler), and moves the
// offset past them and clears the sampler: a scenario that finds none would
// have found them.
func (l *serverLog) canary(e *env, blocked *blockSampler) {
	t := l.t
	t.Helper()
	_, err := e.pool.Exec(e.ctx, "CREATE TABLE lock_canary (id int PRIMARY KEY); INSERT INTO lock_canary VALUES (1), (2)")
	require.NoError(t, err)
	a, err := e.pool.Begin(e.ctx)
	require.NoError(t, err)
	defer func() { _ = a.Rollback(e.ctx) }()
	b, err := e.pool.Begin(e.ctx)
	require.NoError(t, err)
	defer func() { _ = b.Rollback(e.ctx) }()
	lock := func(tx pgx.Tx, id int) error {
		_, err := tx.Exec(e.ctx, "SELECT id FROM lock_canary WHERE id = $1 FOR UPDATE", id)
		return err
	}
	require.NoError(t, lock(a, 1))
	require.NoError(t, lock(b, 2))
	bWaits := make(chan error, 1)
	go func() { bWaits <- lock(b, 1) }()
	count := func() (deadlocks, waits int) {
		for _, en := range l.read() {
			if !strings.Contains(en.statement, "lock_canary") {
				continue
			}
			switch {
			case en.level == "ERROR" && en.message == "deadlock detected":
				deadlocks++
			case en.level == "LOG" && strings.Contains(en.message, "still waiting for"):
				waits++
			}
		}
		return deadlocks, waits
	}
	logged := assert.Eventually(t, func() bool { _, w := count(); return w == 1 }, 10*time.Second, 10*time.Millisecond)
	require.True(t, logged, "the canary's lock wait was not logged:\n%s", l.raw())
	require.Eventually(t, func() bool { return blocked.saw("lock_canary") }, 10*time.Second, 10*time.Millisecond,
		"the canary's lock wait was not seen in pg_locks")
	// The cycle: one of a and b fails (its transaction aborts, which
	// releases its locks) and the other goes through.
	aErr := lock(a, 2)
	bErr := <-bWaits
	if aErr == nil {
		aErr, bErr = bErr, aErr
	}
	require.ErrorContains(t, aErr, "deadlock detected")
	require.NoError(t, bErr)
	logged = assert.Eventually(t, func() bool { d, _ := count(); return d == 1 }, 10*time.Second, 10*time.Millisecond)
	require.True(t, logged, "the canary's deadlock was not logged:\n%s", l.raw())
	st, err := os.Stat(l.path)
	require.NoError(t, err)
	l.offset = st.Size()
	blocked.reset()
}

// raw is the end of the log from the offset on, for a failure's message.
func (l *serverLog) raw() string {
	b, err := os.ReadFile(l.path)
	if err != nil {
		return err.Error()
	}
	return tail(string(b[min(l.offset, int64(len(b))):]), 4000)
}

// logEntry is one message of the server log, with the lines that follow it.
type logEntry struct {
	pid, app, level, message   string
	detail, context, statement string
}

// logLine is a line of the log that starts a field: the prefix
// ('%m [%p] [%a] ', or the default '%m [%p] ' before the reload), the
// level and the text.
var logLine = regexp.MustCompile(`^\d{4}-\d\d-\d\d [\d:.]+ \S+ \[(\d+)\] (?:\[(.*?)\] )?([A-Z]+):  (.*)$`)

// read parses the log from the offset on: each message, with its DETAIL,
// CONTEXT and STATEMENT lines (the server writes a message's lines at
// once; its continuation lines start with a tab).
func (l *serverLog) read() []*logEntry {
	l.t.Helper()
	f, err := os.Open(l.path)
	require.NoError(l.t, err)
	defer f.Close()
	_, err = f.Seek(l.offset, 0)
	require.NoError(l.t, err)
	var (
		entries []*logEntry
		last    = map[string]*logEntry{} // by pid
		field   *string
	)
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<24)
	for sc.Scan() {
		line := sc.Text()
		m := logLine.FindStringSubmatch(line)
		if m == nil {
			if field != nil {
				*field += "\n" + strings.TrimPrefix(line, "\t")
			}
			continue
		}
		pid, app, level, text := m[1], m[2], m[3], m[4]
		en := last[pid]
		switch {
		case level == "DETAIL" && en != nil:
			field = &en.detail
		case level == "CONTEXT" && en != nil:
			field = &en.context
		case level == "STATEMENT" && en != nil:
			field = &en.statement
		case level == "HINT" || level == "QUERY":
			field = nil
			continue
		default:
			en = &logEntry{pid: pid, app: app, level: level}
			entries = append(entries, en)
			last[pid] = en
			field = &en.message
		}
		*field = text
	}
	require.NoError(l.t, sc.Err())
	return entries
}

var (
	lockOf     = regexp.MustCompile(`still waiting for (\S+ on \S+(?: token)?)`)
	relationOf = regexp.MustCompile(`relation "?(\w+)"?`)
	spaces     = regexp.MustCompile(`\s+`)
)

// holderOf reads the holders' pids from a lock wait's DETAIL.
var holderOf = regexp.MustCompile(`holding the lock: ([\d, ]+)\.`)

// describeWait names a logged lock wait by who waited (a relay, its
// heartbeat, a producer), on what lock of which table, the statement, and
// who held the lock (apps: the application of each server process seen).
func (e *env) describeWait(en *logEntry, apps map[string]string) string {
	what := "?"
	if m := lockOf.FindStringSubmatch(en.message); m != nil {
		what = m[1]
	}
	if m := relationOf.FindStringSubmatch(en.context); m != nil {
		what += " (" + m[1] + ")"
	} else if strings.Contains(en.message, "of relation ") {
		var oid uint32
		if _, err := fmt.Sscanf(en.message[strings.Index(en.message, "of relation ")+len("of relation "):], "%d", &oid); err == nil {
			var name string
			if e.pool.QueryRow(e.ctx, "SELECT $1::oid::regclass::text", oid).Scan(&name) == nil {
				what += " (" + name + ")"
			}
		}
	}
	var holders []string
	if m := holderOf.FindStringSubmatch(en.detail); m != nil {
		for pid := range strings.SplitSeq(m[1], ", ") {
			h, ok := apps[pid]
			switch {
			case !ok:
				h = "unknown process"
			case h == en.app:
				h = appKind(h) + " (same process)"
			default:
				h = appKind(h) + " (another process)"
			}
			holders = append(holders, h)
		}
	}
	return fmt.Sprintf("[%s] %s: %s\n      <- held by %s", appKind(en.app), what, e.statement(en.statement), strings.Join(holders, ", "))
}

// processOf starts a deadlock's DETAIL line naming a process's statement.
var processOf = regexp.MustCompile(`^Process \d+: `)

// describeDeadlock names a deadlock by the statements of the processes in
// its cycle, which its DETAIL lists after what each waited for.
func (e *env) describeDeadlock(en *logEntry) string {
	var stmts []string
	for line := range strings.SplitSeq(en.detail, "\n") {
		switch {
		case processOf.MatchString(line):
			stmts = append(stmts, processOf.ReplaceAllString(line, ""))
		case len(stmts) > 0:
			stmts[len(stmts)-1] += "\n" + line
		}
	}
	for i := range stmts {
		stmts[i] = e.statement(stmts[i])
	}
	sort.Strings(stmts)
	return strings.Join(stmts, "\n      x ")
}

// appKind names an application without the relay's number.
func appKind(app string) string {
	switch {
	case strings.HasPrefix(app, "relay-"):
		return "relay"
	case app == "" || app == "[unknown]": // the suite's pool: producers, the test
		return "producer/test"
	}
	return app
}

// statement shortens SQL to its first words, without the schema.
func (e *env) statement(sql string) string {
	s := strings.TrimSpace(spaces.ReplaceAllString(sql, " "))
	s = strings.ReplaceAll(s, `"`+e.schema+`".`, "")
	s = strings.ReplaceAll(s, e.schema+".", "")
	if len(s) > 110 {
		s = s[:110] + "..."
	}
	return s
}

// blockSampler watches pg_locks every 20 ms for locks waited for past
// half the log's threshold, and records who waited for whom: waiter and
// holder applications, the waiter's statement, and the holder's (the one
// running, or the last one of a transaction left idle).
type blockSampler struct {
	mu     sync.Mutex
	seen   map[string]string // a wait (waiter pid, wait start, holder pid) -> its pair
	apps   map[string]string // server process id -> application_name
	passes int
	cancel func()
	done   chan struct{}
}

func (e *env) sampleBlocking() *blockSampler {
	ctx, cancel := context.WithCancel(e.ctx)
	s := &blockSampler{seen: map[string]string{}, apps: map[string]string{}, cancel: cancel, done: make(chan struct{})}
	const query = `
SELECT l.pid, l.waitstart::text, l.mode || ' on ' || l.locktype || coalesce(' ' || l.relation::regclass::text, '') || coalesce(', ' || lane.why, ''),
       w.application_name, w.query, b.pid, b.application_name, coalesce(b.state, ''), b.query
FROM pg_locks l
JOIN pg_stat_activity w ON w.pid = l.pid
CROSS JOIN LATERAL unnest(pg_blocking_pids(l.pid)) AS h(pid)
JOIN pg_stat_activity b ON b.pid = h.pid
-- A wait for a transaction that has lanes locked (a claim locks many):
-- whether one of them, as committed, was not free (a claim skips those).
LEFT JOIN LATERAL (
    SELECT CASE WHEN bool_or(alive) THEN 'its locker has locked a lane leased to a live holder'
                WHEN bool_or(expired) THEN 'its locker has locked a lane whose lease expired'
                WHEN bool_or(stale) THEN 'its locker has locked a lane whose holder stopped heartbeating'
                ELSE 'its locker has locked free lanes only' END AS why
    FROM outbox_lanes ln
    CROSS JOIN LATERAL (SELECT ln.lease_token IS NOT NULL AND ln.leased_until >= now() AS leased,
        ln.holder IS NULL OR EXISTS (SELECT 1 FROM outbox_relays r WHERE r.instance = ln.holder AND r.alive_until > now()) AS live) st
    CROSS JOIN LATERAL (SELECT st.leased AND st.live AS alive, ln.lease_token IS NOT NULL AND NOT st.leased AS expired,
        st.leased AND NOT st.live AS stale) k
    WHERE l.locktype = 'transactionid' AND ln.xmax = l.transactionid
    HAVING count(*) > 0) lane ON true
WHERE NOT l.granted AND l.waitstart < now() - $1 * interval '1 millisecond'`
	go func() {
		defer close(s.done)
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
			if rows, err := e.pool.Query(ctx, "SELECT pid::text, application_name FROM pg_stat_activity"); err == nil {
				for rows.Next() {
					var pid, app string
					if rows.Scan(&pid, &app) == nil {
						s.mu.Lock()
						s.apps[pid] = app
						s.mu.Unlock()
					}
				}
				rows.Close()
			}
			rows, err := e.pool.Query(ctx, query, (lockWaitThreshold / 2).Milliseconds())
			if err != nil {
				continue // the database is busy or the test is ending
			}
			s.mu.Lock()
			s.passes++
			s.mu.Unlock()
			for rows.Next() {
				var (
					wpid, bpid                                  int
					since, lock, wapp, wsql, bapp, bstate, bsql string
				)
				if rows.Scan(&wpid, &since, &lock, &wapp, &wsql, &bpid, &bapp, &bstate, &bsql) != nil {
					break
				}
				same := ""
				if wapp == bapp {
					same = " (same process)"
				}
				pair := fmt.Sprintf("[%s] %s: %s\n      <- [%s%s, %s] %s", appKind(wapp), strings.ReplaceAll(lock, e.schema+".", ""), e.statement(wsql),
					appKind(bapp), same, bstate, e.statement(bsql))
				s.mu.Lock()
				s.seen[fmt.Sprint(wpid, since, bpid)] = pair
				s.mu.Unlock()
			}
			rows.Close()
		}
	}()
	return s
}

// saw reports whether a wait whose pair mentions text was seen.
func (s *blockSampler) saw(text string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, pair := range s.seen {
		if strings.Contains(pair, text) {
			return true
		}
	}
	return false
}

// reset forgets the waits seen so far.
func (s *blockSampler) reset() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.seen = map[string]string{}
}

// stop ends the sampling and returns how many waits each pair was seen
// in, the application of each server process seen, and how many times
// pg_locks was read.
func (s *blockSampler) stop() (pairs map[string]int, apps map[string]string, passes int) {
	s.cancel()
	<-s.done
	pairs = map[string]int{}
	for _, pair := range s.seen {
		pairs[pair]++
	}
	return pairs, s.apps, s.passes
}

// countsTable lists counts, largest first.
func countsTable(counts map[string]int) string {
	keys := make([]string, 0, len(counts))
	for k := range counts {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool {
		if counts[keys[i]] != counts[keys[j]] {
			return counts[keys[i]] > counts[keys[j]]
		}
		return keys[i] < keys[j]
	})
	var b bytes.Buffer
	for _, k := range keys {
		fmt.Fprintf(&b, "  %5d  %s\n", counts[k], k)
	}
	if len(keys) == 0 {
		b.WriteString("  none\n")
	}
	return b.String()
}
