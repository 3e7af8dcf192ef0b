package svixtest

import (
	"context"
	"math/rand/v2"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"time"
)

// FaultKind selects what an injected Fault does to a matching request.
type FaultKind int

const (
	// FaultStatus answers Fault.Status (500 if unset) with a Svix-shaped body:
	// {} for 5xx, {"code","detail"} for 4xx, a validation list for 422. Nothing is stored.
	FaultStatus FaultKind = iota
	// FaultRateLimit answers 429 {"code":"rate_limited",...}, with a Retry-After header
	// when Fault.RetryAfter > 0. Nothing is stored.
	FaultRateLimit
	// FaultHang never answers: the handler blocks until the client gives up (request
	// context cancelled) or the server closes, then drops the connection. Nothing is stored.
	FaultHang
	// FaultReset hijacks the connection and closes it without a response. Nothing is stored.
	FaultReset
	// FaultLostResponse handles the request normally (the message is stored and a 2xx is
	// cached for its idempotency key), then closes the connection instead of answering.
	FaultLostResponse
)

// String is the name recorded in Request.Fault: "status", "rate_limit", "hang",
// "reset" or "lost_response".
func (k FaultKind) String() string {
	switch k {
	case FaultStatus:
		return "status"
	case FaultRateLimit:
		return "rate_limit"
	case FaultHang:
		return "hang"
	case FaultReset:
		return "reset"
	case FaultLostResponse:
		return "lost_response"
	}
	return "fault(" + strconv.Itoa(int(k)) + ")"
}

// Fault describes an injected failure. The zero value answers 500 to every message create.
type Fault struct {
	// Kind is what happens; defaults to FaultStatus.
	Kind FaultKind
	// Status is the status of a FaultStatus (400, 401, 403, 404, 409, 413, 422, 500,
	// 502, 503...). Defaults to 500.
	Status int
	// RetryAfter, for FaultRateLimit, sends "Retry-After: <whole seconds, rounded up>"
	// when > 0. Defaults to 0: no header.
	RetryAfter time.Duration
	// Times is how many matching requests the fault applies to; 0 (the default) means
	// every matching request until removed or cleared. Ignored by SetFaultRate.
	Times int
	// Match selects requests; it sees Method, Path, App, IdempotencyKey, EventID, Header,
	// Body and Time. Defaults to nil: every POST /api/v1/app/{app}/msg.
	Match func(r *Request) bool
}

func (f *Fault) matches(r *Request) bool {
	if f.Match != nil {
		return f.Match(r)
	}
	return r.Method == http.MethodPost && parseRoute(r.Method, r.Path).kind == routeCreateMessage
}

// InjectFault adds f after the faults already injected; for each request the first
// matching fault with remaining Times applies. remove takes it out (idempotent).
func (s *Server) InjectFault(f Fault) (remove func()) {
	rule := s.faults.add(f)
	return func() { s.faults.remove(rule) }
}

// ClearFaults removes every injected fault and disables SetFaultRate.
func (s *Server) ClearFaults() { s.faults.clear() }

// SetFaultRate applies f (Times ignored) to a random fraction rate (0..1) of the
// requests f matches (message creates when f.Match is nil) that no injected fault
// claimed. rate <= 0 disables it.
func (s *Server) SetFaultRate(rate float64, f Fault) { s.faults.setRate(rate, f) }

type faultRule struct {
	f       Fault
	left    int
	removed bool
}

// faultSet holds injected faults. Match funcs run outside its lock, so they may call
// any Server method.
type faultSet struct {
	mu        sync.Mutex
	rules     []*faultRule
	rate      float64
	rateFault Fault
}

func (fs *faultSet) add(f Fault) *faultRule {
	rule := &faultRule{f: f, left: f.Times}
	fs.mu.Lock()
	fs.rules = append(fs.rules, rule)
	fs.mu.Unlock()
	return rule
}

func (fs *faultSet) remove(rule *faultRule) {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	fs.removeLocked(rule)
}

func (fs *faultSet) removeLocked(rule *faultRule) {
	rule.removed = true
	if i := slices.Index(fs.rules, rule); i >= 0 {
		fs.rules = slices.Delete(fs.rules, i, i+1)
	}
}

func (fs *faultSet) clear() {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	for _, r := range fs.rules {
		r.removed = true
	}
	fs.rules = nil
	fs.rate = 0
}

func (fs *faultSet) setRate(rate float64, f Fault) {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	fs.rate = min(max(rate, 0), 1)
	fs.rateFault = f
}

// pick returns the fault to apply to req, consuming one of its Times.
func (fs *faultSet) pick(req *Request) (Fault, bool) {
	fs.mu.Lock()
	rules := slices.Clone(fs.rules)
	rate, rateFault := fs.rate, fs.rateFault
	fs.mu.Unlock()
	for _, rule := range rules {
		if rule.f.matches(req) && fs.consume(rule) {
			return rule.f, true
		}
	}
	if rate > 0 && rateFault.matches(req) && rand.Float64() < rate {
		return rateFault, true
	}
	return Fault{}, false
}

// consume takes one use of rule; false if it was used up or removed meanwhile.
func (fs *faultSet) consume(rule *faultRule) bool {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	if rule.removed {
		return false
	}
	if rule.f.Times > 0 {
		rule.left--
		if rule.left == 0 {
			fs.removeLocked(rule)
		}
	}
	return true
}

// applyFault answers (or does not answer) the request as f says.
func (s *Server) applyFault(w http.ResponseWriter, ex *exchange, f Fault) {
	name := f.Kind.String()
	switch f.Kind {
	case FaultHang:
		s.finish(ex, 0, false, name)
		s.hang(ex.r.Context())
		abortConn(w)
	case FaultReset:
		s.finish(ex, 0, false, name)
		abortConn(w)
	case FaultLostResponse:
		res, replayed, _ := s.respond(ex)
		s.finish(ex, res.status, replayed, name)
		abortConn(w)
	case FaultRateLimit:
		if f.RetryAfter > 0 {
			w.Header().Set("Retry-After", retryAfterSeconds(f.RetryAfter))
		}
		s.finish(ex, http.StatusTooManyRequests, false, name)
		statusResponse(http.StatusTooManyRequests).write(w)
	default:
		res := statusResponse(orDefault(f.Status, http.StatusInternalServerError))
		s.finish(ex, res.status, false, name)
		res.write(w)
	}
}

// hang blocks until the client gives up or the server closes.
func (s *Server) hang(ctx context.Context) {
	select {
	case <-ctx.Done():
	case <-s.done:
	}
}

func retryAfterSeconds(d time.Duration) string {
	return strconv.FormatInt(int64((d+time.Second-1)/time.Second), 10)
}
