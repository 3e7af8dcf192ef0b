package svixtest

import (
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
)

const (
	defaultListLimit = 50
	maxListLimit     = 250
)

// listParams are the pagination parameters of Svix's list routes.
type listParams struct {
	limit    int
	iterator string // "" for the first page
	prev     bool   // the iterator was "-key": the page before it
	desc     bool   // order=descending
}

// listResponse mirrors Svix's ListResponse_T_: iterator is always present (null for
// an empty page), prevIterator only when the page has items.
type listResponse[T any] struct {
	Data         []T     `json:"data"`
	Done         bool    `json:"done"`
	Iterator     *string `json:"iterator"`
	PrevIterator *string `json:"prevIterator,omitempty"`
}

// parseListParams reads limit (default 50, 1 to 250), iterator (a key satisfying
// rule, "-" in front for the previous page) and order (ascending by default). An
// unparsable value is a 400, as Svix's query extractor answers; an out-of-range one
// is a 422 at ["query", name].
func parseListParams(q url.Values, rule textRule) (p listParams, failure response, ok bool) {
	p.limit = defaultListLimit
	if v := q.Get("limit"); q.Has("limit") {
		n, err := strconv.ParseUint(v, 10, 64)
		switch {
		case err != nil:
			return p, badQuery("limit", "invalid digit found in string"), false
		case n > maxListLimit:
			return p, validationResponse([]fieldError{invalidIn("query", "Given limit must not exceed 250", "limit")}), false
		case n < 1:
			return p, validationResponse([]fieldError{invalidIn("query", "ensure this value is greater than or equal to 1", "limit")}), false
		}
		p.limit = int(n)
	}
	if q.Has("iterator") {
		it, prev := strings.CutPrefix(q.Get("iterator"), "-")
		if msg := rule.problem(it); msg != "" {
			return p, validationResponse([]fieldError{invalidIn("query", msg, "iterator")}), false
		}
		p.iterator, p.prev = it, prev
	}
	switch v := q.Get("order"); v {
	case "", "ascending":
	case "descending":
		p.desc = true
	default:
		return p, badQuery("order", "unknown variant `"+v+"`, expected `ascending` or `descending`"), false
	}
	return p, response{}, true
}

// boolParam reads an optional "true"/"false" query parameter (false when absent);
// anything else is a 400.
func boolParam(q url.Values, name string) (v bool, failure response, ok bool) {
	switch s := q.Get(name); {
	case !q.Has(name) || s == "false":
		return false, response{}, true
	case s == "true":
		return true, response{}, true
	}
	return false, badQuery(name, "provided string was not `true` or `false`"), false
}

func badQuery(name, msg string) response {
	return errorResponse(http.StatusBadRequest, "bad_request", "Failed to deserialize query string: "+name+": "+msg)
}

// page selects one page of items, which must be sorted ascending by key, the way
// svix-server's apply_pagination and list_response do: after the iterator in the
// requested order, or before it for a "-" iterator; done means nothing is left in
// that direction.
func page[T any](items []T, key func(T) string, p listParams) listResponse[T] {
	scanAscending := !p.desc
	if p.iterator != "" {
		scanAscending = p.prev == p.desc
	}
	data := make([]T, 0, min(p.limit+1, len(items)))
	for i := range items {
		it := items[i]
		if !scanAscending {
			it = items[len(items)-1-i]
		}
		if k := key(it); p.iterator != "" && (scanAscending && k <= p.iterator || !scanAscending && k >= p.iterator) {
			continue
		}
		if data = append(data, it); len(data) > p.limit {
			break
		}
	}
	res := listResponse[T]{Done: len(data) <= p.limit}
	if p.prev {
		slices.Reverse(data)
		data = data[max(len(data)-p.limit, 0):]
	} else {
		data = data[:min(len(data), p.limit)]
	}
	res.Data = data
	if len(data) > 0 {
		first, last := "-"+key(data[0]), key(data[len(data)-1])
		res.PrevIterator, res.Iterator = &first, &last
	}
	return res
}
