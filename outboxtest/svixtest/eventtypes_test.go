package svixtest

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	svix "github.com/svix/svix-webhooks/go"
	"github.com/svix/svix-webhooks/go/models"
	"github.com/svix/svix-webhooks/go/utils"
)

// rawDo sends a request without the SDK, to send bodies the SDK cannot produce.
func rawDo(t *testing.T, s *Server, method, path, body string) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, s.URL()+path, strings.NewReader(body))
	require.NoError(t, err)
	req.Header.Set("Authorization", "Bearer "+s.Token())
	req.Header.Set("Content-Type", "application/json")
	res, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	require.NoError(t, err)
	return res, b
}

// lastStatus is the status the fake gave the most recent request.
func lastStatus(t *testing.T, s *Server) int {
	t.Helper()
	reqs := s.Requests()
	require.NotEmpty(t, reqs)
	return reqs[len(reqs)-1].Status
}

func invoiceSchemas() *map[string]any {
	return &map[string]any{"1": map[string]any{
		"type":       "object",
		"title":      "Invoice Paid Event",
		"properties": map[string]any{"invoiceId": map[string]any{"type": "string"}},
		"required":   []any{"invoiceId"},
	}}
}

// createTypes creates event types with description "about <name>".
func createTypes(t *testing.T, c *svix.Svix, names ...string) {
	t.Helper()
	for _, n := range names {
		_, err := c.EventType.Create(context.Background(), models.EventTypeIn{Name: n, Description: "about " + n}, nil)
		require.NoError(t, err, n)
	}
}

func listNames(l *models.ListResponseEventTypeOut) []string {
	var out []string
	for _, et := range l.Data {
		out = append(out, et.Name)
	}
	return out
}

func TestEventTypeCreateAndGetEchoEveryField(t *testing.T) {
	t.Parallel()
	s := NewT(t, Options{})
	c := s.Client(t)
	ctx := context.Background()

	in := models.EventTypeIn{
		Name: "invoice.paid", Description: "An invoice was paid", Schemas: invoiceSchemas(),
		GroupName: ptr("invoice"), FeatureFlags: []string{"beta", "cool-new-feature"}, Deprecated: ptr(true),
	}
	out, err := c.EventType.Create(ctx, in, nil)
	require.NoError(t, err)
	require.Equal(t, http.StatusCreated, lastStatus(t, s))
	require.Equal(t, "invoice.paid", out.Name)
	require.Equal(t, "An invoice was paid", out.Description)
	require.Equal(t, "invoice", *out.GroupName)
	require.Equal(t, []string{"beta", "cool-new-feature"}, out.FeatureFlags)
	require.True(t, out.Deprecated)
	require.False(t, *out.Archived)
	require.Equal(t, map[string]any{"1": map[string]any{
		"type": "object", "title": "Invoice Paid Event",
		"properties": map[string]any{"invoiceId": map[string]any{"type": "string"}},
		"required":   []any{"invoiceId"},
	}}, *out.Schemas)
	require.WithinDuration(t, time.Now(), out.CreatedAt, 5*time.Second)
	require.Equal(t, out.CreatedAt, out.UpdatedAt)

	got, err := c.EventType.Get(ctx, "invoice.paid")
	require.NoError(t, err)
	require.Equal(t, out, got, "GET returns what POST answered, schemas included")

	snap, ok := s.EventType("invoice.paid")
	require.True(t, ok)
	require.Equal(t, EventType{
		Name: "invoice.paid", Description: "An invoice was paid", GroupName: "invoice",
		Schemas: *out.Schemas, FeatureFlags: []string{"beta", "cool-new-feature"}, Deprecated: true,
		CreatedAt: out.CreatedAt, UpdatedAt: out.UpdatedAt,
	}, snap)
	snap.Schemas["2"] = true // a snapshot is a copy
	again, _ := s.EventType("invoice.paid")
	require.NotContains(t, again.Schemas, "2")
	require.Equal(t, []string{"invoice.paid"}, s.EventTypes())
}

func TestEventTypeGetMissingIs404(t *testing.T) {
	t.Parallel()
	s := NewT(t, Options{})
	c := s.Client(t)

	_, err := c.EventType.Get(context.Background(), "nope")
	se := requireStatus(t, err, http.StatusNotFound)
	require.Equal(t, errBody{"not_found", "Entity not found"}, decodeErrBody(t, se))
	_, ok := s.EventType("nope")
	require.False(t, ok)
}

func TestEventTypeDuplicateCreateIs409(t *testing.T) {
	t.Parallel()
	s := NewT(t, Options{})
	c := s.Client(t)
	ctx := context.Background()
	createTypes(t, c, "user.signup")

	_, err := c.EventType.Create(ctx, models.EventTypeIn{Name: "user.signup", Description: "other"}, nil)
	se := requireStatus(t, err, http.StatusConflict)
	require.Equal(t, errBody{"event_type_exists", "An event_type with this name already exists"}, decodeErrBody(t, se))
	got, err := c.EventType.Get(ctx, "user.signup")
	require.NoError(t, err)
	require.Equal(t, "about user.signup", got.Description, "the existing event type is untouched")
}

func TestEventTypeCreateValidationIs422(t *testing.T) {
	t.Parallel()
	s := NewT(t, Options{})
	c := s.Client(t)
	ctx := context.Background()

	sdkCases := []struct {
		name string
		in   models.EventTypeIn
		loc  string
	}{
		{"colon in name", models.EventTypeIn{Name: "audit_log:created"}, "body.name"},
		{"empty name", models.EventTypeIn{Name: ""}, "body.name"},
		{"name over 256", models.EventTypeIn{Name: strings.Repeat("n", 257)}, "body.name"},
		{"control character in description", models.EventTypeIn{Name: "a.b", Description: "bell\x07"}, "body.description"},
		{"groupName with space", models.EventTypeIn{Name: "a.b", GroupName: ptr("my group")}, "body.groupName"},
		{"groupName over 256", models.EventTypeIn{Name: "a.b", GroupName: ptr(strings.Repeat("g", 257))}, "body.groupName"},
		{"duplicate feature flags", models.EventTypeIn{Name: "a.b", FeatureFlags: []string{"x", "x"}}, "body.featureFlags"},
		{"bad feature flag", models.EventTypeIn{Name: "a.b", FeatureFlags: []string{"ok", "not ok"}}, "body.featureFlags.1"},
		{"schema version not a schema", models.EventTypeIn{Name: "a.b", Schemas: &map[string]any{"1": 42}}, "body.schemas.1"},
	}
	for _, tc := range sdkCases {
		_, err := c.EventType.Create(ctx, tc.in, nil)
		require.Contains(t, locs(t, requireStatus(t, err, http.StatusUnprocessableEntity)), tc.loc, tc.name)
	}

	rawCases := []struct{ body, loc string }{
		{`{"description":"d"}`, "body.name"},
		{`{"name":"a.b"}`, "body.description"},
		{`{"name":"a.b","description":"d","featureFlags":[]}`, "body.featureFlags"},
		{`{"name":"a.b","description":"d","schemas":[1]}`, "body.schemas"},
		{`{"name":"a.b","description":"d","archived":"yes"}`, "body"},
	}
	for _, tc := range rawCases {
		res, b := rawPost(t, s, "/api/v1/event-type", "", tc.body)
		require.Equal(t, http.StatusUnprocessableEntity, res.StatusCode, tc.body)
		var v validationBody
		require.NoError(t, json.Unmarshal(b, &v))
		var got []string
		for _, d := range v.Detail {
			got = append(got, strings.Join(d.Loc, "."))
		}
		require.Contains(t, got, tc.loc, tc.body)
	}
	require.Empty(t, s.EventTypes())

	_, err := c.EventType.Create(ctx, models.EventTypeIn{Name: "A-z_0.9", Description: "", GroupName: ptr("g.1"),
		Schemas: &map[string]any{"1": true, "2": map[string]any{}}}, nil)
	require.NoError(t, err, "the whole name alphabet, an empty description and boolean schemas are valid")
}

func TestEventTypeListPagesThroughEverythingByName(t *testing.T) {
	t.Parallel()
	s := NewT(t, Options{})
	c := s.Client(t)
	ctx := context.Background()
	createTypes(t, c, "g", "c", "a", "f", "b", "e", "d")

	var names []string
	var dones []bool
	var iter *string
	for range 10 {
		l, err := c.EventType.List(ctx, &svix.EventTypeListOptions{Limit: ptr[uint64](3), Iterator: iter})
		require.NoError(t, err)
		names = append(names, listNames(l)...)
		dones = append(dones, l.Done)
		if l.Done {
			break
		}
		require.NotNil(t, l.Iterator)
		require.Equal(t, l.Data[len(l.Data)-1].Name, *l.Iterator, "the iterator is the last name of the page")
		iter = l.Iterator
	}
	require.Equal(t, []string{"a", "b", "c", "d", "e", "f", "g"}, names, "every name once, by name")
	require.Equal(t, []bool{false, false, true}, dones)

	// An iterator past the end is an empty, done page.
	l, err := c.EventType.List(ctx, &svix.EventTypeListOptions{Iterator: ptr("g")})
	require.NoError(t, err)
	require.Empty(t, l.Data)
	require.NotNil(t, l.Data, "data is [] rather than null")
	require.True(t, l.Done)
	require.Nil(t, l.Iterator)

	// Without options: everything (default limit 50) in one done page.
	l, err = c.EventType.List(ctx, nil)
	require.NoError(t, err)
	require.Len(t, l.Data, 7)
	require.True(t, l.Done)
	require.Equal(t, "-a", *l.PrevIterator)
}

func TestEventTypeListPrevIteratorAndDescendingOrder(t *testing.T) {
	t.Parallel()
	s := NewT(t, Options{})
	c := s.Client(t)
	ctx := context.Background()
	createTypes(t, c, "a", "b", "c", "d", "e")

	second, err := c.EventType.List(ctx, &svix.EventTypeListOptions{Limit: ptr[uint64](2), Iterator: ptr("b")})
	require.NoError(t, err)
	require.Equal(t, []string{"c", "d"}, listNames(second))
	require.Equal(t, "-c", *second.PrevIterator)
	back, err := c.EventType.List(ctx, &svix.EventTypeListOptions{Limit: ptr[uint64](2), Iterator: second.PrevIterator})
	require.NoError(t, err)
	require.Equal(t, []string{"a", "b"}, listNames(back), "the prevIterator leads to the page before")
	require.True(t, back.Done, "nothing before a")

	desc := models.ORDERING_DESCENDING
	l, err := c.EventType.List(ctx, &svix.EventTypeListOptions{Limit: ptr[uint64](2), Order: &desc})
	require.NoError(t, err)
	require.Equal(t, []string{"e", "d"}, listNames(l))
	l, err = c.EventType.List(ctx, &svix.EventTypeListOptions{Limit: ptr[uint64](2), Order: &desc, Iterator: l.Iterator})
	require.NoError(t, err)
	require.Equal(t, []string{"c", "b"}, listNames(l))
	require.False(t, l.Done)
}

func TestEventTypeListBadParamsAreRejected(t *testing.T) {
	t.Parallel()
	s := NewT(t, Options{})
	c := s.Client(t)
	ctx := context.Background()

	_, err := c.EventType.List(ctx, &svix.EventTypeListOptions{Limit: ptr[uint64](251)})
	require.Equal(t, []string{"query.limit"}, locs(t, requireStatus(t, err, http.StatusUnprocessableEntity)))
	_, err = c.EventType.List(ctx, &svix.EventTypeListOptions{Limit: ptr[uint64](0)})
	require.Equal(t, []string{"query.limit"}, locs(t, requireStatus(t, err, http.StatusUnprocessableEntity)))
	_, err = c.EventType.List(ctx, &svix.EventTypeListOptions{Iterator: ptr("bad:name")})
	require.Equal(t, []string{"query.iterator"}, locs(t, requireStatus(t, err, http.StatusUnprocessableEntity)))
	_, err = c.EventType.List(ctx, &svix.EventTypeListOptions{Limit: ptr[uint64](250)})
	require.NoError(t, err, "250 is the maximum")
	for _, q := range []string{"limit=ten", "include_archived=yes", "with_content=1", "order=sideways"} {
		res, b := rawDo(t, s, http.MethodGet, "/api/v1/event-type?"+q, "")
		require.Equal(t, http.StatusBadRequest, res.StatusCode, q)
		require.Contains(t, string(b), `"code":"bad_request"`, q)
	}
}

func TestEventTypeListIncludeArchived(t *testing.T) {
	t.Parallel()
	s := NewT(t, Options{})
	c := s.Client(t)
	ctx := context.Background()
	createTypes(t, c, "a", "b", "c")
	require.NoError(t, c.EventType.Delete(ctx, "b", nil))

	l, err := c.EventType.List(ctx, nil)
	require.NoError(t, err)
	require.Equal(t, []string{"a", "c"}, listNames(l), "archived ones are omitted by default")
	l, err = c.EventType.List(ctx, &svix.EventTypeListOptions{IncludeArchived: ptr(true)})
	require.NoError(t, err)
	require.Equal(t, []string{"a", "b", "c"}, listNames(l))
	require.True(t, *l.Data[1].Archived)
	require.False(t, *l.Data[0].Archived)
	l, err = c.EventType.List(ctx, &svix.EventTypeListOptions{IncludeArchived: ptr(false)})
	require.NoError(t, err)
	require.Equal(t, []string{"a", "c"}, listNames(l))
}

func TestEventTypeListWithContent(t *testing.T) {
	t.Parallel()
	s := NewT(t, Options{})
	c := s.Client(t)
	ctx := context.Background()
	_, err := c.EventType.Create(ctx, models.EventTypeIn{Name: "invoice.paid", Description: "d", Schemas: invoiceSchemas()}, nil)
	require.NoError(t, err)

	l, err := c.EventType.List(ctx, nil)
	require.NoError(t, err)
	require.Nil(t, l.Data[0].Schemas, "with_content defaults to false")
	require.Equal(t, "d", l.Data[0].Description, "the rest of the item is there")
	l, err = c.EventType.List(ctx, &svix.EventTypeListOptions{WithContent: ptr(false)})
	require.NoError(t, err)
	require.Nil(t, l.Data[0].Schemas)
	l, err = c.EventType.List(ctx, &svix.EventTypeListOptions{WithContent: ptr(true)})
	require.NoError(t, err)
	require.Equal(t, *invoiceSchemas(), jsonRoundTrip(t, *l.Data[0].Schemas))
}

// jsonRoundTrip normalises v the way a JSON decode does (numbers become float64...).
func jsonRoundTrip(t *testing.T, v map[string]any) map[string]any {
	t.Helper()
	b, err := json.Marshal(v)
	require.NoError(t, err)
	var out map[string]any
	require.NoError(t, json.Unmarshal(b, &out))
	return out
}

func TestEventTypeUpdateIs201WhenCreatingAnd200WhenReplacing(t *testing.T) {
	t.Parallel()
	s := NewT(t, Options{})
	c := s.Client(t)
	ctx := context.Background()

	created, err := c.EventType.Update(ctx, "user.signup", models.EventTypeUpdate{
		Description: "v1", GroupName: ptr("user"), Schemas: invoiceSchemas(), FeatureFlags: []string{"beta"},
	})
	require.NoError(t, err)
	require.Equal(t, http.StatusCreated, lastStatus(t, s))
	require.Equal(t, "user.signup", created.Name)
	require.Equal(t, "user", *created.GroupName)
	require.Equal(t, []string{"user.signup"}, s.EventTypes())

	updated, err := c.EventType.Update(ctx, "user.signup", models.EventTypeUpdate{Description: "v2", Deprecated: ptr(true)})
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, lastStatus(t, s))
	require.Equal(t, "v2", updated.Description)
	require.True(t, updated.Deprecated)
	require.Nil(t, updated.GroupName, "PUT replaces: a missing groupName is cleared")
	require.Nil(t, updated.Schemas, "and so are missing schemas")
	require.Nil(t, updated.FeatureFlags, "and feature flags")
	require.Equal(t, created.CreatedAt, updated.CreatedAt)
	require.True(t, updated.UpdatedAt.After(created.UpdatedAt), "updatedAt moves on")

	snap, _ := s.EventType("user.signup")
	require.Equal(t, EventType{Name: "user.signup", Description: "v2", Deprecated: true,
		CreatedAt: created.CreatedAt, UpdatedAt: updated.UpdatedAt}, snap)

	// PUT on an archived event type without "archived" unarchives it (archived defaults to false).
	require.NoError(t, c.EventType.Delete(ctx, "user.signup", nil))
	require.Empty(t, s.EventTypes())
	again, err := c.EventType.Update(ctx, "user.signup", models.EventTypeUpdate{Description: "v3"})
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, lastStatus(t, s))
	require.False(t, *again.Archived)
	require.Equal(t, []string{"user.signup"}, s.EventTypes())

	_, err = c.EventType.Update(ctx, "bad name", models.EventTypeUpdate{Description: "d"})
	require.Equal(t, []string{"path.event_type_name"}, locs(t, requireStatus(t, err, http.StatusUnprocessableEntity)))
	res, _ := rawDo(t, s, http.MethodPut, "/api/v1/event-type/x.y", `{"groupName":"g"}`)
	require.Equal(t, http.StatusUnprocessableEntity, res.StatusCode, "description is required")
	_, ok := s.EventType("x.y")
	require.False(t, ok)
}

func TestEventTypePatchChangesOnlyPresentFields(t *testing.T) {
	t.Parallel()
	s := NewT(t, Options{})
	c := s.Client(t)
	ctx := context.Background()
	created, err := c.EventType.Create(ctx, models.EventTypeIn{Name: "order.created", Description: "v1",
		GroupName: ptr("order"), Schemas: invoiceSchemas(), FeatureFlags: []string{"beta"}}, nil)
	require.NoError(t, err)

	p, err := c.EventType.Patch(ctx, "order.created", models.EventTypePatch{Description: ptr("v2")})
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, lastStatus(t, s))
	require.Equal(t, "v2", p.Description)
	require.Equal(t, "order", *p.GroupName, "absent fields are kept")
	require.Equal(t, *created.Schemas, *p.Schemas)
	require.Equal(t, []string{"beta"}, p.FeatureFlags)
	require.True(t, p.UpdatedAt.After(created.UpdatedAt))

	p, err = c.EventType.Patch(ctx, "order.created", models.EventTypePatch{
		GroupName:    utils.NewNullableFromPtr[string](nil),
		Schemas:      utils.NewNullableFromPtr[map[string]any](nil),
		FeatureFlags: utils.NewNullable([]string{"gamma"}),
		Deprecated:   ptr(true),
	})
	require.NoError(t, err)
	require.Nil(t, p.GroupName, "null clears a nullable field")
	require.Nil(t, p.Schemas)
	require.Equal(t, []string{"gamma"}, p.FeatureFlags)
	require.True(t, p.Deprecated)
	require.Equal(t, "v2", p.Description)

	p, err = c.EventType.Patch(ctx, "order.created", models.EventTypePatch{Archived: ptr(true)})
	require.NoError(t, err)
	require.True(t, *p.Archived)
	require.Empty(t, s.EventTypes(), "PATCH can archive")

	_, err = c.EventType.Patch(ctx, "ghost", models.EventTypePatch{Description: ptr("x")})
	se := requireStatus(t, err, http.StatusNotFound)
	require.Equal(t, errBody{"not_found", "Entity not found"}, decodeErrBody(t, se))

	res, b := rawDo(t, s, http.MethodPatch, "/api/v1/event-type/order.created", `{"description":null,"groupName":"bad group"}`)
	require.Equal(t, http.StatusUnprocessableEntity, res.StatusCode)
	require.Contains(t, string(b), `"loc":["body","description"]`, "description is not nullable")
	require.Contains(t, string(b), `"loc":["body","groupName"]`)
	snap, _ := s.EventType("order.created")
	require.Equal(t, "v2", snap.Description, "a rejected PATCH changes nothing")
}

func TestEventTypeDeleteArchives(t *testing.T) {
	t.Parallel()
	s := NewT(t, Options{})
	c := s.Client(t)
	ctx := context.Background()
	createTypes(t, c, "a.one", "a.two")

	require.NoError(t, c.EventType.Delete(ctx, "a.one", nil))
	require.Equal(t, http.StatusNoContent, lastStatus(t, s))
	require.Equal(t, []string{"a.two"}, s.EventTypes())
	l, err := c.EventType.List(ctx, nil)
	require.NoError(t, err)
	require.Equal(t, []string{"a.two"}, listNames(l))
	l, err = c.EventType.List(ctx, &svix.EventTypeListOptions{IncludeArchived: ptr(true)})
	require.NoError(t, err)
	require.Equal(t, []string{"a.one", "a.two"}, listNames(l))
	got, err := c.EventType.Get(ctx, "a.one")
	require.NoError(t, err, "an archived event type can still be read")
	require.True(t, *got.Archived)
	snap, ok := s.EventType("a.one")
	require.True(t, ok)
	require.True(t, snap.Archived)

	require.NoError(t, c.EventType.Delete(ctx, "a.one", &svix.EventTypeDeleteOptions{Expunge: ptr(false)}),
		"archiving again is a 204 too")
	err = c.EventType.Delete(ctx, "ghost", nil)
	se := requireStatus(t, err, http.StatusNotFound)
	require.Equal(t, errBody{"not_found", "Entity not found"}, decodeErrBody(t, se))
}

func TestEventTypeDeleteExpungeRemoves(t *testing.T) {
	t.Parallel()
	s := NewT(t, Options{})
	c := s.Client(t)
	ctx := context.Background()
	createTypes(t, c, "a.one", "a.two")

	require.NoError(t, c.EventType.Delete(ctx, "a.one", &svix.EventTypeDeleteOptions{Expunge: ptr(true)}))
	require.Equal(t, http.StatusNoContent, lastStatus(t, s))
	_, err := c.EventType.Get(ctx, "a.one")
	requireStatus(t, err, http.StatusNotFound)
	_, ok := s.EventType("a.one")
	require.False(t, ok)
	l, err := c.EventType.List(ctx, &svix.EventTypeListOptions{IncludeArchived: ptr(true)})
	require.NoError(t, err)
	require.Equal(t, []string{"a.two"}, listNames(l))
	err = c.EventType.Delete(ctx, "a.one", &svix.EventTypeDeleteOptions{Expunge: ptr(true)})
	requireStatus(t, err, http.StatusNotFound)

	// An archived one can be expunged too; a re-created one is new and comes last.
	require.NoError(t, c.EventType.Delete(ctx, "a.two", nil))
	require.NoError(t, c.EventType.Delete(ctx, "a.two", &svix.EventTypeDeleteOptions{Expunge: ptr(true)}))
	createTypes(t, c, "a.three", "a.one")
	require.Equal(t, []string{"a.three", "a.one"}, s.EventTypes())
}

func TestEventTypeCreateUnarchivesWithoutPreservingContent(t *testing.T) {
	t.Parallel()
	s := NewT(t, Options{})
	c := s.Client(t)
	ctx := context.Background()
	first, err := c.EventType.Create(ctx, models.EventTypeIn{Name: "a.first", Description: "old", Schemas: invoiceSchemas(),
		GroupName: ptr("g")}, nil)
	require.NoError(t, err)
	createTypes(t, c, "b.second")
	require.NoError(t, c.EventType.Delete(ctx, "a.first", nil))
	require.Equal(t, []string{"b.second"}, s.EventTypes())

	back, err := c.EventType.Create(ctx, models.EventTypeIn{Name: "a.first", Description: "new"}, nil)
	require.NoError(t, err, "POST on an archived event type is not a conflict")
	require.Equal(t, http.StatusCreated, lastStatus(t, s))
	require.False(t, *back.Archived)
	require.Equal(t, "new", back.Description)
	require.Nil(t, back.Schemas, "the schemas are not preserved")
	require.Nil(t, back.GroupName)
	require.Equal(t, first.CreatedAt, back.CreatedAt)
	require.True(t, back.UpdatedAt.After(first.UpdatedAt))
	require.Equal(t, []string{"a.first", "b.second"}, s.EventTypes(), "it keeps its place in creation order")

	_, err = c.EventType.Create(ctx, models.EventTypeIn{Name: "a.first", Description: "again"}, nil)
	requireStatus(t, err, http.StatusConflict)
}

func TestEventTypeRoutesRequireTheToken(t *testing.T) {
	t.Parallel()
	s := NewT(t, Options{})
	createTypes(t, s.Client(t), "a.b")
	bad := newSDK(t, s, "sk_wrong")
	ctx := context.Background()

	_, err := bad.EventType.List(ctx, nil)
	requireStatus(t, err, http.StatusUnauthorized)
	_, err = bad.EventType.Get(ctx, "a.b")
	requireStatus(t, err, http.StatusUnauthorized)
	_, err = bad.EventType.Update(ctx, "a.b", models.EventTypeUpdate{Description: "x"})
	requireStatus(t, err, http.StatusUnauthorized)
	_, err = bad.EventType.Patch(ctx, "a.b", models.EventTypePatch{Description: ptr("x")})
	requireStatus(t, err, http.StatusUnauthorized)
	err = bad.EventType.Delete(ctx, "a.b", nil)
	requireStatus(t, err, http.StatusUnauthorized)
	snap, _ := s.EventType("a.b")
	require.Equal(t, "about a.b", snap.Description)
	require.False(t, snap.Archived)
}

func TestEventTypeUnknownSubroutesAre404(t *testing.T) {
	t.Parallel()
	s := NewT(t, Options{})
	for _, r := range []struct{ method, path string }{
		{http.MethodPost, "/api/v1/event-type/import/openapi"},
		{http.MethodPost, "/api/v1/event-type/a.b"},
		{http.MethodDelete, "/api/v1/event-type"},
	} {
		res, b := rawDo(t, s, r.method, r.path, `{}`)
		require.Equal(t, http.StatusNotFound, res.StatusCode, r.path)
		require.JSONEq(t, `{"code":"not_found","detail":"Route not found"}`, string(b))
	}
}

func TestResetForgetsArchivedEventTypes(t *testing.T) {
	t.Parallel()
	s := NewT(t, Options{})
	c := s.Client(t)
	createTypes(t, c, "a.b", "c.d")
	require.NoError(t, c.EventType.Delete(context.Background(), "c.d", nil))

	s.Reset()
	_, ok := s.EventType("c.d")
	require.False(t, ok)
	require.Empty(t, s.EventTypes())
	createTypes(t, c, "c.d") // a 201, not an unarchive of the forgotten one
	snap, _ := s.EventType("c.d")
	require.Equal(t, snap.CreatedAt, snap.UpdatedAt)
}

func TestMessageRecordsChannelsAndTags(t *testing.T) {
	t.Parallel()
	s := NewT(t, Options{AutoCreateApps: true})
	c := s.Client(t)
	ctx := context.Background()

	in := msgIn("order.created", "e1")
	in.Channels = []string{"project_123", "org:42", "eu-west.1"}
	in.Tags = []string{"my_tag", `a/b\c#d`}
	out, err := c.Message.Create(ctx, "orders", in, nil)
	require.NoError(t, err)
	require.Equal(t, in.Channels, out.Channels)
	require.Equal(t, in.Tags, out.Tags)

	msgs := s.MessagesFor("orders")
	require.Len(t, msgs, 1)
	require.Equal(t, []string{"project_123", "org:42", "eu-west.1"}, msgs[0].Channels)
	require.Equal(t, []string{"my_tag", `a/b\c#d`}, msgs[0].Tags)
	got, err := c.Message.Get(ctx, "orders", "e1", nil)
	require.NoError(t, err)
	require.Equal(t, in.Channels, got.Channels)
	require.Equal(t, in.Tags, got.Tags)

	_, err = c.Message.Create(ctx, "orders", msgIn("order.created", "e2"), nil)
	require.NoError(t, err)
	require.Nil(t, s.MessagesFor("orders")[1].Channels, "no channels recorded as nil")
	require.Nil(t, s.MessagesFor("orders")[1].Tags)
}

func TestMessageChannelAndTagValidationIs422(t *testing.T) {
	t.Parallel()
	s := NewT(t, Options{AutoCreateApps: true})
	c := s.Client(t)
	ctx := context.Background()

	many := func(n int) []string {
		out := make([]string, n)
		for i := range out {
			out[i] = fmt.Sprint("x", i)
		}
		return out
	}
	cases := []struct {
		name     string
		channels []string
		tags     []string
		loc      string
	}{
		{"channel with space", []string{"ok", "not ok"}, nil, "body.channels.1"},
		{"channel with slash", []string{"a/b"}, nil, "body.channels.0"},
		{"channel over 128", []string{strings.Repeat("c", 129)}, nil, "body.channels.0"},
		{"empty channel", []string{""}, nil, "body.channels.0"},
		{"duplicate channels", []string{"a", "b", "a"}, nil, "body.channels"},
		{"11 channels", many(11), nil, "body.channels"},
		{"tag with colon", nil, []string{"a:b"}, "body.tags.0"},
		{"tag over 128", nil, []string{"t", strings.Repeat("t", 129)}, "body.tags.1"},
		{"duplicate tags", nil, []string{"t", "t"}, "body.tags"},
		{"6 tags", nil, many(6), "body.tags"},
	}
	for _, tc := range cases {
		in := msgIn("a.b", "e1")
		in.Channels, in.Tags = tc.channels, tc.tags
		_, err := c.Message.Create(ctx, "a", in, nil)
		require.Equal(t, []string{tc.loc}, locs(t, requireStatus(t, err, http.StatusUnprocessableEntity)), tc.name)
	}
	res, b := rawPost(t, s, "/api/v1/app/a/msg", "", `{"eventType":"a.b","payload":{},"channels":[]}`)
	require.Equal(t, http.StatusUnprocessableEntity, res.StatusCode, "channels has at least 1 item")
	require.Contains(t, string(b), `"loc":["body","channels"]`)
	res, _ = rawPost(t, s, "/api/v1/app/a/msg", "", `{"eventType":"a.b","payload":{},"channels":null,"tags":[]}`)
	require.Equal(t, http.StatusAccepted, res.StatusCode, "null channels and empty tags are fine")
	require.Equal(t, 1, s.MessageCount())

	in := msgIn("a.b", "e2")
	in.Channels, in.Tags = many(10), many(5)
	_, err := c.Message.Create(ctx, "a", in, nil)
	require.NoError(t, err, "10 channels and 5 tags are the maximum")
}
