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

func deref(p *string) string {
	if p == nil {
		return ""
	}
	return *p
}
