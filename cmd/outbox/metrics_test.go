package main_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/stretchr/testify/require"
	"go.yaml.in/yaml/v3"

	"github.com/outboxrelay/outbox"
	"github.com/outboxrelay/outbox/internal/testnet"
	"github.com/outboxrelay/outbox/outboxtest/svixtest"
)

// scrape reads /metrics and parses Prometheus's text format.
func scrape(t *testing.T, base string) map[string]*dto.MetricFamily {
	t.Helper()
	resp, err := http.Get(base + "/metrics")
	require.NoError(t, err)
	defer resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.Contains(t, resp.Header.Get("Content-Type"), "text/plain")
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(resp.Body)
	require.NoError(t, err)
	return families
}

// total sums a family's counter, gauge or histogram-count values whose
// labels include want.
func total(f *dto.MetricFamily, want map[string]string) float64 {
	if f == nil {
		return 0
	}
	var sum float64
	for _, m := range f.GetMetric() {
		labels := map[string]string{}
		for _, l := range m.GetLabel() {
			labels[l.GetName()] = l.GetValue()
		}
		match := true
		for k, v := range want {
			match = match && labels[k] == v
		}
		if !match {
			continue
		}
		switch {
		case m.Counter != nil:
			sum += m.GetCounter().GetValue()
		case m.Gauge != nil:
			sum += m.GetGauge().GetValue()
		case m.Histogram != nil:
			sum += float64(m.GetHistogram().GetSampleCount())
		}
	}
	return sum
}

// A running `outbox relay` serves every outcome's counter, the latency
// histogram, the Svix call duration and the backlog gauges on /metrics; the
// dashboard and alert rules in docs/ use only what it serves.
func TestRelayServesPrometheusMetrics(t *testing.T) {
	t.Parallel()
	b := setup(t)
	fake := svixtest.NewT(t, svixtest.Options{})
	app := func(org string) func(r *svixtest.Request) bool {
		return func(r *svixtest.Request) bool {
			return r.Method == http.MethodPost && r.App == org && strings.HasSuffix(r.Path, "/msg")
		}
	}
	fake.InjectFault(svixtest.Fault{Status: 503, Times: 1, Match: app("org_retry")})
	fake.InjectFault(svixtest.Fault{Status: 400, Times: 1, Match: app("org_dead")})
	fake.InjectFault(svixtest.Fault{Kind: svixtest.FaultRateLimit, Times: 1, Match: app("org_limited")})
	fake.InjectFault(svixtest.Fault{Status: 401, Times: 1, Match: app("org_auth")})

	orgs := map[string]int{"org_ok": 3, "org_retry": 1, "org_dead": 1, "org_limited": 1, "org_auth": 1}
	for org, n := range orgs {
		for range n {
			_, err := outbox.Append(b.ctx, b.db.Pool, outbox.AppendParams{OrganizationID: org, EventType: "invoice.paid", Payload: map[string]any{"org": org}})
			require.NoError(t, err)
		}
	}

	port := testnet.FreePort(t)
	stop, stderr := startRelay(t, append(b.env, "SVIX_AUTH_TOKEN="+fake.Token(), "SVIX_SERVER_URL="+fake.URL()),
		"--schema", b.schema, "--poll-only", "--poll-interval", "50ms", "--quick-retries", "-1",
		"--retry-base-delay", "50ms", "--rate-limit-pause", "50ms", "--auth-pause", "100ms",
		"--http-addr", fmt.Sprintf("127.0.0.1:%d", port))
	defer stop()
	base := fmt.Sprintf("http://127.0.0.1:%d", port)
	require.Eventually(t, func() bool { return testnet.Status(base+"/readyz") == 200 }, 20*time.Second, 20*time.Millisecond, "relay not ready: %s", stderr)

	ctx, cancel := context.WithTimeout(b.ctx, 30*time.Second)
	defer cancel()
	require.NoError(t, fake.WaitForMessages(ctx, 6), "everything but org_dead's event is delivered")

	event := map[string]string{"outbox_event_type": "invoice.paid"}
	var families map[string]*dto.MetricFamily
	require.Eventually(t, func() bool {
		families = scrape(t, base)
		return total(families["outbox_events_delivered_total"], event) == 6 &&
			total(families["outbox_events_dead_lettered_total"], event) == 1 &&
			total(families["outbox_backlog_events"], nil) == 0
	}, 20*time.Second, 100*time.Millisecond, "metrics never settled")

	require.Equal(t, 1.0, total(families["outbox_events_retried_total"], map[string]string{"outbox_event_type": "invoice.paid", "error_type": "503"}))
	require.Equal(t, 1.0, total(families["outbox_events_dead_lettered_total"], map[string]string{"error_type": "400"}))
	require.Equal(t, 1.0, total(families["outbox_lanes_rate_limited_total"], nil))
	require.Equal(t, 1.0, total(families["outbox_auth_failures_total"], nil))
	require.Equal(t, 6.0, total(families["outbox_delivery_latency_seconds"], event), "one latency per delivery")
	require.Equal(t, dto.MetricType_HISTOGRAM, families["outbox_delivery_latency_seconds"].GetType())
	// Every Svix call, by status: 6 created, the 503, the 400, the 429 and the 401.
	calls := families["http_client_request_duration_seconds"]
	require.Equal(t, 10.0, total(calls, nil))
	for _, status := range []string{"202", "503", "400", "429", "401"} {
		require.Positive(t, total(calls, map[string]string{"http_response_status_code": status}), "status %s", status)
	}
	require.Equal(t, 0.0, total(families["outbox_backlog_oldest_age_seconds"], nil))
	backlog := families["outbox_backlog_events"].GetMetric()
	require.Len(t, backlog, 1, "an empty backlog is one series")
	require.Equal(t, 0.0, backlog[0].GetGauge().GetValue())
	require.Equal(t, "_other", labelValue(backlog[0], "outbox_organization_id"))
	require.Contains(t, families, "go_goroutines")
	require.Contains(t, families, "process_resident_memory_bytes")

	names, labels := exported(families)
	for _, file := range []string{"../../docs/grafana-dashboard.json", "../../docs/prometheus-alerts.yml"} {
		t.Run(file, func(t *testing.T) {
			exprs := readExprs(t, file)
			require.NotEmpty(t, exprs)
			for _, expr := range exprs {
				used, usedLabels := promqlNames(expr)
				require.NotEmpty(t, used, "no metric in %q", expr)
				for _, name := range used {
					require.Contains(t, names, name, "%s uses %s, which the relay does not export (in %q)", file, name, expr)
				}
				for _, label := range usedLabels {
					require.Contains(t, labels, label, "%s uses label %s, which no exported metric has (in %q)", file, label, expr)
				}
			}
		})
	}
	require.NotContains(t, stop(), fake.Token())
}

// exported lists the series names a scrape holds (a histogram's _bucket,
// _sum and _count) and every label name, with what Prometheus adds to every
// target: the up series, the job and instance labels.
func exported(families map[string]*dto.MetricFamily) (names, labels map[string]bool) {
	names = map[string]bool{"up": true}
	labels = map[string]bool{"le": true, "job": true, "instance": true}
	for name, f := range families {
		names[name] = true
		if f.GetType() == dto.MetricType_HISTOGRAM {
			names[name+"_bucket"], names[name+"_sum"], names[name+"_count"] = true, true, true
		}
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = true
			}
		}
	}
	return names, labels
}

// readExprs returns the PromQL of a Grafana dashboard (every "expr" of its
// panels' targets) or of Prometheus rule groups.
func readExprs(t *testing.T, file string) []string {
	t.Helper()
	data, err := os.ReadFile(file)
	require.NoError(t, err)
	var exprs []string
	if strings.HasSuffix(file, ".json") {
		var doc any
		require.NoError(t, json.Unmarshal(data, &doc))
		var walk func(v any)
		walk = func(v any) {
			switch v := v.(type) {
			case map[string]any:
				for k, x := range v {
					if s, ok := x.(string); ok && k == "expr" {
						exprs = append(exprs, s)
					}
					walk(x)
				}
			case []any:
				for _, x := range v {
					walk(x)
				}
			}
		}
		walk(doc)
		return exprs
	}
	var rules struct {
		Groups []struct {
			Rules []struct {
				Alert string `yaml:"alert"`
				Expr  string `yaml:"expr"`
			} `yaml:"rules"`
		} `yaml:"groups"`
	}
	require.NoError(t, yaml.Unmarshal(data, &rules))
	for _, g := range rules.Groups {
		for _, r := range g.Rules {
			require.NotEmpty(t, r.Alert)
			exprs = append(exprs, r.Expr)
		}
	}
	return exprs
}

var (
	promString   = regexp.MustCompile(`"(?:[^"\\]|\\.)*"`)
	promVariable = regexp.MustCompile(`\$\{?\w+\}?`)
	promRange    = regexp.MustCompile(`\[[^\]]*\]`)
	promMatchers = regexp.MustCompile(`\{([^}]*)\}`)
	promGrouping = regexp.MustCompile(`\b(?:by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)\)`)
	promIdent    = regexp.MustCompile(`[A-Za-z_:][A-Za-z0-9_:]*`)
	promKeywords = map[string]bool{"and": true, "or": true, "unless": true, "bool": true, "offset": true, "inf": true, "nan": true}
)

// promqlNames returns the metric names and label names a PromQL
// expression uses: what is left once strings, variables, ranges, label
// matchers and groupings are taken out, less function names and keywords.
func promqlNames(expr string) (metrics, labels []string) {
	expr = promString.ReplaceAllString(expr, `""`)
	expr = promVariable.ReplaceAllString(expr, "")
	expr = promRange.ReplaceAllString(expr, "")
	for _, m := range promMatchers.FindAllStringSubmatch(expr, -1) {
		for _, matcher := range strings.Split(m[1], ",") {
			if name := promIdent.FindString(matcher); name != "" {
				labels = append(labels, name)
			}
		}
	}
	expr = promMatchers.ReplaceAllString(expr, " ")
	for _, m := range promGrouping.FindAllStringSubmatch(expr, -1) {
		labels = append(labels, promIdent.FindAllString(m[1], -1)...)
	}
	expr = promGrouping.ReplaceAllString(expr, " ")
	for _, loc := range promIdent.FindAllStringIndex(expr, -1) {
		name := expr[loc[0]:loc[1]]
		rest := strings.TrimLeft(expr[loc[1]:], " \t\n")
		if promKeywords[strings.ToLower(name)] || strings.HasPrefix(rest, "(") || (loc[0] > 0 && isDigit(expr[loc[0]-1])) {
			continue // a function, a keyword, or a number's unit (5m, 1e3)
		}
		if !slices.Contains(metrics, name) {
			metrics = append(metrics, name)
		}
	}
	return metrics, labels
}

// labelValue is a series' value of a label, "" without it.
func labelValue(m *dto.Metric, name string) string {
	for _, l := range m.GetLabel() {
		if l.GetName() == name {
			return l.GetValue()
		}
	}
	return ""
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' || c == '.' }

// The name extractor the docs check relies on finds what a query uses and
// only that.
func TestPromQLNames(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		expr           string
		metrics, label []string
	}{
		{`sum(rate(outbox_events_delivered_total[5m]))`, []string{"outbox_events_delivered_total"}, nil},
		{`histogram_quantile(0.99, sum by (le) (rate(outbox_delivery_latency_seconds_bucket{outbox_event_type=~"$type"}[$__rate_interval])))`,
			[]string{"outbox_delivery_latency_seconds_bucket"}, []string{"outbox_event_type", "le"}},
		{`max(outbox_backlog_oldest_age_seconds) > 300`, []string{"outbox_backlog_oldest_age_seconds"}, nil},
		{`increase(outbox_events_dead_lettered_total[10m]) > 0 and on (job) up == 1`, []string{"outbox_events_dead_lettered_total", "up"}, []string{"job"}},
		{`topk(10, max by (outbox_organization_id) (outbox_backlog_events{outbox_organization_id!="_other"}))`,
			[]string{"outbox_backlog_events"}, []string{"outbox_organization_id", "outbox_organization_id"}},
	} {
		metrics, labels := promqlNames(tc.expr)
		require.ElementsMatch(t, tc.metrics, metrics, tc.expr)
		require.ElementsMatch(t, tc.label, labels, tc.expr)
	}
}

// An idle relay's first scrape holds its counters without attributes, at
// zero, so rate() and absence alerts work before anything happens.
func TestIdleRelayServesItsCountersAtZero(t *testing.T) {
	t.Parallel()
	b := setup(t)
	fake := svixtest.NewT(t, svixtest.Options{})
	port := testnet.FreePort(t)
	stop, stderr := startRelay(t, append(b.env, "SVIX_AUTH_TOKEN="+fake.Token(), "SVIX_SERVER_URL="+fake.URL()),
		"--schema", b.schema, "--poll-only", "--http-addr", fmt.Sprintf("127.0.0.1:%d", port))
	defer stop()
	base := fmt.Sprintf("http://127.0.0.1:%d", port)
	require.Eventually(t, func() bool { return testnet.Status(base+"/readyz") == 200 }, 20*time.Second, 20*time.Millisecond, "relay not ready: %s", stderr)

	families := scrape(t, base)
	for _, name := range []string{"outbox_lanes_rate_limited_total", "outbox_auth_failures_total"} {
		f := families[name]
		require.NotNil(t, f, "%s is missing from an idle relay's scrape", name)
		require.Len(t, f.GetMetric(), 1, name)
		require.Zero(t, f.GetMetric()[0].GetCounter().GetValue(), name)
	}
}
