package relay

import (
	"context"
	"crypto/tls"
	"net/http"
	"net/url"
	"strconv"
	"sync/atomic"
	"time"

	svix "github.com/svix/svix-webhooks/go"

	"github.com/jonboulle/clockwork"
)

// newSvixClient builds the SDK client the relay owns: SDK retries off (the
// relay schedules its own, and the SDK's are microseconds apart and ignore
// 429), and a transport that reports Retry-After back to the caller and
// traces and measures each call. pooled is the transport the relay made
// for it (nil when the caller gave one): the relay closes its idle
// connections when Run stops.
func newSvixClient(cfg Config, tel *relayTelemetry) (client *svix.Svix, pooled *http.Transport, err error) {
	httpClient := ownHTTPClient(cfg.HTTPClient, cfg.Concurrency)
	pooled, _ = httpClient.Transport.(*http.Transport)
	if cfg.HTTPClient != nil && cfg.HTTPClient.Transport != nil {
		pooled = nil // the caller's transport is the caller's to close
	}
	opts := &svix.SvixOptions{
		RetrySchedule: &[]time.Duration{},
		HTTPClient:    httpClient,
		TransportWrapper: func(rt http.RoundTripper) http.RoundTripper {
			return retryAfterTransport{next: tel.httpTransport(rt), clock: cfg.clock}
		},
	}
	if cfg.SvixServerURL != "" {
		u, err := url.Parse(cfg.SvixServerURL)
		if err != nil {
			return nil, nil, err
		}
		opts.ServerUrl = u
	}
	client, err = svix.New(cfg.SvixToken, opts)
	return client, pooled, err
}

// ownHTTPClient returns the client the SDK gets: never the caller's, which
// svix.New would modify (it wraps the Transport in place, one layer per
// call, and a nil Transport becomes a wrapper around nil that panics on the
// first request). A copy of the caller's client keeps its settings; a nil
// Transport becomes the relay's pooled one.
func ownHTTPClient(given *http.Client, concurrency int) *http.Client {
	if given == nil {
		return &http.Client{Transport: pooledTransport(concurrency)}
	}
	c := *given
	if c.Transport == nil {
		c.Transport = pooledTransport(concurrency)
	}
	return &c
}

// pooledTransport keeps enough idle connections for every call in flight.
// HTTP/2 stays off, as in the SDK's own client.
func pooledTransport(concurrency int) *http.Transport {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConns = concurrency * 2
	tr.MaxIdleConnsPerHost = concurrency * 2
	tr.ForceAttemptHTTP2 = false
	tr.TLSNextProto = map[string]func(string, *tls.Conn) http.RoundTripper{}
	return tr
}

// retryAfterKey carries a *atomic.Int64 through a request's context; the
// transport stores the Retry-After of a 429 in it, in milliseconds.
type retryAfterKey struct{}

func withRetryAfterSlot(ctx context.Context) (context.Context, *atomic.Int64) {
	slot := new(atomic.Int64)
	return context.WithValue(ctx, retryAfterKey{}, slot), slot
}

type retryAfterTransport struct {
	next  http.RoundTripper
	clock clockwork.Clock
}

func (t retryAfterTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := t.next.RoundTrip(req)
	if err == nil && resp.StatusCode == http.StatusTooManyRequests {
		if slot, ok := req.Context().Value(retryAfterKey{}).(*atomic.Int64); ok {
			if d, ok := parseRetryAfter(resp.Header.Get("Retry-After"), t.clock.Now()); ok {
				slot.Store(d.Milliseconds())
			}
		}
	}
	return resp, err
}

// parseRetryAfter reads delay-seconds or an HTTP date.
func parseRetryAfter(v string, now time.Time) (time.Duration, bool) {
	if v == "" {
		return 0, false
	}
	if secs, err := strconv.Atoi(v); err == nil && secs >= 0 {
		return time.Duration(secs) * time.Second, true
	}
	if at, err := http.ParseTime(v); err == nil {
		if d := at.Sub(now); d > 0 {
			return d, true
		}
		return 0, true
	}
	return 0, false
}
