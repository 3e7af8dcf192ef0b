package svixtest

import (
	"encoding/json"
	"net/http"
	"time"
)

// applicationIn is the subset of Svix's ApplicationIn the fake understands.
type applicationIn struct {
	Metadata     map[string]string `json:"metadata"`
	Name         *string           `json:"name"`
	RateLimit    *uint16           `json:"rateLimit"`
	ThrottleRate *uint16           `json:"throttleRate"`
	UID          *string           `json:"uid"`
}

// applicationOut mirrors models.ApplicationOut.
type applicationOut struct {
	CreatedAt    time.Time         `json:"createdAt"`
	ID           string            `json:"id"`
	Metadata     map[string]string `json:"metadata"`
	Name         string            `json:"name"`
	RateLimit    *uint16           `json:"rateLimit,omitempty"`
	ThrottleRate *uint16           `json:"throttleRate,omitempty"`
	UID          *string           `json:"uid,omitempty"`
	UpdatedAt    time.Time         `json:"updatedAt"`
}

// eventTypeIn is the subset of Svix's EventTypeIn the fake understands.
type eventTypeIn struct {
	Archived     *bool           `json:"archived"`
	Deprecated   *bool           `json:"deprecated"`
	Description  string          `json:"description"`
	FeatureFlags []string        `json:"featureFlags"`
	GroupName    *string         `json:"groupName"`
	Name         *string         `json:"name"`
	Schemas      json.RawMessage `json:"schemas"`
}

// eventTypeOut mirrors models.EventTypeOut.
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

// createApp serves POST /api/v1/app[?get_if_exists=true].
func (s *Server) createApp(body []byte, getIfExists bool) response {
	var in applicationIn
	if err := json.Unmarshal(body, &in); err != nil {
		return decodeErrorResponse(err)
	}
	if errs := validateApplicationIn(&in); len(errs) > 0 {
		return validationResponse(errs)
	}
	out, status := s.findOrAddApp(&in, getIfExists)
	if status == http.StatusConflict {
		return respConflict
	}
	return jsonResponse(status, out)
}

// findOrAddApp returns the existing app with in.UID (200, or 409 unless getIfExists)
// or creates it (201).
func (s *Server) findOrAddApp(in *applicationIn, getIfExists bool) (applicationOut, int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if in.UID != nil {
		if a := s.st.appsByUID[*in.UID]; a != nil {
			if !getIfExists {
				return applicationOut{}, http.StatusConflict
			}
			return a.out, http.StatusOK
		}
	}
	return s.addAppLocked(in, in.UID).out, http.StatusCreated
}

// addAppLocked creates an application; s.mu must be held.
func (s *Server) addAppLocked(in *applicationIn, uid *string) *app {
	now := time.Now().UTC()
	metadata := map[string]string{}
	for k, v := range in.Metadata {
		metadata[k] = v
	}
	out := applicationOut{
		CreatedAt:    now,
		ID:           s.ids.next(appIDPrefix),
		Metadata:     metadata,
		Name:         deref(in.Name),
		RateLimit:    in.RateLimit,
		ThrottleRate: in.ThrottleRate,
		UpdatedAt:    now,
	}
	if uid != nil {
		u := *uid
		out.UID = &u
	}
	return s.st.addApp(out)
}

// getApp serves GET /api/v1/app/{idOrUid}.
func (s *Server) getApp(idOrUID string) response {
	s.mu.Lock()
	a := s.st.lookupApp(idOrUID)
	var out applicationOut
	if a != nil {
		out = a.out
	}
	s.mu.Unlock()
	if a == nil {
		return respAppNotFound
	}
	return jsonResponse(http.StatusOK, out)
}

func validateApplicationIn(in *applicationIn) []fieldError {
	var errs []fieldError
	if deref(in.Name) == "" {
		errs = append(errs, invalid("field required", "name"))
	}
	if in.UID != nil {
		errs = checkUID(errs, *in.UID, "uid")
	}
	return errs
}

// createEventType serves POST /api/v1/event-type.
func (s *Server) createEventType(body []byte) response {
	var in eventTypeIn
	if err := json.Unmarshal(body, &in); err != nil {
		return decodeErrorResponse(err)
	}
	name := deref(in.Name)
	if errs := checkName(nil, name, "name"); len(errs) > 0 {
		return validationResponse(errs)
	}
	if !s.addEventType(name) {
		return respConflict
	}
	now := time.Now().UTC()
	return jsonResponse(http.StatusCreated, eventTypeOut{
		Archived:     in.Archived != nil && *in.Archived,
		CreatedAt:    now,
		Deprecated:   in.Deprecated != nil && *in.Deprecated,
		Description:  in.Description,
		FeatureFlags: in.FeatureFlags,
		GroupName:    in.GroupName,
		Name:         name,
		Schemas:      in.Schemas,
		UpdatedAt:    now,
	})
}

// addEventType records name; false if it already exists.
func (s *Server) addEventType(name string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.st.eventTypes[name] {
		return false
	}
	s.st.eventTypes[name] = true
	s.st.eventTypeNames = append(s.st.eventTypeNames, name)
	return true
}

func deref(p *string) string {
	if p == nil {
		return ""
	}
	return *p
}
