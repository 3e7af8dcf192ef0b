package svixtest

import (
	"bytes"
	"encoding/json"
	"net/http"
	"strings"
	"time"
)

// deliverAtGrace tolerates the time between the client computing deliverAt and the
// fake checking it, so "now + 1 minute" is accepted.
const deliverAtGrace = 5 * time.Second

// messageIn is the subset of Svix's MessageIn the fake understands; pointers and
// RawMessage tell missing and null apart.
type messageIn struct {
	Application *applicationIn  `json:"application"`
	Channels    []string        `json:"channels"`
	DeliverAt   *time.Time      `json:"deliverAt"`
	EventID     *string         `json:"eventId"`
	EventType   *string         `json:"eventType"`
	Payload     json.RawMessage `json:"payload"`
	Tags        []string        `json:"tags"`
}

func decodeMessageIn(body []byte) (messageIn, error) {
	var m messageIn
	err := json.Unmarshal(body, &m)
	return m, err
}

func (m *messageIn) eventID() string { return deref(m.EventID) }

// messageOut mirrors models.MessageOut.
type messageOut struct {
	Channels  []string        `json:"channels,omitempty"`
	DeliverAt *time.Time      `json:"deliverAt,omitempty"`
	EventID   *string         `json:"eventId,omitempty"`
	EventType string          `json:"eventType"`
	ID        string          `json:"id"`
	Payload   json.RawMessage `json:"payload,omitempty"`
	Tags      []string        `json:"tags,omitempty"`
	Timestamp time.Time       `json:"timestamp"`
}

// createMessage serves POST /api/v1/app/{app}/msg.
func (s *Server) createMessage(ex *exchange) response {
	if ex.msgErr != nil {
		return decodeErrorResponse(ex.msgErr)
	}
	in := &ex.msgIn
	if len(in.Payload) > s.maxPayload {
		return respPayloadTooLarge
	}
	if errs := validateMessageIn(in, ex.route.app, time.Now()); len(errs) > 0 {
		return validationResponse(errs)
	}
	m, failure := s.storeMessage(ex.route.app, in)
	if m == nil {
		return failure
	}
	return jsonResponse(http.StatusAccepted, m.out(withContent(ex.r)))
}

// storeMessage creates the message (and its application when allowed) or returns
// the 404/409 answer.
func (s *Server) storeMessage(appPath string, in *messageIn) (*storedMessage, response) {
	m := &storedMessage{
		Message: Message{
			EventID:   in.eventID(),
			EventType: deref(in.EventType),
			Payload:   compactJSON(in.Payload),
			Channels:  in.Channels,
			Tags:      in.Tags,
			Timestamp: time.Now().UTC(),
		},
		deliverAt: in.DeliverAt,
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	a := s.st.lookupApp(appPath)
	if a == nil {
		if a = s.addAppForMessageLocked(appPath, in.Application); a == nil {
			return nil, respAppNotFound
		}
	}
	if m.EventID != "" && a.byEventID[m.EventID] != nil {
		s.st.conflicts++
		return nil, respConflict
	}
	m.ID = s.ids.next(msgIDPrefix)
	s.st.addMessage(a, m)
	return m, response{}
}

// addAppForMessageLocked creates the missing application of a message: from
// body.application, or (AutoCreateApps) from the path; nil when it may not.
func (s *Server) addAppForMessageLocked(appPath string, embedded *applicationIn) *app {
	if strings.HasPrefix(appPath, appIDPrefix) {
		return nil
	}
	if embedded == nil {
		if !s.autoCreateApps || !validName(appPath) {
			return nil
		}
		embedded = &applicationIn{Name: &appPath}
	}
	return s.addAppLocked(embedded, &appPath)
}

// getMessage serves GET /api/v1/app/{app}/msg/{idOrEventId}.
func (s *Server) getMessage(appPath, idOrEventID string, withContent bool) response {
	s.mu.Lock()
	a := s.st.lookupApp(appPath)
	var m *storedMessage
	if a != nil {
		m = a.findMessage(idOrEventID)
	}
	s.mu.Unlock()
	switch {
	case a == nil:
		return respAppNotFound
	case m == nil:
		return respMsgNotFound
	}
	return jsonResponse(http.StatusOK, m.out(withContent))
}

// listAttemptsByMsg answers GET /api/v1/app/{app}/attempt/msg/{msg_id}: the
// fake has no endpoints, so a message it holds has no attempts, as in Svix
// for an application without endpoints; an unknown app or message is a 404.
func (s *Server) listAttemptsByMsg(appPath, idOrEventID string) response {
	if r := s.getMessage(appPath, idOrEventID, false); r.status != http.StatusOK {
		return r
	}
	return jsonResponse(http.StatusOK, listResponse[struct{}]{Data: []struct{}{}, Done: true})
}

func validateMessageIn(in *messageIn, appPath string, now time.Time) []fieldError {
	var errs []fieldError
	if in.EventType == nil {
		errs = append(errs, invalid("field required", "eventType"))
	} else {
		errs = checkName(errs, *in.EventType, "eventType")
	}
	if in.EventID != nil {
		errs = checkEventID(errs, *in.EventID)
	}
	if !isJSONObject(in.Payload) {
		errs = append(errs, invalid("payload must be a JSON object", "payload"))
	}
	if in.Channels != nil { // null and missing are both fine; [] is not
		errs = channelsRule.check(errs, in.Channels, "channels")
	}
	if in.Tags != nil {
		errs = tagsRule.check(errs, in.Tags, "tags")
	}
	if in.DeliverAt != nil {
		errs = checkDeliverAt(errs, *in.DeliverAt, now)
	}
	if in.Application != nil {
		errs = checkEmbeddedApp(errs, in.Application, appPath)
	}
	return errs
}

func checkEventID(errs []fieldError, id string) []fieldError {
	if strings.HasPrefix(id, msgIDPrefix) {
		return append(errs, invalid(`eventId must not start with "msg_"`, "eventId"))
	}
	return checkName(errs, id, "eventId")
}

func checkDeliverAt(errs []fieldError, at, now time.Time) []fieldError {
	ahead := at.Sub(now)
	if ahead < time.Minute-deliverAtGrace || ahead > 24*time.Hour {
		return append(errs, invalid("deliverAt must be between 1 minute and 24 hours in the future", "deliverAt"))
	}
	return errs
}

// checkEmbeddedApp validates body.application: a name, and a uid equal to the path's
// when the path is a uid (the app would be created under it).
func checkEmbeddedApp(errs []fieldError, a *applicationIn, appPath string) []fieldError {
	if deref(a.Name) == "" {
		errs = append(errs, invalid("field required", "application", "name"))
	}
	if strings.HasPrefix(appPath, appIDPrefix) {
		return errs
	}
	if a.UID != nil && *a.UID != appPath {
		return append(errs, invalid("application uid must match the application in the path", "application", "uid"))
	}
	return checkUID(errs, appPath, "application", "uid")
}

// compactJSON returns raw without insignificant whitespace, as Svix stores payloads.
func compactJSON(raw json.RawMessage) json.RawMessage {
	var buf bytes.Buffer
	buf.Grow(len(raw))
	if err := json.Compact(&buf, raw); err != nil {
		return append(json.RawMessage(nil), raw...)
	}
	return buf.Bytes()
}
