package svixtest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"sync"
	"time"
)

// ErrClosed is returned by WaitForMessages when the server is closed while waiting.
var ErrClosed = errors.New("server closed")

// Request is a recorded HTTP request, as received, with its outcome.
type Request struct {
	Method string
	Path   string // URL path, e.g. /api/v1/app/orders/msg
	// App is the {app} path segment (id or uid) of application routes, "" otherwise.
	App            string
	IdempotencyKey string // the idempotency-key header ("auto_<uuid>" when the SDK made it up)
	EventID        string // body eventId of a message create, "" otherwise
	Header         http.Header
	Body           []byte
	// Status is the status the fake produced: 0 while in flight, for hangs, resets and
	// requests dropped because the client gave up. For FaultLostResponse it is the status
	// of the response that was produced but never sent.
	Status   int
	Replayed bool      // the answer was an idempotency-cache replay
	Time     time.Time // arrival
	Fault    string    // FaultKind name of the injected fault that applied, "" if none
}

// Message is a message the fake actually created.
type Message struct {
	ID        string // "msg_..." KSUID-like, sorts in creation order
	App       string // the application's uid, or its id when it has none
	EventID   string // "" when created without eventId
	EventType string
	Payload   json.RawMessage // the payload object, compacted
	Channels  []string
	Tags      []string
	Timestamp time.Time // creation time, UTC
	Seq       int64     // creation sequence, global across apps, starting at 1
}

// EventType is a snapshot of an event type as the fake stores it.
type EventType struct {
	Name        string
	Description string
	GroupName   string // "" when it has none
	// Schemas maps a version ("1") to its JSON Schema, decoded afresh for every snapshot
	// (numbers are float64); nil when the event type has none.
	Schemas      map[string]any
	FeatureFlags []string // nil when it has none
	Deprecated   bool
	Archived     bool
	CreatedAt    time.Time // UTC
	// UpdatedAt is the time of the last successful write (create, unarchiving create,
	// PUT, PATCH, archiving DELETE), whether or not it changed anything, as svix-server
	// sets updated_at on every save. UTC.
	UpdatedAt time.Time
}

func (o eventTypeOut) snapshot() EventType {
	et := EventType{
		Name:         o.Name,
		Description:  o.Description,
		GroupName:    deref(o.GroupName),
		FeatureFlags: slices.Clone(o.FeatureFlags),
		Deprecated:   o.Deprecated,
		Archived:     o.Archived,
		CreatedAt:    o.CreatedAt,
		UpdatedAt:    o.UpdatedAt,
	}
	if o.Schemas != nil {
		_ = json.Unmarshal(o.Schemas, &et.Schemas) // stored schemas are a valid JSON object
	}
	return et
}

func (m Message) clone() Message {
	m.Payload = slices.Clone(m.Payload)
	m.Channels = slices.Clone(m.Channels)
	m.Tags = slices.Clone(m.Tags)
	return m
}

// requestLog records requests in arrival order.
type requestLog struct {
	mu      sync.Mutex
	entries []*Request
}

func (l *requestLog) add(r Request) *Request {
	r.Header = r.Header.Clone()
	l.mu.Lock()
	l.entries = append(l.entries, &r)
	l.mu.Unlock()
	return &r
}

func (l *requestLog) snapshot() []Request {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := make([]Request, len(l.entries))
	for i, r := range l.entries {
		out[i] = *r
		out[i].Header = r.Header.Clone()
		out[i].Body = slices.Clone(r.Body)
	}
	return out
}

func (l *requestLog) reset() {
	l.mu.Lock()
	l.entries = nil
	l.mu.Unlock()
}

// finish records the outcome of ex.
func (s *Server) finish(ex *exchange, status int, replayed bool, fault string) {
	if ex.rec == nil {
		return
	}
	s.log.mu.Lock()
	ex.rec.Status, ex.rec.Replayed, ex.rec.Fault = status, replayed, fault
	s.log.mu.Unlock()
}

// Requests returns a copy of every request received, in arrival order; nil when
// Options.DisableRequestLog is set.
func (s *Server) Requests() []Request {
	if !s.logRequests {
		return nil
	}
	return s.log.snapshot()
}

// Messages returns a copy of the messages created, in creation order (Seq increasing).
func (s *Server) Messages() []Message {
	s.mu.Lock()
	defer s.mu.Unlock()
	return cloneMessages(s.st.messages)
}

// MessagesFor returns the messages created in the application with id or uid app, in
// creation order; nil if there is no such application.
func (s *Server) MessagesFor(app string) []Message {
	s.mu.Lock()
	defer s.mu.Unlock()
	a := s.st.lookupApp(app)
	if a == nil {
		return nil
	}
	return cloneMessages(a.messages)
}

func cloneMessages(ms []*storedMessage) []Message {
	out := make([]Message, len(ms))
	for i, m := range ms {
		out[i] = m.clone()
	}
	return out
}

// MessageCount is the number of messages created.
func (s *Server) MessageCount() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.st.messages)
}

// CreateAttempts is the number of POST /api/v1/app/{app}/msg requests received,
// whatever their outcome (faults, replays and errors included).
func (s *Server) CreateAttempts() int { return int(s.createAttempts.Load()) }

// Conflicts is the number of 409 answers given for a duplicate eventId (injected
// 409 faults excluded).
func (s *Server) Conflicts() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.st.conflicts
}

// Apps returns the applications created, in creation order, each named by its uid
// (or its id when it has no uid).
func (s *Server) Apps() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]string, len(s.st.apps))
	for i, a := range s.st.apps {
		out[i] = a.label()
	}
	return out
}

// EventTypes returns the names of the event types that exist and are not archived, in
// creation order: an unarchived event type keeps its place, an expunged and re-created
// one comes last.
func (s *Server) EventTypes() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	for _, et := range s.st.eventTypeOrder {
		if !et.Archived {
			out = append(out, et.Name)
		}
	}
	return out
}

// EventType returns a snapshot of the event type named name, archived or not; false
// when there is none (never created, or expunged).
func (s *Server) EventType(name string) (EventType, bool) {
	out, ok := s.eventTypeOut(name)
	if !ok {
		return EventType{}, false
	}
	return out.snapshot(), true
}

// WaitForMessages blocks until at least n messages exist. It returns ctx's error
// (wrapped) when ctx ends first and ErrClosed when the server closes first.
func (s *Server) WaitForMessages(ctx context.Context, n int) error {
	s.mu.Lock()
	if len(s.st.messages) >= n {
		s.mu.Unlock()
		return nil
	}
	w := &waiter{n: n, ch: make(chan struct{})}
	s.st.waiters = append(s.st.waiters, w)
	s.mu.Unlock()
	select {
	case <-w.ch:
		return nil
	case <-ctx.Done():
	case <-s.done:
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.st.removeWaiter(w)
	if have := len(s.st.messages); have >= n {
		return nil
	} else if ctx.Err() != nil {
		return fmt.Errorf("svixtest: waiting for %d messages, have %d: %w", n, have, ctx.Err())
	}
	return fmt.Errorf("svixtest: wait for messages: %w", ErrClosed)
}

// Reset forgets messages, requests, apps, event types, counters, the idempotency
// cache and faults. Token and latency are kept; WaitForMessages calls keep waiting.
func (s *Server) Reset() {
	s.mu.Lock()
	waiters := s.st.waiters
	s.st = newStore()
	s.st.waiters = waiters
	s.mu.Unlock()
	s.log.reset()
	s.idem.reset()
	s.faults.clear()
	s.createAttempts.Store(0)
}
