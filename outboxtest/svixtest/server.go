package svixtest

import (
	"context"
	"errors"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	svix "github.com/svix/svix-webhooks/go"
)

// DefaultToken is the bearer token accepted when Options.Token is empty.
const DefaultToken = "testsk_fake"

// DefaultMaxPayloadBytes is the payload limit used when Options.MaxPayloadBytes is 0 (1 MiB, as hosted Svix).
const DefaultMaxPayloadBytes = 1 << 20

// DefaultIdempotencyCacheSize is the number of cached 2xx responses kept when
// Options.IdempotencyCacheSize is 0.
const DefaultIdempotencyCacheSize = 1 << 18

// Options configures a Server. The zero value is valid: every field has a default.
type Options struct {
	// Token is the accepted bearer token. Defaults to DefaultToken ("testsk_fake").
	Token string
	// Latency is added to every request before it is handled; the wait ends early
	// (and the request is dropped) when the request context is cancelled. Defaults to 0.
	Latency time.Duration
	// AutoCreateApps makes Message.Create to a missing application create it (uid and
	// name = the path value) even without body.application. Defaults to false: a missing
	// application without body.application is a 404, as in Svix.
	AutoCreateApps bool
	// MaxPayloadBytes is the payload size limit, measured on the raw JSON of the
	// "payload" value; above it Message.Create answers 413. Defaults to
	// DefaultMaxPayloadBytes (1 MiB).
	MaxPayloadBytes int
	// DisableRequestLog stops recording requests (Requests returns nil) to save memory
	// in benchmarks; counters, messages and apps are still recorded. Defaults to false.
	DisableRequestLog bool
	// IdempotencyCacheSize bounds the number of cached 2xx responses; the oldest are
	// forgotten first. Defaults to DefaultIdempotencyCacheSize (262144).
	IdempotencyCacheSize int
}

// Server is a running fake Svix API. All methods are safe for concurrent use.
type Server struct {
	ts        *httptest.Server
	done      chan struct{}
	closeOnce sync.Once

	autoCreateApps bool
	maxPayload     int
	bodyLimit      int64
	logRequests    bool

	token          atomic.Pointer[string]
	latency        atomic.Int64
	createAttempts atomic.Int64
	openConns      atomic.Int64

	mu  sync.Mutex // guards st and ids
	st  store
	ids idGenerator

	log    requestLog
	faults faultSet
	idem   idempotencyCache
}

// New starts a fake Svix API on a local httptest.Server. Call Close when done
// (or use NewT).
func New(opts Options) *Server {
	s := &Server{
		done:           make(chan struct{}),
		autoCreateApps: opts.AutoCreateApps,
		maxPayload:     orDefault(opts.MaxPayloadBytes, DefaultMaxPayloadBytes),
		logRequests:    !opts.DisableRequestLog,
		st:             newStore(),
		idem:           newIdempotencyCache(orDefault(opts.IdempotencyCacheSize, DefaultIdempotencyCacheSize)),
	}
	s.bodyLimit = 2*int64(s.maxPayload) + 64<<10
	s.SetToken(opts.Token)
	if opts.Token == "" {
		s.SetToken(DefaultToken)
	}
	s.SetLatency(opts.Latency)
	s.ts = httptest.NewUnstartedServer(http.HandlerFunc(s.serveHTTP))
	s.ts.Config.ErrorLog = log.New(io.Discard, "", 0)
	s.ts.Config.ConnState = s.countConn
	s.ts.Start()
	return s
}

// NewT is New plus t.Cleanup(s.Close).
func NewT(t testing.TB, opts Options) *Server {
	t.Helper()
	s := New(opts)
	t.Cleanup(s.Close)
	return s
}

// countConn keeps the count of open client connections.
func (s *Server) countConn(_ net.Conn, state http.ConnState) {
	switch state {
	case http.StateNew:
		s.openConns.Add(1)
	case http.StateClosed, http.StateHijacked:
		s.openConns.Add(-1)
	}
}

// OpenConnections is the number of client connections open to the fake
// now, idle keep-alive ones included: a client that stopped should hold
// none.
func (s *Server) OpenConnections() int { return int(s.openConns.Load()) }

// URL is the base URL of the fake (http://127.0.0.1:port), to be used as SvixOptions.ServerUrl.
func (s *Server) URL() string { return s.ts.URL }

// Token is the bearer token currently accepted.
func (s *Server) Token() string { return *s.token.Load() }

// SetToken changes the accepted bearer token at runtime, e.g. to simulate a revoked
// token; requests with any other token get 401 from then on.
func (s *Server) SetToken(tok string) { s.token.Store(&tok) }

// SetLatency changes the latency added to every subsequent request.
func (s *Server) SetLatency(d time.Duration) { s.latency.Store(int64(d)) }

// Close stops the server. Hanging requests (FaultHang, Latency, idempotency waits)
// are released and their connections closed; Close is idempotent.
func (s *Server) Close() {
	s.closeOnce.Do(func() {
		close(s.done)
		s.ts.CloseClientConnections()
		s.ts.Close()
	})
}

// Client returns a real Svix SDK client pointed at URL() with token Token(), the SDK's
// retries disabled (RetrySchedule: &[]time.Duration{}) and a 60 s per-attempt timeout
// like the SDK's default client. Its transport disables HTTP/2 like the SDK's and keeps
// up to 64 idle connections; they are closed in t.Cleanup.
func (s *Server) Client(t testing.TB) *svix.Svix {
	t.Helper()
	u, err := url.Parse(s.URL())
	if err != nil {
		t.Fatalf("svixtest: parse url: %v", err)
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.ForceAttemptHTTP2 = false
	tr.MaxIdleConnsPerHost = 64
	t.Cleanup(tr.CloseIdleConnections)
	c, err := svix.New(s.Token(), &svix.SvixOptions{
		ServerUrl:     u,
		HTTPClient:    &http.Client{Timeout: 60 * time.Second, Transport: tr},
		RetrySchedule: &[]time.Duration{},
	})
	if err != nil {
		t.Fatalf("svixtest: new client: %v", err)
	}
	return c
}

// exchange is one request in flight through the pipeline.
type exchange struct {
	r       *http.Request
	route   route
	body    []byte
	bodyErr error
	msgIn   messageIn
	msgErr  error
	probe   Request  // what fault matchers see
	rec     *Request // the logged entry, nil when logging is disabled
}

// serveHTTP runs the pipeline: record, latency, faults, idempotency, auth, handler.
func (s *Server) serveHTTP(w http.ResponseWriter, r *http.Request) {
	ex := s.accept(w, r)
	if !s.delay(r.Context()) {
		s.finish(ex, 0, false, "")
		abortConn(w)
		return
	}
	if f, ok := s.faults.pick(&ex.probe); ok {
		s.applyFault(w, ex, f)
		return
	}
	res, replayed, ok := s.respond(ex)
	if !ok {
		s.finish(ex, 0, false, "")
		abortConn(w)
		return
	}
	s.finish(ex, res.status, replayed, "")
	res.write(w)
}

// accept reads the body, routes the request and records its arrival.
func (s *Server) accept(w http.ResponseWriter, r *http.Request) *exchange {
	ex := &exchange{r: r, route: parseRoute(r.Method, r.URL.Path)}
	ex.body, ex.bodyErr = io.ReadAll(http.MaxBytesReader(w, r.Body, s.bodyLimit))
	if ex.route.kind == routeCreateMessage {
		s.createAttempts.Add(1)
		if ex.bodyErr == nil {
			ex.msgIn, ex.msgErr = decodeMessageIn(ex.body)
		}
	}
	ex.probe = Request{
		Method:         r.Method,
		Path:           r.URL.Path,
		App:            ex.route.app,
		IdempotencyKey: r.Header.Get("idempotency-key"),
		EventID:        ex.msgIn.eventID(),
		Header:         r.Header,
		Body:           ex.body,
		Time:           time.Now(),
	}
	if s.logRequests {
		ex.rec = s.log.add(ex.probe)
	}
	return ex
}

// delay waits for the configured latency; false means the request must be dropped.
func (s *Server) delay(ctx context.Context) bool {
	d := time.Duration(s.latency.Load())
	if d <= 0 {
		return true
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	case <-s.done:
		return false
	}
}

// respond produces the normal (fault-free) response, going through the idempotency
// cache for POSTs with an idempotency-key. ok is false when the client went away or
// the server closed while waiting for a concurrent duplicate.
func (s *Server) respond(ex *exchange) (res response, replayed, ok bool) {
	if ex.route.kind == routeUnknown {
		return respRouteNotFound, false, true
	}
	key := idempotencyKeyOf(ex.r)
	if key == "" {
		return s.handle(ex), false, true
	}
	cached, slot, ok := s.idem.begin(ex.r.Context(), s.done, key)
	if !ok {
		return response{}, false, false
	}
	if cached != nil {
		return *cached, true, true
	}
	res = s.handle(ex)
	s.idem.end(key, slot, res)
	return res, false, true
}

// handle authenticates and dispatches to the route handler.
func (s *Server) handle(ex *exchange) response {
	if ex.bodyErr != nil {
		return bodyReadError(ex.bodyErr)
	}
	if !s.authorized(ex.r) {
		return respUnauthorized
	}
	switch ex.route.kind {
	case routeCreateMessage:
		return s.createMessage(ex)
	case routeGetMessage:
		return s.getMessage(ex.route.app, ex.route.msg, withContent(ex.r))
	case routeListAttemptsByMsg:
		return s.listAttemptsByMsg(ex.route.app, ex.route.msg)
	case routeCreateApp:
		return s.createApp(ex.body, ex.r.URL.Query().Get("get_if_exists") == "true")
	case routeGetApp:
		return s.getApp(ex.route.app)
	case routeCreateEventType:
		return s.createEventType(ex.body)
	case routeListEventTypes:
		return s.listEventTypes(ex.r.URL.Query())
	case routeGetEventType:
		return s.getEventType(ex.route.eventType)
	case routeUpdateEventType:
		return s.updateEventType(ex.route.eventType, ex.body)
	case routePatchEventType:
		return s.patchEventType(ex.route.eventType, ex.body)
	case routeDeleteEventType:
		return s.deleteEventType(ex.route.eventType, ex.r.URL.Query())
	}
	return respRouteNotFound
}

func (s *Server) authorized(r *http.Request) bool {
	return r.Header.Get("Authorization") == "Bearer "+s.Token()
}

func bodyReadError(err error) response {
	var tooLarge *http.MaxBytesError
	if errors.As(err, &tooLarge) {
		return respPayloadTooLarge
	}
	return errorResponse(http.StatusBadRequest, "bad_request", "Failed to read request body")
}

func withContent(r *http.Request) bool {
	return r.URL.Query().Get("with_content") != "false"
}

// abortConn closes the client connection without a response: hijack and close, or,
// if the connection cannot be hijacked, abort the handler.
func abortConn(w http.ResponseWriter) {
	if hj, ok := w.(http.Hijacker); ok {
		if conn, _, err := hj.Hijack(); err == nil {
			_ = conn.Close()
			return
		}
	}
	panic(http.ErrAbortHandler)
}

type routeKind int

const (
	routeUnknown routeKind = iota
	routeCreateMessage
	routeGetMessage
	routeListAttemptsByMsg
	routeCreateApp
	routeGetApp
	routeCreateEventType
	routeListEventTypes
	routeGetEventType
	routeUpdateEventType
	routePatchEventType
	routeDeleteEventType
)

type route struct {
	kind      routeKind
	app, msg  string
	eventType string // {event_type_name} of /api/v1/event-type/{event_type_name}
}

// parseRoute maps a method and path to one of the fake's routes.
func parseRoute(method, path string) route {
	rest, ok := strings.CutPrefix(path, "/api/v1/")
	if !ok {
		return route{}
	}
	parts := strings.Split(rest, "/")
	for _, p := range parts {
		if p == "" {
			return route{}
		}
	}
	post, get := method == http.MethodPost, method == http.MethodGet
	switch {
	case parts[0] == "event-type":
		return parseEventTypeRoute(method, parts)
	case parts[0] != "app":
		return route{}
	case len(parts) == 1 && post:
		return route{kind: routeCreateApp}
	case len(parts) == 2 && get:
		return route{kind: routeGetApp, app: parts[1]}
	case len(parts) == 3 && parts[2] == "msg" && post:
		return route{kind: routeCreateMessage, app: parts[1]}
	case len(parts) == 4 && parts[2] == "msg" && get:
		return route{kind: routeGetMessage, app: parts[1], msg: parts[3]}
	case len(parts) == 5 && parts[2] == "attempt" && parts[3] == "msg" && get:
		return route{kind: routeListAttemptsByMsg, app: parts[1], msg: parts[4]}
	}
	return route{}
}

// parseEventTypeRoute maps the routes under /api/v1/event-type.
func parseEventTypeRoute(method string, parts []string) route {
	switch {
	case len(parts) == 1 && method == http.MethodPost:
		return route{kind: routeCreateEventType}
	case len(parts) == 1 && method == http.MethodGet:
		return route{kind: routeListEventTypes}
	case len(parts) != 2:
		return route{}
	}
	if kind, ok := eventTypeNameRoutes[method]; ok {
		return route{kind: kind, eventType: parts[1]}
	}
	return route{}
}

// eventTypeNameRoutes are the methods served on /api/v1/event-type/{event_type_name}.
var eventTypeNameRoutes = map[string]routeKind{
	http.MethodGet:    routeGetEventType,
	http.MethodPut:    routeUpdateEventType,
	http.MethodPatch:  routePatchEventType,
	http.MethodDelete: routeDeleteEventType,
}

func orDefault(v, def int) int {
	if v <= 0 {
		return def
	}
	return v
}
