package svixtest

import (
	"encoding/json"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"
)

// eventTypeIn is Svix's EventTypeIn, and also its EventTypeUpdate (the same fields
// without name: the name of a PUT body is ignored, as serde ignores unknown fields).
// Pointers and RawMessage tell missing and null apart.
type eventTypeIn struct {
	Archived     *bool           `json:"archived"`
	Deprecated   *bool           `json:"deprecated"`
	Description  *string         `json:"description"`
	FeatureFlags []string        `json:"featureFlags"`
	GroupName    *string         `json:"groupName"`
	Name         *string         `json:"name"`
	Schemas      json.RawMessage `json:"schemas"`
}

// eventTypePatch is Svix's EventTypePatch: every field may be absent, and the
// nullable ones (featureFlags, groupName, schemas) may be null to clear them.
type eventTypePatch struct {
	Archived     patchField[bool]            `json:"archived"`
	Deprecated   patchField[bool]            `json:"deprecated"`
	Description  patchField[string]          `json:"description"`
	FeatureFlags patchField[[]string]        `json:"featureFlags"`
	GroupName    patchField[string]          `json:"groupName"`
	Schemas      patchField[json.RawMessage] `json:"schemas"`
}

// patchField is a field of a PATCH body: absent (set is false), null, or a value.
type patchField[T any] struct {
	set, null bool
	v         T
}

// UnmarshalJSON records that the field is present; encoding/json calls it for null too.
func (f *patchField[T]) UnmarshalJSON(b []byte) error {
	f.set = true
	if string(b) == "null" {
		f.null = true
		return nil
	}
	return json.Unmarshal(b, &f.v)
}

// eventTypeOut mirrors models.EventTypeOut. It is also how the store keeps an event
// type: the store replaces its slices instead of modifying them, so a copy taken
// under Server.mu can be rendered after the lock is released.
type eventTypeOut struct {
	Archived     bool            `json:"archived"`
	CreatedAt    time.Time       `json:"createdAt"`
	Deprecated   bool            `json:"deprecated"`
	Description  string          `json:"description"`
	FeatureFlags []string        `json:"featureFlags,omitempty"`
	GroupName    *string         `json:"groupName,omitempty"`
	Name         string          `json:"name"`
	Schemas      json.RawMessage `json:"schemas,omitempty"`
	UpdatedAt    time.Time       `json:"updatedAt"`
}

// createEventType serves POST /api/v1/event-type: 201 with a new event type, or with
// an archived one overwritten by the body (unarchived unless the body says archived);
// 409 when a non-archived one has the name.
func (s *Server) createEventType(body []byte) response {
	var in eventTypeIn
	if err := json.Unmarshal(body, &in); err != nil {
		return decodeErrorResponse(err)
	}
	var errs []fieldError
	if in.Name == nil {
		errs = append(errs, invalid("field required", "name"))
	} else {
		errs = checkName(errs, *in.Name, "name")
	}
	if errs = in.check(errs); len(errs) > 0 {
		return validationResponse(errs)
	}
	now := time.Now().UTC()
	s.mu.Lock()
	et := s.st.eventTypes[*in.Name]
	switch {
	case et == nil:
		et = &eventTypeOut{Name: *in.Name, CreatedAt: now}
		s.st.addEventType(et)
	case !et.Archived:
		s.mu.Unlock()
		return respEventTypeExists
	}
	in.apply(et, now)
	out := *et
	s.mu.Unlock()
	return jsonResponse(http.StatusCreated, out)
}

// getEventType serves GET /api/v1/event-type/{name}; archived event types are found too.
func (s *Server) getEventType(name string) response {
	out, ok := s.eventTypeOut(name)
	if !ok {
		return respNotFound
	}
	return jsonResponse(http.StatusOK, out)
}

// updateEventType serves PUT /api/v1/event-type/{name}: every field is replaced by the
// body's (missing ones by their defaults: not archived, not deprecated, no schemas, no
// group, no feature flags); 200, or 201 when the event type did not exist and was created.
func (s *Server) updateEventType(name string, body []byte) response {
	if errs := nameRule.check(nil, name); len(errs) > 0 {
		errs[0].Loc = []string{"path", "event_type_name"}
		return validationResponse(errs)
	}
	var in eventTypeIn
	if err := json.Unmarshal(body, &in); err != nil {
		return decodeErrorResponse(err)
	}
	if errs := in.check(nil); len(errs) > 0 {
		return validationResponse(errs)
	}
	now := time.Now().UTC()
	status := http.StatusOK
	s.mu.Lock()
	et := s.st.eventTypes[name]
	if et == nil {
		et = &eventTypeOut{Name: name, CreatedAt: now}
		s.st.addEventType(et)
		status = http.StatusCreated
	}
	in.apply(et, now)
	out := *et
	s.mu.Unlock()
	return jsonResponse(status, out)
}

// patchEventType serves PATCH /api/v1/event-type/{name}: only the fields present in
// the body change; 404 when there is no such event type.
func (s *Server) patchEventType(name string, body []byte) response {
	var p eventTypePatch
	if err := json.Unmarshal(body, &p); err != nil {
		return decodeErrorResponse(err)
	}
	if errs := p.check(); len(errs) > 0 {
		return validationResponse(errs)
	}
	now := time.Now().UTC()
	s.mu.Lock()
	et := s.st.eventTypes[name]
	if et == nil {
		s.mu.Unlock()
		return respNotFound
	}
	p.apply(et, now)
	out := *et
	s.mu.Unlock()
	return jsonResponse(http.StatusOK, out)
}

// deleteEventType serves DELETE /api/v1/event-type/{name}[?expunge=true]: 204 after
// archiving the event type (again, if it already was), or forgetting it with expunge;
// 404 when there is no such event type.
func (s *Server) deleteEventType(name string, q url.Values) response {
	expunge, failure, ok := boolParam(q, "expunge")
	if !ok {
		return failure
	}
	now := time.Now().UTC()
	s.mu.Lock()
	defer s.mu.Unlock()
	et := s.st.eventTypes[name]
	switch {
	case et == nil:
		return respNotFound
	case expunge:
		s.st.expungeEventType(name)
	default:
		et.Archived, et.UpdatedAt = true, now
	}
	return respNoContent
}

// listEventTypes serves GET /api/v1/event-type: event types by name, archived ones
// only with include_archived=true, schemas only with with_content=true.
func (s *Server) listEventTypes(q url.Values) response {
	p, failure, ok := parseListParams(q, nameRule)
	if !ok {
		return failure
	}
	includeArchived, failure, ok := boolParam(q, "include_archived")
	if !ok {
		return failure
	}
	withContent, failure, ok := boolParam(q, "with_content")
	if !ok {
		return failure
	}
	s.mu.Lock()
	all := make([]eventTypeOut, 0, len(s.st.eventTypeOrder))
	for _, et := range s.st.eventTypeOrder {
		if includeArchived || !et.Archived {
			all = append(all, *et)
		}
	}
	s.mu.Unlock()
	slices.SortFunc(all, func(a, b eventTypeOut) int { return strings.Compare(a.Name, b.Name) })
	if !withContent {
		for i := range all {
			all[i].Schemas = nil
		}
	}
	return jsonResponse(http.StatusOK, page(all, func(et eventTypeOut) string { return et.Name }, p))
}

// eventTypeOut returns a copy of the stored event type named name.
func (s *Server) eventTypeOut(name string) (eventTypeOut, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	et := s.st.eventTypes[name]
	if et == nil {
		return eventTypeOut{}, false
	}
	return *et, true
}

// check validates the fields EventTypeIn and EventTypeUpdate share.
func (in *eventTypeIn) check(errs []fieldError) []fieldError {
	if in.Description == nil {
		errs = append(errs, invalid("field required", "description"))
	} else {
		errs = checkNoControlChars(errs, *in.Description, "description")
	}
	if in.GroupName != nil {
		errs = checkName(errs, *in.GroupName, "groupName")
	}
	if in.FeatureFlags != nil {
		errs = featureFlagsRule.check(errs, in.FeatureFlags, "featureFlags")
	}
	return checkSchemas(errs, in.Schemas)
}

// apply overwrites every field of et but its name and creation time.
func (in *eventTypeIn) apply(et *eventTypeOut, now time.Time) {
	et.Archived = in.Archived != nil && *in.Archived
	et.Deprecated = in.Deprecated != nil && *in.Deprecated
	et.Description = *in.Description
	et.FeatureFlags = in.FeatureFlags
	et.GroupName = in.GroupName
	et.Schemas = storedSchemas(in.Schemas)
	et.UpdatedAt = now
}

func (p *eventTypePatch) check() []fieldError {
	var errs []fieldError
	for _, f := range []struct {
		null bool
		name string
	}{{p.Archived.null, "archived"}, {p.Deprecated.null, "deprecated"}, {p.Description.null, "description"}} {
		if f.null {
			errs = append(errs, invalid("field may not be null", f.name))
		}
	}
	if p.Description.set && !p.Description.null {
		errs = checkNoControlChars(errs, p.Description.v, "description")
	}
	if p.GroupName.set && !p.GroupName.null {
		errs = checkName(errs, p.GroupName.v, "groupName")
	}
	if p.FeatureFlags.set && !p.FeatureFlags.null {
		errs = featureFlagsRule.check(errs, p.FeatureFlags.v, "featureFlags")
	}
	if p.Schemas.set && !p.Schemas.null {
		errs = checkSchemas(errs, p.Schemas.v)
	}
	return errs
}

// apply changes the fields present in p; null clears a nullable field.
func (p *eventTypePatch) apply(et *eventTypeOut, now time.Time) {
	if p.Archived.set {
		et.Archived = p.Archived.v
	}
	if p.Deprecated.set {
		et.Deprecated = p.Deprecated.v
	}
	if p.Description.set {
		et.Description = p.Description.v
	}
	if p.FeatureFlags.set {
		et.FeatureFlags = p.FeatureFlags.v // nil when null
	}
	if p.GroupName.set {
		et.GroupName = nil
		if !p.GroupName.null {
			g := p.GroupName.v
			et.GroupName = &g
		}
	}
	if p.Schemas.set {
		et.Schemas = storedSchemas(p.Schemas.v)
	}
	et.UpdatedAt = now
}

// checkSchemas validates a present schemas value: null, or an object mapping each
// version to a JSON Schema, which is an object or a boolean (draft 7). The schemas
// themselves are not compiled.
func checkSchemas(errs []fieldError, raw json.RawMessage) []fieldError {
	if len(raw) == 0 || string(raw) == "null" {
		return errs
	}
	var versions map[string]json.RawMessage
	if !isJSONObject(raw) || json.Unmarshal(raw, &versions) != nil {
		return append(errs, invalid("schemas must be a JSON object", "schemas"))
	}
	for _, v := range slices.Sorted(maps.Keys(versions)) {
		if s := versions[v]; !isJSONObject(s) && string(s) != "true" && string(s) != "false" {
			errs = append(errs, invalid("a JSON Schema must be an object or a boolean", "schemas", v))
		}
	}
	return errs
}

// storedSchemas is how schemas are kept: nil for missing or null, compacted JSON otherwise.
func storedSchemas(raw json.RawMessage) json.RawMessage {
	if len(raw) == 0 || string(raw) == "null" {
		return nil
	}
	return compactJSON(raw)
}
