package console_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/stretchr/testify/require"

	"github.com/outboxrelay/outbox/console"
	"github.com/outboxrelay/outbox/outboxtest/svixtest"
	"github.com/outboxrelay/outbox/relay"
)

// browser starts a headless Chromium (Debian's chromium, or
// $OUTBOX_TEST_CHROMIUM) for one test. Without one the test is skipped,
// unless OUTBOX_TEST_REQUIRE_BROWSER=1 (CI sets it) makes that a failure.
func browser(t *testing.T) context.Context {
	t.Helper()
	path := os.Getenv("OUTBOX_TEST_CHROMIUM")
	if path == "" {
		path, _ = exec.LookPath("chromium")
	}
	if path == "" {
		if os.Getenv("OUTBOX_TEST_REQUIRE_BROWSER") == "1" {
			t.Fatal("no chromium on PATH, and OUTBOX_TEST_REQUIRE_BROWSER=1 (apt-get install chromium)")
		}
		t.Skip("no chromium on PATH (apt-get install chromium, or set OUTBOX_TEST_CHROMIUM)")
	}
	opts := append(chromedp.DefaultExecAllocatorOptions[:], chromedp.ExecPath(path),
		chromedp.NoSandbox, chromedp.WindowSize(1280, 900), chromedp.Flag("disable-dev-shm-usage", true))
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(actx)
	ctx, cancelTimeout := context.WithTimeout(ctx, 2*time.Minute)
	t.Cleanup(func() { cancelTimeout(); cancel(); cancelAlloc() })
	require.NoError(t, chromedp.Do(ctx), "start chromium")
	return ctx
}

// screenshot saves the page as test output: $OUTBOX_TEST_SCREENSHOTS, or a
// directory under the system's temporary one, named in the test log.
func screenshot(t *testing.T, ctx context.Context, name string) {
	t.Helper()
	dir := os.Getenv("OUTBOX_TEST_SCREENSHOTS")
	if dir == "" {
		dir = filepath.Join(os.TempDir(), "outbox-console-screenshots")
	}
	require.NoError(t, os.MkdirAll(dir, 0o755))
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	require.NoError(t, err)
	file := filepath.Join(dir, name+".png")
	require.NoError(t, os.WriteFile(file, png, 0o644))
	t.Logf("screenshot: %s", file)
}

// text returns the text of the first element sel matches on the current
// page.
func text(t *testing.T, ctx context.Context, sel string) string {
	t.Helper()
	s, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS(sel)))
	require.NoError(t, err, "text of %s", sel)
	return s
}

func TestBrowserOverviewAndFindingAnEvent(t *testing.T) {
	t.Parallel()
	b := setup(t, console.Config{})
	ctx := browser(t)
	ev := b.appendEvents(t, "org-browse", 3)[1]
	b.deadLetter(t, 1_000_001, "org-browse", 422)

	require.NoError(t, chromedp.Do(ctx, chromedp.Navigate(b.srv.URL+"/"), chromedp.WaitVisible(chromedp.CSS(`img.chart`))))
	require.Equal(t, "3", text(t, ctx, `[data-test=pending]`))
	require.Equal(t, "1", text(t, ctx, `[data-test=dead]`))
	screenshot(t, ctx, "overview")

	require.NoError(t, chromedp.Do(ctx,
		chromedp.SendKeys(chromedp.CSS(`#event-id`), ev.EventID.String()),
		chromedp.Submit(chromedp.CSS(`#event-id`)),
		chromedp.WaitVisible(chromedp.CSS(`[data-test=event-state]`))))
	require.Equal(t, "pending", text(t, ctx, `[data-test=event-state]`))
	screenshot(t, ctx, "event")

	require.NoError(t, chromedp.Do(ctx, chromedp.Navigate(b.srv.URL+"/orgs"), chromedp.WaitVisible(chromedp.CSS(`table`))))
	require.Contains(t, text(t, ctx, `main`), "org-browse")
	screenshot(t, ctx, "organizations")
}

func TestBrowserRequeuesADeadLetter(t *testing.T) {
	t.Parallel()
	b := setup(t, console.Config{})
	ctx := browser(t)
	b.deadLetter(t, 1_000_001, "org-dl", 422)
	b.deadLetter(t, 1_000_002, "org-dl", 422)

	require.NoError(t, chromedp.Do(ctx,
		chromedp.Navigate(b.srv.URL+"/dead-letters?org=org-dl"),
		chromedp.WaitVisible(chromedp.CSS(`#dl-1000001`))))
	screenshot(t, ctx, "dead-letters")
	require.NoError(t, chromedp.Do(ctx,
		chromedp.Click(chromedp.CSS(`#dl-1000001`)),
		chromedp.Click(chromedp.CSS(`#requeue`)),
		chromedp.WaitVisible(chromedp.CSS(`[data-test=confirm-count]`))))
	require.Contains(t, text(t, ctx, `[data-test=confirm-count]`), "Requeue for delivery 1 dead letters")
	require.Equal(t, 2, b.count(t, `SELECT count(*) FROM outbox_dead_letters`), "nothing changes before the confirmation")
	screenshot(t, ctx, "confirm")
	require.NoError(t, chromedp.Do(ctx,
		chromedp.Click(chromedp.CSS(`#confirm`)),
		chromedp.WaitVisible(chromedp.CSS(`.ok`))))
	require.Equal(t, 1, b.count(t, `SELECT count(*) FROM outbox_dead_letters`))
	require.Equal(t, 1, b.count(t, `SELECT count(*) FROM outbox_events WHERE id = 1000001`), "back in the outbox with its id")
}

func TestBrowserPausedOrganizationGetsNoDelivery(t *testing.T) {
	t.Parallel()
	b := setup(t, console.Config{})
	ctx := browser(t)
	fake := svixtest.NewT(t, svixtest.Options{})

	require.NoError(t, chromedp.Do(ctx,
		chromedp.Navigate(b.srv.URL+"/orgs/org-held"),
		chromedp.WaitVisible(chromedp.CSS(`#reason`)),
		chromedp.SendKeys(chromedp.CSS(`#reason`), "customer asked to hold"),
		chromedp.Submit(chromedp.CSS(`#reason`)),
		chromedp.WaitVisible(chromedp.CSS(`[data-test=lane-state]`))))
	require.Contains(t, text(t, ctx, `[data-test=lane-state]`), "paused by an operator: customer asked to hold")

	b.appendEvents(t, "org-held", 2)
	b.appendEvents(t, "org-free", 2)
	r, err := relay.New(b.db.Pool, relay.Config{
		SvixToken: fake.Token(), SvixServerURL: fake.URL(), Channel: "outbox_" + b.db.Schema,
		PollInterval: 50 * time.Millisecond,
	})
	require.NoError(t, err)
	runCtx, stop := context.WithCancel(b.ctx)
	done := make(chan error, 1)
	go func() { done <- r.Run(runCtx) }()
	t.Cleanup(func() { stop(); require.NoError(t, <-done) })

	waitCtx, cancel := context.WithTimeout(b.ctx, 30*time.Second)
	defer cancel()
	require.NoError(t, fake.WaitForMessages(waitCtx, 2), "the other organization is delivered")
	// One more turn of the other organization, committed after the paused
	// one's events: once it is delivered, the relay has passed over the
	// paused lane at least once since it had work.
	b.appendEvents(t, "org-free", 1)
	require.NoError(t, fake.WaitForMessages(waitCtx, 3))
	require.Equal(t, 3, fake.MessageCount(), "nothing of the paused organization")
	require.Equal(t, 2, b.count(t, `SELECT count(*) FROM outbox_events WHERE organization_id = 'org-held'`), "its events wait, pending")
	require.NoError(t, chromedp.Do(ctx, chromedp.Navigate(b.srv.URL+"/"), chromedp.WaitVisible(chromedp.CSS(`[data-test=pending]`))))
	screenshot(t, ctx, "overview-relay-running")

	require.NoError(t, chromedp.Do(ctx,
		chromedp.Navigate(b.srv.URL+"/orgs/org-held"),
		chromedp.WaitVisible(chromedp.CSS(`form[action$="/resume"] button`))))
	screenshot(t, ctx, "organization-paused")
	require.NoError(t, chromedp.Do(ctx,
		chromedp.Click(chromedp.CSS(`form[action$="/resume"] button`)),
		chromedp.WaitVisible(chromedp.CSS(`#reason`))))
	require.NoError(t, fake.WaitForMessages(waitCtx, 5), "resumed: delivered")
}

func TestBrowserCrossSitePostIsRefused(t *testing.T) {
	t.Parallel()
	b := setup(t, console.Config{})
	ctx := browser(t)
	b.deadLetter(t, 1_000_001, "org-victim", 422)
	// The operator has a session (a visit to the console)...
	require.NoError(t, chromedp.Do(ctx, chromedp.Navigate(b.srv.URL+"/"), chromedp.WaitVisible(chromedp.CSS(`main`))))
	// ...and then opens another site, whose form posts to the console.
	evil := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprintf(w, `<!doctype html><form method="post" action="%s/dead-letters/purge">
<input type="hidden" name="id" value="1000001"><input type="hidden" name="all" value="1"><input type="hidden" name="confirm" value="1">
<button id="go" type="submit">win a prize</button></form>`, b.srv.URL)
	}))
	t.Cleanup(evil.Close)
	evilURL := strings.Replace(evil.URL, "127.0.0.1", "localhost", 1) // another origin
	// The click starts a navigation; reading the page before the console's
	// answer replaced the other site's read a node that went away with it
	// ("No node with given id found"). The form's button leaves with its
	// page, so its absence is the console's answer being there.
	require.NoError(t, chromedp.Do(ctx,
		chromedp.Navigate(evilURL),
		chromedp.Click(chromedp.CSS(`#go`)),
		chromedp.WaitNotPresent(chromedp.CSS(`#go`)),
		chromedp.WaitReady(chromedp.CSS(`body`))))
	location, err := chromedp.Run(ctx, chromedp.Location())
	require.NoError(t, err)
	require.Equal(t, b.srv.URL+"/dead-letters/purge", location, "the form was posted to the console")
	body := text(t, ctx, `body`)
	require.Contains(t, body, "cross-origin", "refused by the origin check, before the session or the CSRF token")
	require.NotContains(t, body, "Done")
	require.Equal(t, 1, b.count(t, `SELECT count(*) FROM outbox_dead_letters`), "the cross-site POST changed nothing")
}
