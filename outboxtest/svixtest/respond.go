package svixtest

import (
	"encoding/json"
	"net/http"
	"strconv"
)

// response is a fully rendered JSON answer; it is what the idempotency cache stores
// and replays byte for byte.
type response struct {
	status int
	body   []byte
}

func (r response) write(w http.ResponseWriter) {
	if r.status == http.StatusNoContent {
		w.WriteHeader(r.status)
		return
	}
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Content-Length", strconv.Itoa(len(r.body)))
	w.WriteHeader(r.status)
	_, _ = w.Write(r.body)
}

func (r response) ok() bool { return r.status >= 200 && r.status <= 299 }

// jsonResponse renders v; the fake only renders its own types, so Marshal cannot fail.
func jsonResponse(status int, v any) response {
	b, err := json.Marshal(v)
	if err != nil {
		return errorResponse(http.StatusInternalServerError, "internal", err.Error())
	}
	return response{status: status, body: b}
}

// errorBody is Svix's shape for non-validation 4xx errors.
type errorBody struct {
	Code   string `json:"code"`
	Detail string `json:"detail"`
}

func errorResponse(status int, code, detail string) response {
	b, _ := json.Marshal(errorBody{Code: code, Detail: detail})
	return response{status: status, body: b}
}

// fieldError is one entry of a 422 detail list.
type fieldError struct {
	Loc  []string `json:"loc"`
	Msg  string   `json:"msg"`
	Type string   `json:"type"`
}

// invalid is a validation error in the request body.
func invalid(msg string, loc ...string) fieldError { return invalidIn("body", msg, loc...) }

// invalidIn is a validation error in part ("body", "query" or "path") of the request.
func invalidIn(part, msg string, loc ...string) fieldError {
	return fieldError{Loc: append([]string{part}, loc...), Msg: msg, Type: "value_error"}
}

// validationResponse is Svix's 422: {"detail":[{"loc":[...],"msg":...,"type":"value_error"}]}.
func validationResponse(errs []fieldError) response {
	return jsonResponse(http.StatusUnprocessableEntity, struct {
		Detail []fieldError `json:"detail"`
	}{errs})
}

var (
	respUnauthorized    = errorResponse(http.StatusUnauthorized, "authentication_failed", "Invalid token")
	respPayloadTooLarge = errorResponse(http.StatusRequestEntityTooLarge, "payload_too_large", "Payload too large")
	respConflict        = errorResponse(http.StatusConflict, "conflict", "A conflict has occurred")
	respEventTypeExists = errorResponse(http.StatusConflict, "event_type_exists", "An event_type with this name already exists")
	respNotFound        = errorResponse(http.StatusNotFound, "not_found", "Entity not found")
	respNoContent       = response{status: http.StatusNoContent}
	respAppNotFound     = errorResponse(http.StatusNotFound, "not_found", "Application not found")
	respMsgNotFound     = errorResponse(http.StatusNotFound, "not_found", "Message not found")
	respRouteNotFound   = errorResponse(http.StatusNotFound, "not_found", "Route not found")
)

// statusResponse is the Svix-shaped answer for an arbitrary status (used by FaultStatus):
// 5xx => {}, 4xx => {"code","detail"} (422 => a validation list).
func statusResponse(status int) response {
	switch status {
	case http.StatusBadRequest:
		return errorResponse(status, "bad_request", "Bad request")
	case http.StatusUnauthorized:
		return respUnauthorized
	case http.StatusForbidden:
		return errorResponse(status, "forbidden", "Insufficient access for the given operation")
	case http.StatusNotFound:
		return respNotFound
	case http.StatusConflict:
		return respConflict
	case http.StatusRequestEntityTooLarge:
		return respPayloadTooLarge
	case http.StatusUnprocessableEntity:
		return validationResponse([]fieldError{{Loc: []string{"body"}, Msg: "injected validation error", Type: "value_error"}})
	case http.StatusTooManyRequests:
		return errorResponse(status, "rate_limited", "Too many requests")
	}
	if status >= 400 && status <= 499 {
		return errorResponse(status, "http_error", http.StatusText(status))
	}
	return response{status: status, body: []byte("{}")}
}
