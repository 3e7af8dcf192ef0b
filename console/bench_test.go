package console_test

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/outboxrelay/outbox/console"
	"github.com/outboxrelay/outbox/internal/pgtest"
	"github.com/outboxrelay/outbox/relay"
)

// BenchmarkPages measures each page's server time (the handler alone, no
// network) on an installation holding 1,000,000 pending events in one
// organization and one in each of 100,000 others, with their lanes,
// 10,000 dead letters and 180,000 rows of delivery history over the chart's
// three hours. The installation-wide summary (one pass over the pending
// events) is refreshed in the background, never on a page's path once it
// exists; BenchmarkSummaryPass measures that pass.
//
//	go test ./console -run '^$' -bench Pages -benchtime 50x
func BenchmarkPages(b *testing.B) {
	db := seedLarge(b)
	c, err := console.New(db.Pool, console.Config{SummaryInterval: time.Hour, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	require.NoError(b, err)
	b.Cleanup(c.Close)
	var eventID, deadEventID string
	require.NoError(b, db.Pool.QueryRow(context.Background(), `SELECT event_id::text FROM outbox_events WHERE organization_id = 'org-deep' ORDER BY id DESC LIMIT 1`).Scan(&eventID))
	require.NoError(b, db.Pool.QueryRow(context.Background(), `SELECT event_id::text FROM outbox_dead_letters LIMIT 1`).Scan(&deadEventID))

	// A first request creates the session and waits for the first summary.
	rec := httptest.NewRecorder()
	c.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/", nil))
	require.Equal(b, http.StatusOK, rec.Code, rec.Body.String())
	cookie := rec.Result().Cookies()[0]

	for _, page := range []struct{ name, path string }{
		{"overview", "/"},
		{"chart", "/chart.svg"},
		{"organizations_by_backlog", "/orgs?sort=pending"},
		{"organizations_by_oldest_page_100", "/orgs?sort=oldest&page=100"},
		{"organization_deep", "/orgs/org-deep"},
		{"organization_small", "/orgs/org-small-50000"},
		{"event_pending", "/events?id=" + eventID},
		{"event_dead_lettered", "/events?id=" + deadEventID},
		{"dead_letters", "/dead-letters"},
		{"dead_letters_filtered", "/dead-letters?org=org-small-7&status=422"},
	} {
		b.Run(page.name, func(b *testing.B) {
			for b.Loop() {
				req := httptest.NewRequest(http.MethodGet, page.path, nil)
				req.AddCookie(cookie)
				rec := httptest.NewRecorder()
				c.ServeHTTP(rec, req)
				if rec.Code != http.StatusOK {
					b.Fatalf("%s: %d %s", page.path, rec.Code, rec.Body.String())
				}
			}
		})
	}
}

// BenchmarkSummaryPass measures the background pass the overview and the
// organizations page are drawn from, on the same installation.
func BenchmarkSummaryPass(b *testing.B) {
	db := seedLarge(b)
	admin, err := relay.NewAdmin(db.Pool, relay.AdminConfig{})
	require.NoError(b, err)
	for b.Loop() {
		_, err := admin.Status(context.Background())
		require.NoError(b, err)
	}
}

func seedLarge(b *testing.B) *pgtest.DB {
	b.Helper()
	db := pgtest.New(b)
	ctx := context.Background()
	for _, q := range []string{
		`INSERT INTO outbox_events (event_id, organization_id, event_type, payload, created_at)
		 SELECT gen_random_uuid(), 'org-deep', 'invoice.paid', '{"amount": 100}', now() - interval '1 hour' + g * interval '1 millisecond'
		 FROM generate_series(1, 1000000) g`,
		`INSERT INTO outbox_events (event_id, organization_id, event_type, payload, created_at)
		 SELECT gen_random_uuid(), 'org-small-' || g, 'invoice.paid', '{"amount": 100}', now() - g * interval '10 millisecond'
		 FROM generate_series(1, 100000) g`,
		`INSERT INTO outbox_lanes (organization_id, due_at) SELECT DISTINCT organization_id, now() FROM outbox_events`,
		`INSERT INTO outbox_dead_letters (id, event_id, organization_id, event_type, payload, created_at, attempts, last_error, status_code)
		 SELECT 10000000 + g, gen_random_uuid(), 'org-small-' || (g % 1000), 'invoice.paid', '{}', now(), 1, 'svix refused', 422
		 FROM generate_series(1, 10000) g`,
		`INSERT INTO outbox_deliveries (id, event_id, organization_id, event_type, outcome, svix_message_id, attempts, created_at, settled_at)
		 SELECT 20000000 + g, gen_random_uuid(), 'org-small-' || (g % 100000), 'invoice.paid', 'delivered', 'msg_x', 1, now(), now() - g * interval '60 millisecond'
		 FROM generate_series(1, 180000) g`,
		`ANALYZE`,
	} {
		_, err := db.Pool.Exec(ctx, q)
		require.NoError(b, err)
	}
	return db
}
