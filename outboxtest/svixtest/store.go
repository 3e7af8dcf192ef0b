package svixtest

import (
	"encoding/json"
	"slices"
	"strings"
	"time"
)

const (
	appIDPrefix = "app_"
	msgIDPrefix = "msg_"
)

// store is the fake's state. It is guarded by Server.mu.
type store struct {
	appsByID       map[string]*app
	appsByUID      map[string]*app
	apps           []*app
	messages       []*storedMessage
	eventTypes     map[string]*eventTypeOut
	eventTypeOrder []*eventTypeOut // creation order; expunged ones are removed
	conflicts      int
	seq            int64
	waiters        []*waiter
}

func newStore() store {
	return store{
		appsByID:   map[string]*app{},
		appsByUID:  map[string]*app{},
		eventTypes: map[string]*eventTypeOut{},
	}
}

// app is a stored application with its message indexes.
type app struct {
	out       applicationOut
	messages  []*storedMessage
	byID      map[string]*storedMessage
	byEventID map[string]*storedMessage
}

// label is how Message.App and Apps name the application: its uid, or its id.
func (a *app) label() string {
	if a.out.UID != nil {
		return *a.out.UID
	}
	return a.out.ID
}

// findMessage looks a message up by id, then by eventId.
func (a *app) findMessage(idOrEventID string) *storedMessage {
	if m := a.byID[idOrEventID]; m != nil {
		return m
	}
	return a.byEventID[idOrEventID]
}

// storedMessage is a created message plus what only the API needs.
type storedMessage struct {
	Message
	deliverAt *time.Time
}

func (m *storedMessage) out(withContent bool) messageOut {
	o := messageOut{
		Channels:  m.Channels,
		DeliverAt: m.deliverAt,
		EventType: m.EventType,
		ID:        m.ID,
		Tags:      m.Tags,
		Timestamp: m.Timestamp,
	}
	if m.EventID != "" {
		o.EventID = &m.EventID
	}
	if withContent {
		o.Payload = m.Payload
	}
	return o
}

// lookupApp finds an application by id ("app_...") or uid.
func (st *store) lookupApp(idOrUID string) *app {
	if strings.HasPrefix(idOrUID, appIDPrefix) {
		return st.appsByID[idOrUID]
	}
	return st.appsByUID[idOrUID]
}

func (st *store) addApp(out applicationOut) *app {
	a := &app{
		out:       out,
		byID:      map[string]*storedMessage{},
		byEventID: map[string]*storedMessage{},
	}
	st.appsByID[out.ID] = a
	if out.UID != nil {
		st.appsByUID[*out.UID] = a
	}
	st.apps = append(st.apps, a)
	return a
}

func (st *store) addMessage(a *app, m *storedMessage) {
	st.seq++
	m.Seq = st.seq
	m.App = a.label()
	a.byID[m.ID] = m
	if m.EventID != "" {
		a.byEventID[m.EventID] = m
	}
	a.messages = append(a.messages, m)
	st.messages = append(st.messages, m)
	st.notifyWaiters()
}

// addEventType stores a new event type after the existing ones.
func (st *store) addEventType(et *eventTypeOut) {
	st.eventTypes[et.Name] = et
	st.eventTypeOrder = append(st.eventTypeOrder, et)
}

// expungeEventType forgets the event type named name.
func (st *store) expungeEventType(name string) {
	et := st.eventTypes[name]
	delete(st.eventTypes, name)
	st.eventTypeOrder = slices.DeleteFunc(st.eventTypeOrder, func(x *eventTypeOut) bool { return x == et })
}

// waiter is a WaitForMessages call blocked until n messages exist.
type waiter struct {
	n  int
	ch chan struct{}
}

func (st *store) notifyWaiters() {
	if len(st.waiters) == 0 {
		return
	}
	kept := st.waiters[:0]
	for _, w := range st.waiters {
		if len(st.messages) >= w.n {
			close(w.ch)
			continue
		}
		kept = append(kept, w)
	}
	clear(st.waiters[len(kept):])
	st.waiters = kept
}

func (st *store) removeWaiter(w *waiter) {
	for i, x := range st.waiters {
		if x == w {
			st.waiters = append(st.waiters[:i], st.waiters[i+1:]...)
			return
		}
	}
}

// decodeErrorResponse is the 422 Svix's JSON extractor answers for an undecodable body.
func decodeErrorResponse(err error) response {
	return validationResponse([]fieldError{invalid(err.Error())})
}

// isJSONObject reports whether raw (already syntax-checked JSON) is an object.
func isJSONObject(raw json.RawMessage) bool {
	for _, c := range raw {
		switch c {
		case ' ', '\t', '\n', '\r':
			continue
		}
		return c == '{'
	}
	return false
}
