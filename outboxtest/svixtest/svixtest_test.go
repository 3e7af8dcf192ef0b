package svixtest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/require"
	svix "github.com/svix/svix-webhooks/go"
	"github.com/svix/svix-webhooks/go/models"
)

// newSDK is a real SDK client for s with the SDK's retries disabled.
func newSDK(t *testing.T, s *Server, token string) *svix.Svix {
	t.Helper()
	u, err := url.Parse(s.URL())
	require.NoError(t, err)
	c, err := svix.New(token, &svix.SvixOptions{ServerUrl: u, RetrySchedule: &[]time.Duration{}})
	require.NoError(t, err)
	return c
}

func ptr[T any](v T) *T { return &v }

func msgIn(eventType, eventID string) models.MessageIn {
	m := models.MessageIn{EventType: eventType, Payload: map[string]any{"n": 1}}
	if eventID != "" {
		m.EventId = ptr(eventID)
	}
	return m
}

func withApp(m models.MessageIn, uid string) models.MessageIn {
	m.Application = &models.ApplicationIn{Name: "app " + uid, Uid: ptr(uid)}
	return m
}

func withKey(k string) *svix.MessageCreateOptions {
	return &svix.MessageCreateOptions{IdempotencyKey: ptr(k)}
}

// requireStatus asserts err is a *svix.Error with the given status and returns it.
func requireStatus(t *testing.T, err error, status int) *svix.Error {
	t.Helper()
	var se *svix.Error
	require.ErrorAs(t, err, &se)
	require.Equal(t, status, se.Status(), "body: %s", se.Body())
	return se
}

type errBody struct {
	Code   string `json:"code"`
	Detail string `json:"detail"`
}

func decodeErrBody(t *testing.T, se *svix.Error) errBody {
	t.Helper()
	var b errBody
	require.NoError(t, json.Unmarshal(se.Body(), &b))
	return b
}

type validationBody struct {
	Detail []struct {
		Loc  []string `json:"loc"`
		Msg  string   `json:"msg"`
		Type string   `json:"type"`
	} `json:"detail"`
}

func locs(t *testing.T, se *svix.Error) []string {
	t.Helper()
	var b validationBody
	require.NoError(t, json.Unmarshal(se.Body(), &b))
	var out []string
	for _, d := range b.Detail {
		require.Equal(t, "value_error", d.Type)
		out = append(out, strings.Join(d.Loc, "."))
	}
	return out
}

// rawPost sends a POST without the SDK, to observe headers and bytes.
func rawPost(t *testing.T, s *Server, path, key, body string) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, s.URL()+path, strings.NewReader(body))
	require.NoError(t, err)
	req.Header.Set("Authorization", "Bearer "+s.Token())
	req.Header.Set("Content-Type", "application/json")
	if key != "" {
		req.Header.Set("idempotency-key", key)
	}
	res, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	require.NoError(t, err)
	return res, b
}

func TestCreateWithApplicationCreatesApp(t *testing.T) {
	t.Parallel()
	s := NewT(t, Options{})
	c := newSDK(t, s, DefaultToken)
	ctx := context.Background()

	in := withApp(msgIn("order.created", "evt-1"), "orders")
	in.Channels = []string{"eu"}
	in.Tags = []string{"t1"}
	out, err := c.Message.Create(ctx, "orders", in, nil)
	require.NoError(t, err)
	require.True(t, strings.HasPrefix(out.Id, "msg_"))
	require.Len(t, out.Id, len("msg_")+27)
	require.Equal(t, "evt-1", *out.EventId)
	require.Equal(t, "order.created", out.EventType)
	require.Equal(t, map[string]any{"n": float64(1)}, out.Payload)
	require.Equal(t, []string{"eu"}, out.Channels)
	require.Equal(t, []string{"t1"}, out.Tags)
	require.WithinDuration(t, time.Now(), out.Timestamp, 5*time.Second)

	require.Equal(t, []string{"orders"}, s.Apps())
	app, err := c.Application.Get(ctx, "orders")
	require.NoError(t, err)
	require.Equal(t, "orders", *app.Uid)
	require.Equal(t, "app orders", app.Name)
	require.True(t, strings.HasPrefix(app.Id, "app_"))

	msgs := s.Messages()
	require.Len(t, msgs, 1)
	require.Equal(t, Message{
		ID: out.Id, App: "orders", EventID: "evt-1", EventType: "order.created",
		Payload: json.RawMessage(`{"n":1}`), Channels: []string{"eu"}, Tags: []string{"t1"},
		Timestamp: out.Timestamp, Seq: 1,
	}, msgs[0])
	require.Equal(t, msgs, s.MessagesFor(app.Id), "MessagesFor accepts the app id")
	require.Equal(t, msgs, s.MessagesFor("orders"))
	require.Nil(t, s.MessagesFor("nope"))

	reqs := s.Requests()
	require.Len(t, reqs, 2)
	require.Equal(t, http.StatusAccepted, reqs[0].Status)
	require.Equal(t, "orders", reqs[0].App)
	require.Equal(t, "evt-1", reqs[0].EventID)
	require.True(t, strings.HasPrefix(reqs[0].IdempotencyKey, "auto_"), "the SDK makes up a key")
	require.Equal(t, "Bearer "+DefaultToken, reqs[0].Header.Get("Authorization"))
	require.Contains(t, string(reqs[0].Body), `"eventId":"evt-1"`)
}

func TestCreateToMissingAppWithoutApplicationIs404(t *testing.T) {
	t.Parallel()
	s := NewT(t, Options{})
	c := newSDK(t, s, DefaultToken)

	_, err := c.Message.Create(context.Background(), "ghost", msgIn("a.b", "e1"), nil)
	se := requireStatus(t, err, http.StatusNotFound)
	require.Equal(t, errBody{"not_found", "Application not found"}, decodeErrBody(t, se))
	_, err = c.Message.Create(context.Background(), "app_2abc", withApp(msgIn("a.b", "e1"), "x"), nil)
	requireStatus(t, err, http.StatusNotFound) // an app id cannot be created
	require.Zero(t, s.MessageCount())
	require.Empty(t, s.Apps())
	require.Equal(t, 2, s.CreateAttempts())
}

func TestAutoCreateApps(t *testing.T) {
	t.Parallel()
	s := NewT(t, Options{AutoCreateApps: true})
	c := s.Client(t)

	out, err := c.Message.Create(context.Background(), "tenant-7", msgIn("a.b", ""), nil)
	require.NoError(t, err)
	require.Nil(t, out.EventId)
	require.Equal(t, []string{"tenant-7"}, s.Apps())
	require.Equal(t, "tenant-7", s.Messages()[0].App)
}

func TestDuplicateEventIDIs409AndGetFindsOriginal(t *testing.T) {
	t.Parallel()
	s := NewT(t, Options{})
	c := newSDK(t, s, DefaultToken)
	ctx := context.Background()

	first, err := c.Message.Create(ctx, "orders", withApp(msgIn("a.b", "evt-9"), "orders"), nil)
	require.NoError(t, err)
	_, err = c.Message.Create(ctx, "orders", msgIn("a.b", "evt-9"), nil)
	se := requireStatus(t, err, http.StatusConflict)
	require.Equal(t, errBody{"conflict", "A conflict has occurred"}, decodeErrBody(t, se))
	require.Equal(t, 1, s.Conflicts())
	require.Equal(t, 1, s.MessageCount())

	byEvent, err := c.Message.Get(ctx, "orders", "evt-9", nil)
	require.NoError(t, err)
	require.Equal(t, first.Id, byEvent.Id)
	byID, err := c.Message.Get(ctx, "orders", first.Id, nil)
	require.NoError(t, err)
	require.Equal(t, first.Id, byID.Id)
	require.Equal(t, first.Payload, byID.Payload)

	// eventId uniqueness is per application.
	_, err = c.Message.Create(ctx, "billing", withApp(msgIn("a.b", "evt-9"), "billing"), nil)
	require.NoError(t, err)
	require.Equal(t, 1, s.Conflicts())
}

func TestGetMissingIs404(t *testing.T) {
	t.Parallel()
	s := NewT(t, Options{AutoCreateApps: true})
	c := newSDK(t, s, DefaultToken)
	ctx := context.Background()
	_, err := c.Message.Create(ctx, "orders", msgIn("a.b", "e1"), nil)
	require.NoError(t, err)

	_, err = c.Message.Get(ctx, "orders", "nope", nil)
	se := requireStatus(t, err, http.StatusNotFound)
	require.Equal(t, errBody{"not_found", "Message not found"}, decodeErrBody(t, se))
	_, err = c.Message.Get(ctx, "ghost", "e1", nil)
	se = requireStatus(t, err, http.StatusNotFound)
	require.Equal(t, errBody{"not_found", "Application not found"}, decodeErrBody(t, se))
	_, err = c.Application.Get(ctx, "ghost")
	requireStatus(t, err, http.StatusNotFound)
}

func TestWithContentFalseOmitsPayload(t *testing.T) {
	t.Parallel()
	s := NewT(t, Options{AutoCreateApps: true})
	c := newSDK(t, s, DefaultToken)
	ctx := context.Background()
	out, err := c.Message.Create(ctx, "a", msgIn("a.b", "e1"), &svix.MessageCreateOptions{WithContent: ptr(false)})
	require.NoError(t, err)
	require.Nil(t, out.Payload)
	got, err := c.Message.Get(ctx, "a", "e1", &svix.MessageGetOptions{WithContent: ptr(false)})
	require.NoError(t, err)
	require.Nil(t, got.Payload)
	got, err = c.Message.Get(ctx, "a", "e1", nil)
	require.NoError(t, err)
	require.Equal(t, map[string]any{"n": float64(1)}, got.Payload)
}

func TestIdempotencyReplaysAndCreatesNothing(t *testing.T) {
	t.Parallel()
	s := NewT(t, Options{AutoCreateApps: true})
	c := newSDK(t, s, DefaultToken)
	ctx := context.Background()

	first, err := c.Message.Create(ctx, "orders", msgIn("a.b", "evt-1"), withKey("k-1"))
	require.NoError(t, err)
	// Same key: the body is not part of the key, so even another eventId is a replay.
	again, err := c.Message.Create(ctx, "orders", msgIn("a.b", "evt-2"), withKey("k-1"))
	require.NoError(t, err)
	require.Equal(t, first, again)
	require.Equal(t, 1, s.MessageCount())
	require.Zero(t, s.Conflicts())

	reqs := s.Requests()
	require.Len(t, reqs, 2)
	require.False(t, reqs[0].Replayed)
	require.True(t, reqs[1].Replayed)
	require.Equal(t, http.StatusAccepted, reqs[1].Status)
	require.Equal(t, "k-1", reqs[1].IdempotencyKey)

	// The key includes the path: the same key on another app is a new request.
	_, err = c.Message.Create(ctx, "billing", msgIn("a.b", "evt-1"), withKey("k-1"))
	require.NoError(t, err)
	require.Equal(t, 2, s.MessageCount())
}

func TestIdempotencyReplayIsByteForByte(t *testing.T) {
	t.Parallel()
	s := NewT(t, Options{AutoCreateApps: true})
	body := `{"eventType":"a.b","eventId":"e1","payload":{"x": [1, 2]}}`
	res1, b1 := rawPost(t, s, "/api/v1/app/orders/msg", "raw-key", body)
	res2, b2 := rawPost(t, s, "/api/v1/app/orders/msg", "raw-key", body)
	require.Equal(t, http.StatusAccepted, res1.StatusCode)
	require.Equal(t, http.StatusAccepted, res2.StatusCode)
	require.Equal(t, b1, b2)
	require.Contains(t, string(b1), `"payload":{"x":[1,2]}`, "payload is echoed compacted")
	// The query string is part of the key.
	res3, b3 := rawPost(t, s, "/api/v1/app/orders/msg?with_content=false", "raw-key", body)
	require.Equal(t, http.StatusConflict, res3.StatusCode, "not a replay: runs and hits the eventId")
	require.NotEqual(t, b1, b3)
	require.Equal(t, 1, s.MessageCount())
}

func TestIdempotencyDoesNotCacheErrors(t *testing.T) {
	t.Parallel()
	s := NewT(t, Options{AutoCreateApps: true})
	c := newSDK(t, s, DefaultToken)
	ctx := context.Background()
	s.InjectFault(Fault{Kind: FaultStatus, Status: http.StatusServiceUnavailable, Times: 1})

	_, err := c.Message.Create(ctx, "orders", msgIn("a.b", "e1"), withKey("k"))
	se := requireStatus(t, err, http.StatusServiceUnavailable)
	require.Equal(t, "{}", string(se.Body()))
	require.Zero(t, s.MessageCount())

	out, err := c.Message.Create(ctx, "orders", msgIn("a.b", "e1"), withKey("k"))
	require.NoError(t, err)
	require.Equal(t, 1, s.MessageCount())
	require.Equal(t, out.Id, s.Messages()[0].ID)

	reqs := s.Requests()
	require.Len(t, reqs, 2)
	require.Equal(t, http.StatusServiceUnavailable, reqs[0].Status)
	require.Equal(t, "status", reqs[0].Fault)
	require.Equal(t, http.StatusAccepted, reqs[1].Status)
	require.False(t, reqs[1].Replayed)
	require.Empty(t, reqs[1].Fault)
}

func TestIdempotencyValidationErrorIsNotCached(t *testing.T) {
	t.Parallel()
	s := NewT(t, Options{AutoCreateApps: true})
	c := newSDK(t, s, DefaultToken)
	_, err := c.Message.Create(context.Background(), "orders", msgIn("bad:type", "e1"), withKey("k"))
	requireStatus(t, err, http.StatusUnprocessableEntity)
	_, err = c.Message.Create(context.Background(), "orders", msgIn("good.type", "e1"), withKey("k"))
	require.NoError(t, err)
	require.Equal(t, 1, s.MessageCount())
}

// The cache's waits are pure channel and timer work, so they run in a
// synctest bubble: time is virtual and synctest.Wait says when every
// goroutine is blocked, with no sleeping.
func TestIdempotencyConcurrentDuplicateWaitsForFirst(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		c := newIdempotencyCache(10)
		ctx := context.Background()
		stop := make(chan struct{})

		cached, owner, ok := c.begin(ctx, stop, "k")
		require.True(t, ok)
		require.Nil(t, cached)
		require.NotNil(t, owner)

		type result struct {
			cached *response
			owned  *idemEntry
		}
		got := make(chan result, 1)
		go func() {
			cached, owned, _ := c.begin(ctx, stop, "k")
			got <- result{cached, owned}
		}()
		synctest.Wait()
		select {
		case <-got:
			t.Fatal("the duplicate did not wait for the request in flight")
		default:
		}
		want := response{status: http.StatusAccepted, body: []byte(`{"id":"msg_1"}`)}
		c.end("k", owner, want)
		r := <-got
		require.Nil(t, r.owned)
		require.Equal(t, want, *r.cached)
	})
}

func TestIdempotencyConcurrentDuplicateRunsAfterFailure(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		c := newIdempotencyCache(10)
		ctx := context.Background()
		_, owner, _ := c.begin(ctx, nil, "k")
		got := make(chan *idemEntry, 1)
		go func() {
			_, owned, _ := c.begin(ctx, nil, "k")
			got <- owned
		}()
		synctest.Wait() // the duplicate is waiting
		c.end("k", owner, response{status: http.StatusServiceUnavailable, body: []byte("{}")})
		require.NotNil(t, <-got, "after a non-2xx the waiter runs the request itself")
	})
}

// A duplicate waits for the first request at most idempotencyWait, as Svix
// does, then runs unowned.
func TestIdempotencyConcurrentDuplicateWaitIsBounded(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		c := newIdempotencyCache(10)
		_, owner, _ := c.begin(context.Background(), nil, "k")
		require.NotNil(t, owner)
		start := time.Now()
		cached, owned, ok := c.begin(context.Background(), nil, "k")
		require.True(t, ok)
		require.Nil(t, cached)
		require.Nil(t, owned, "after the wait the duplicate runs without owning the key")
		require.Equal(t, idempotencyWait, time.Since(start))
	})
}

func TestIdempotencyCacheIsBounded(t *testing.T) {
	t.Parallel()
	c := newIdempotencyCache(2)
	ok := response{status: http.StatusAccepted, body: []byte("{}")}
	for _, k := range []string{"a", "b", "c"} {
		_, owner, _ := c.begin(context.Background(), nil, k)
		c.end(k, owner, ok)
	}
	cached, owner, _ := c.begin(context.Background(), nil, "a")
	require.Nil(t, cached, "the oldest key was evicted")
	require.NotNil(t, owner)
	cached, _, _ = c.begin(context.Background(), nil, "c")
	require.NotNil(t, cached)
}

func TestUnauthorizedAndSetToken(t *testing.T) {
	t.Parallel()
	s := NewT(t, Options{Token: "sk_one", AutoCreateApps: true})
	require.Equal(t, "sk_one", s.Token())
	ctx := context.Background()

	_, err := newSDK(t, s, "sk_wrong").Message.Create(ctx, "a", msgIn("a.b", "e1"), nil)
	se := requireStatus(t, err, http.StatusUnauthorized)
	require.Equal(t, errBody{"authentication_failed", "Invalid token"}, decodeErrBody(t, se))

	old := newSDK(t, s, "sk_one")
	_, err = old.Message.Create(ctx, "a", msgIn("a.b", "e1"), withKey("k1"))
	require.NoError(t, err)

	s.SetToken("sk_two")
	require.Equal(t, "sk_two", s.Token())
	_, err = old.Message.Create(ctx, "a", msgIn("a.b", "e2"), nil)
	requireStatus(t, err, http.StatusUnauthorized)
	_, err = old.Application.Get(ctx, "a")
	requireStatus(t, err, http.StatusUnauthorized)
	_, err = newSDK(t, s, "sk_two").Message.Create(ctx, "a", msgIn("a.b", "e2"), nil)
	require.NoError(t, err)
	require.Equal(t, 2, s.MessageCount())
}

func TestValidationErrorsAre422(t *testing.T) {
	t.Parallel()
	s := NewT(t, Options{AutoCreateApps: true})
	c := newSDK(t, s, DefaultToken)
	ctx := context.Background()
	long := strings.Repeat("x", 257)

	cases := []struct {
		name string
		app  string
		in   func() models.MessageIn
		loc  string
	}{
		{"nil payload is sent as null", "a", func() models.MessageIn {
			m := msgIn("a.b", "e1")
			m.Payload = nil
			return m
		}, "body.payload"},
		{"colon in eventType", "a", func() models.MessageIn { return msgIn("audit_log:created", "e1") }, "body.eventType"},
		{"empty eventType", "a", func() models.MessageIn { return msgIn("", "e1") }, "body.eventType"},
		{"long eventType", "a", func() models.MessageIn { return msgIn(long, "e1") }, "body.eventType"},
		{"eventId with msg_ prefix", "a", func() models.MessageIn { return msgIn("a.b", "msg_123") }, "body.eventId"},
		{"eventId with space", "a", func() models.MessageIn { return msgIn("a.b", "e 1") }, "body.eventId"},
		{"empty eventId", "a", func() models.MessageIn {
			m := msgIn("a.b", "")
			m.EventId = ptr("")
			return m
		}, "body.eventId"},
		{"long eventId", "a", func() models.MessageIn { return msgIn("a.b", long) }, "body.eventId"},
		{"11 channels", "a", func() models.MessageIn {
			m := msgIn("a.b", "e1")
			m.Channels = strings.Split("1,2,3,4,5,6,7,8,9,10,11", ",")
			return m
		}, "body.channels"},
		{"6 tags", "a", func() models.MessageIn {
			m := msgIn("a.b", "e1")
			m.Tags = strings.Split("1,2,3,4,5,6", ",")
			return m
		}, "body.tags"},
		{"deliverAt in the past", "a", func() models.MessageIn {
			m := msgIn("a.b", "e1")
			m.DeliverAt = ptr(time.Now().Add(-time.Hour))
			return m
		}, "body.deliverAt"},
		{"application uid differs from path", "newapp", func() models.MessageIn {
			return withApp(msgIn("a.b", "e1"), "other")
		}, "body.application.uid"},
		{"application without name", "newapp", func() models.MessageIn {
			m := msgIn("a.b", "e1")
			m.Application = &models.ApplicationIn{Uid: ptr("newapp")}
			return m
		}, "body.application.name"},
		{"invalid uid in path", "bad:uid", func() models.MessageIn {
			return withApp(msgIn("a.b", "e1"), "bad:uid")
		}, "body.application.uid"},
	}
	for _, tc := range cases {
		_, err := c.Message.Create(ctx, tc.app, tc.in(), nil)
		se := requireStatus(t, err, http.StatusUnprocessableEntity)
		require.Contains(t, locs(t, se), tc.loc, tc.name)
	}
	require.Zero(t, s.MessageCount())
	require.Empty(t, s.Apps())

	deliverAt := time.Now().Add(time.Minute)
	m := msgIn("a.b", "e1")
	m.DeliverAt = &deliverAt
	out, err := c.Message.Create(ctx, "a", m, nil)
	require.NoError(t, err, "deliverAt one minute ahead is accepted")
	require.True(t, deliverAt.Equal(*out.DeliverAt))
}

func TestMalformedJSONIs422(t *testing.T) {
	t.Parallel()
	s := NewT(t, Options{AutoCreateApps: true})
	for _, body := range []string{`{"eventType":`, `[]`, `{"eventType":"a.b","payload":"text"}`, `{"eventType":"a.b","payload":[1]}`, `{"eventType":"a.b"}`} {
		res, b := rawPost(t, s, "/api/v1/app/orders/msg", "", body)
		require.Equal(t, http.StatusUnprocessableEntity, res.StatusCode, body)
		var v validationBody
		require.NoError(t, json.Unmarshal(b, &v), body)
		require.NotEmpty(t, v.Detail, body)
	}
	require.Zero(t, s.MessageCount())
}

func TestPayloadTooLargeIs413(t *testing.T) {
	t.Parallel()
	s := NewT(t, Options{AutoCreateApps: true, MaxPayloadBytes: 1024})
	c := newSDK(t, s, DefaultToken)
	ctx := context.Background()

	big := msgIn("a.b", "big")
	big.Payload = map[string]any{"s": strings.Repeat("x", 1100)}
	_, err := c.Message.Create(ctx, "a", big, nil)
	se := requireStatus(t, err, http.StatusRequestEntityTooLarge)
	require.Equal(t, errBody{"payload_too_large", "Payload too large"}, decodeErrBody(t, se))

	fits := msgIn("a.b", "fits")
	fits.Payload = map[string]any{"s": strings.Repeat("x", 1000)} // {"s":"..."} is 1008 bytes
	_, err = c.Message.Create(ctx, "a", fits, nil)
	require.NoError(t, err)
	require.Equal(t, 1, s.MessageCount())

	// A body far beyond the limit is cut off while reading and is a 413 too.
	huge := msgIn("a.b", "huge")
	huge.Payload = map[string]any{"s": strings.Repeat("x", 10_000)}
	_, err = c.Message.Create(ctx, "a", huge, nil)
	requireStatus(t, err, http.StatusRequestEntityTooLarge)
}

func TestRateLimitFault(t *testing.T) {
	t.Parallel()
	s := NewT(t, Options{AutoCreateApps: true})
	remove := s.InjectFault(Fault{Kind: FaultRateLimit, RetryAfter: 1500 * time.Millisecond})

	res, body := rawPost(t, s, "/api/v1/app/orders/msg", "k", `{"eventType":"a.b","payload":{}}`)
	require.Equal(t, http.StatusTooManyRequests, res.StatusCode)
	require.Equal(t, "2", res.Header.Get("Retry-After"), "whole seconds, rounded up")
	require.Contains(t, string(body), `"code":"rate_limited"`)

	_, err := newSDK(t, s, DefaultToken).Message.Create(context.Background(), "orders", msgIn("a.b", "e1"), nil)
	requireStatus(t, err, http.StatusTooManyRequests)
	remove()

	s.InjectFault(Fault{Kind: FaultRateLimit, Times: 1})
	res, _ = rawPost(t, s, "/api/v1/app/orders/msg", "k", `{"eventType":"a.b","payload":{}}`)
	require.Equal(t, http.StatusTooManyRequests, res.StatusCode)
	require.Empty(t, res.Header.Values("Retry-After"))
	require.Zero(t, s.MessageCount())
	require.Equal(t, "rate_limit", s.Requests()[0].Fault)
}

func TestStatusFaultBodies(t *testing.T) {
	t.Parallel()
	s := NewT(t, Options{AutoCreateApps: true})
	c := newSDK(t, s, DefaultToken)
	codes := map[int]string{400: "bad_request", 401: "authentication_failed", 403: "forbidden",
		404: "not_found", 409: "conflict", 413: "payload_too_large"}
	for status, code := range codes {
		s.InjectFault(Fault{Status: status, Times: 1})
		_, err := c.Message.Create(context.Background(), "a", msgIn("a.b", ""), nil)
		se := requireStatus(t, err, status)
		require.Equal(t, code, decodeErrBody(t, se).Code)
	}
	s.InjectFault(Fault{Status: 422, Times: 1})
	_, err := c.Message.Create(context.Background(), "a", msgIn("a.b", ""), nil)
	require.Equal(t, []string{"body"}, locs(t, requireStatus(t, err, 422)))
	for _, status := range []int{0, 500, 502, 503} {
		s.InjectFault(Fault{Kind: FaultStatus, Status: status, Times: 1})
		_, err := c.Message.Create(context.Background(), "a", msgIn("a.b", ""), nil)
		want := max(status, 500)
		require.Equal(t, "{}", string(requireStatus(t, err, want).Body()))
	}
	require.Zero(t, s.MessageCount())
	require.Zero(t, s.Conflicts(), "injected 409s are not eventId conflicts")
	_, err = c.Message.Create(context.Background(), "a", msgIn("a.b", ""), nil)
	require.NoError(t, err, "every fault was used up")
}

func TestFaultTimesMatchRemoveAndClear(t *testing.T) {
	t.Parallel()
	s := NewT(t, Options{AutoCreateApps: true})
	c := newSDK(t, s, DefaultToken)
	ctx := context.Background()

	s.InjectFault(Fault{Status: 500, Times: 2})
	for i := range 2 {
		_, err := c.Message.Create(ctx, "a", msgIn("a.b", fmt.Sprint("e", i)), nil)
		requireStatus(t, err, 500)
	}
	_, err := c.Message.Create(ctx, "a", msgIn("a.b", "e9"), nil)
	require.NoError(t, err)

	// Match targets a GET; creates are unaffected.
	remove := s.InjectFault(Fault{Status: 503, Match: func(r *Request) bool {
		return r.Method == http.MethodGet && strings.Contains(r.Path, "/msg/")
	}})
	_, err = c.Message.Get(ctx, "a", "e9", nil)
	requireStatus(t, err, 503)
	_, err = c.Message.Create(ctx, "a", msgIn("a.b", "e10"), nil)
	require.NoError(t, err)
	remove()
	remove() // idempotent
	_, err = c.Message.Get(ctx, "a", "e9", nil)
	require.NoError(t, err)

	// Match can look at the eventId; the first matching fault wins.
	s.InjectFault(Fault{Status: 502, Match: func(r *Request) bool { return r.EventID == "poison" }})
	s.InjectFault(Fault{Status: 500})
	_, err = c.Message.Create(ctx, "a", msgIn("a.b", "poison"), nil)
	requireStatus(t, err, 502)
	_, err = c.Message.Create(ctx, "a", msgIn("a.b", "fine"), nil)
	requireStatus(t, err, 500)
	s.ClearFaults()
	_, err = c.Message.Create(ctx, "a", msgIn("a.b", "fine"), nil)
	require.NoError(t, err)
}

func TestFaultRate(t *testing.T) {
	t.Parallel()
	s := NewT(t, Options{AutoCreateApps: true})
	c := newSDK(t, s, DefaultToken)
	ctx := context.Background()

	s.SetFaultRate(1, Fault{Status: 503})
	for i := range 5 {
		_, err := c.Message.Create(ctx, "a", msgIn("a.b", fmt.Sprint("e", i)), nil)
		requireStatus(t, err, 503)
	}
	_, err := c.Application.Get(ctx, "a")
	requireStatus(t, err, 404) // rate faults only hit creates by default

	s.SetFaultRate(0.5, Fault{Status: 503})
	failed := 0
	for i := range 200 {
		if _, err := c.Message.Create(ctx, "a", msgIn("a.b", fmt.Sprint("half", i)), nil); err != nil {
			requireStatus(t, err, 503)
			failed++
		}
	}
	require.InDelta(t, 100, failed, 40)

	s.SetFaultRate(0, Fault{Status: 503})
	_, err = c.Message.Create(ctx, "a", msgIn("a.b", "ok"), nil)
	require.NoError(t, err)
}

func TestHangRespectsClientDeadline(t *testing.T) {
	t.Parallel()
	s := NewT(t, Options{AutoCreateApps: true})
	c := newSDK(t, s, DefaultToken)
	s.InjectFault(Fault{Kind: FaultHang, Times: 1})

	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	_, err := c.Message.Create(ctx, "a", msgIn("a.b", "e1"), nil)
	require.ErrorIs(t, err, context.DeadlineExceeded)
	var se *svix.Error
	require.False(t, errors.As(err, &se))
	require.Zero(t, s.MessageCount())
	reqs := s.Requests()
	require.Len(t, reqs, 1)
	require.Equal(t, "hang", reqs[0].Fault)
	require.Zero(t, reqs[0].Status)
}

func TestCloseReleasesHangingRequests(t *testing.T) {
	t.Parallel()
	s := New(Options{AutoCreateApps: true})
	c := newSDK(t, s, DefaultToken)
	s.InjectFault(Fault{Kind: FaultHang})

	errc := make(chan error, 1)
	go func() {
		_, err := c.Message.Create(context.Background(), "a", msgIn("a.b", "e1"), nil)
		errc <- err
	}()
	require.Eventually(t, func() bool { return len(s.Requests()) == 1 }, 2*time.Second, time.Millisecond)
	closed := make(chan struct{})
	go func() { s.Close(); close(closed) }()
	select {
	case <-closed:
	case <-time.After(5 * time.Second):
		t.Fatal("Close deadlocked on a hanging request")
	}
	err := <-errc
	require.Error(t, err)
	var se *svix.Error
	require.False(t, errors.As(err, &se))
	s.Close() // idempotent
}

func TestResetFaultIsTransportError(t *testing.T) {
	t.Parallel()
	s := NewT(t, Options{AutoCreateApps: true})
	c := newSDK(t, s, DefaultToken)
	remove := s.InjectFault(Fault{Kind: FaultReset})

	_, err := c.Message.Create(context.Background(), "a", msgIn("a.b", "e1"), withKey("k"))
	require.Error(t, err)
	var se *svix.Error
	require.False(t, errors.As(err, &se), "a reset is not an HTTP status: %v", err)
	require.Zero(t, s.MessageCount())
	require.Equal(t, "reset", s.Requests()[0].Fault)

	remove()
	_, err = c.Message.Create(context.Background(), "a", msgIn("a.b", "e1"), withKey("k"))
	require.NoError(t, err, "nothing was cached for the key")
	require.Equal(t, 1, s.MessageCount())
}

func TestLostResponseStoresThenReplays(t *testing.T) {
	t.Parallel()
	s := NewT(t, Options{AutoCreateApps: true})
	c := newSDK(t, s, DefaultToken)
	ctx := context.Background()
	// Times 0: the transport's own silent retry on a reused connection is lost too.
	remove := s.InjectFault(Fault{Kind: FaultLostResponse})

	_, err := c.Message.Create(ctx, "a", msgIn("a.b", "e1"), withKey("outbox-42"))
	require.Error(t, err)
	var se *svix.Error
	require.False(t, errors.As(err, &se), "the client never saw a status: %v", err)
	require.Equal(t, 1, s.MessageCount(), "the message was stored anyway")
	stored := s.Messages()[0]
	first := s.Requests()[0]
	require.Equal(t, "lost_response", first.Fault)
	require.Equal(t, http.StatusAccepted, first.Status)

	remove()
	out, err := c.Message.Create(ctx, "a", msgIn("a.b", "e1"), withKey("outbox-42"))
	require.NoError(t, err)
	require.Equal(t, stored.ID, out.Id)
	require.Equal(t, 1, s.MessageCount())
	reqs := s.Requests()
	require.True(t, reqs[len(reqs)-1].Replayed)

	// Without the idempotency key the retry hits the eventId instead.
	_, err = c.Message.Create(ctx, "a", msgIn("a.b", "e1"), nil)
	requireStatus(t, err, http.StatusConflict)
}

func TestLatency(t *testing.T) {
	t.Parallel()
	s := NewT(t, Options{AutoCreateApps: true, Latency: 100 * time.Millisecond})
	c := newSDK(t, s, DefaultToken)

	start := time.Now()
	_, err := c.Message.Create(context.Background(), "a", msgIn("a.b", "e1"), nil)
	require.NoError(t, err)
	require.GreaterOrEqual(t, time.Since(start), 100*time.Millisecond)

	s.SetLatency(time.Hour)
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	_, err = c.Message.Create(ctx, "a", msgIn("a.b", "e2"), nil)
	require.ErrorIs(t, err, context.DeadlineExceeded)

	s.SetLatency(0)
	_, err = c.Message.Create(context.Background(), "a", msgIn("a.b", "e3"), nil)
	require.NoError(t, err)
	require.Equal(t, 2, s.MessageCount(), "a request dropped during latency is not handled")
}

func TestApplicationGetOrCreate(t *testing.T) {
	t.Parallel()
	s := NewT(t, Options{})
	c := newSDK(t, s, DefaultToken)
	ctx := context.Background()
	in := models.ApplicationIn{Name: "Orders", Uid: ptr("orders"), Metadata: &map[string]string{"team": "x"}}

	created, err := c.Application.GetOrCreate(ctx, in, nil)
	require.NoError(t, err)
	require.True(t, strings.HasPrefix(created.Id, "app_"))
	require.Equal(t, "orders", *created.Uid)
	require.Equal(t, map[string]string{"team": "x"}, created.Metadata)
	got, err := c.Application.GetOrCreate(ctx, in, nil)
	require.NoError(t, err)
	require.Equal(t, created, got)
	reqs := s.Requests()
	require.Equal(t, http.StatusCreated, reqs[0].Status)
	require.Equal(t, http.StatusOK, reqs[1].Status)

	_, err = c.Application.Create(ctx, in, nil)
	requireStatus(t, err, http.StatusConflict)
	byID, err := c.Application.Get(ctx, created.Id)
	require.NoError(t, err)
	require.Equal(t, created, byID)

	_, err = c.Application.Create(ctx, models.ApplicationIn{Uid: ptr("x")}, nil)
	require.Contains(t, locs(t, requireStatus(t, err, 422)), "body.name")
	_, err = c.Application.Create(ctx, models.ApplicationIn{Name: "n", Uid: ptr("app_x")}, nil)
	require.Contains(t, locs(t, requireStatus(t, err, 422)), "body.uid")

	noUID, err := c.Application.Create(ctx, models.ApplicationIn{Name: "anon"}, nil)
	require.NoError(t, err)
	require.Nil(t, noUID.Uid)
	require.Equal(t, []string{"orders", noUID.Id}, s.Apps())

	// Messages can target the app by id too.
	out, err := c.Message.Create(ctx, created.Id, msgIn("a.b", "e1"), nil)
	require.NoError(t, err)
	require.Equal(t, out.Id, s.MessagesFor("orders")[0].ID)
}

func TestEventTypeCreate(t *testing.T) {
	t.Parallel()
	s := NewT(t, Options{})
	c := newSDK(t, s, DefaultToken)
	ctx := context.Background()

	out, err := c.EventType.Create(ctx, models.EventTypeIn{Name: "order.created", Description: "d"}, nil)
	require.NoError(t, err)
	require.Equal(t, "order.created", out.Name)
	require.Equal(t, "d", out.Description)
	require.WithinDuration(t, time.Now(), out.CreatedAt, 5*time.Second)
	_, err = c.EventType.Create(ctx, models.EventTypeIn{Name: "order.created"}, nil)
	requireStatus(t, err, http.StatusConflict)
	_, err = c.EventType.Create(ctx, models.EventTypeIn{Name: "audit_log:created"}, nil)
	require.Contains(t, locs(t, requireStatus(t, err, 422)), "body.name")
	require.Equal(t, []string{"order.created"}, s.EventTypes())
}

// The fake has no endpoints: a message it holds has no attempts, through
// the SDK's MessageAttempt.ListByMsg, by message id or eventId.
func TestAttemptsByMessageAreEmpty(t *testing.T) {
	t.Parallel()
	s := NewT(t, Options{AutoCreateApps: true})
	c := newSDK(t, s, DefaultToken)
	ctx := context.Background()
	out, err := c.Message.Create(ctx, "orders", msgIn("a.b", "e1"), nil)
	require.NoError(t, err)

	for _, id := range []string{out.Id, "e1"} {
		list, err := c.MessageAttempt.ListByMsg(ctx, "orders", id, nil)
		require.NoError(t, err, id)
		require.Empty(t, list.Data)
		require.True(t, list.Done)
	}
	_, err = c.MessageAttempt.ListByMsg(ctx, "orders", "nope", nil)
	se := requireStatus(t, err, http.StatusNotFound)
	require.Equal(t, errBody{"not_found", "Message not found"}, decodeErrBody(t, se))
	_, err = c.MessageAttempt.ListByMsg(ctx, "ghost", "e1", nil)
	requireStatus(t, err, http.StatusNotFound)
}

func TestUnknownRouteIs404(t *testing.T) {
	t.Parallel()
	s := NewT(t, Options{})
	res, body := rawPost(t, s, "/api/v1/nope", "", `{}`)
	require.Equal(t, http.StatusNotFound, res.StatusCode)
	require.JSONEq(t, `{"code":"not_found","detail":"Route not found"}`, string(body))
	res, _ = rawPost(t, s, "/api/v1/app/a/msg/extra/more", "", `{}`)
	require.Equal(t, http.StatusNotFound, res.StatusCode)
}

func TestConcurrentCreatesAreAllRecorded(t *testing.T) {
	t.Parallel()
	s := NewT(t, Options{AutoCreateApps: true})
	c := s.Client(t)
	const workers, each = 16, 25

	var wg sync.WaitGroup
	errs := make(chan error, workers*each)
	for w := range workers {
		wg.Go(func() {
			for i := range each {
				id := fmt.Sprintf("w%d-%d", w, i)
				_, err := c.Message.Create(context.Background(), fmt.Sprint("app", w%4), msgIn("a.b", id), withKey(id))
				errs <- err
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}
	msgs := s.Messages()
	require.Len(t, msgs, workers*each)
	require.Equal(t, workers*each, s.CreateAttempts())
	require.Len(t, s.Requests(), workers*each)
	require.Len(t, s.Apps(), 4)
	seen := map[string]bool{}
	for i, m := range msgs {
		require.Equal(t, int64(i+1), m.Seq)
		if i > 0 {
			require.Less(t, msgs[i-1].ID, m.ID, "ids sort in creation order")
		}
		seen[m.EventID] = true
	}
	require.Len(t, seen, workers*each)
}

func TestWaitForMessages(t *testing.T) {
	t.Parallel()
	s := NewT(t, Options{AutoCreateApps: true})
	c := newSDK(t, s, DefaultToken)

	done := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		done <- s.WaitForMessages(ctx, 3)
	}()
	for i := range 3 {
		select {
		case <-done:
			t.Fatal("returned before 3 messages existed")
		default:
		}
		_, err := c.Message.Create(context.Background(), "a", msgIn("a.b", fmt.Sprint("e", i)), nil)
		require.NoError(t, err)
	}
	require.NoError(t, <-done)
	require.NoError(t, s.WaitForMessages(context.Background(), 2), "already there")

	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	require.ErrorIs(t, s.WaitForMessages(ctx, 10), context.DeadlineExceeded)
}

func TestWaitForMessagesReturnsOnClose(t *testing.T) {
	t.Parallel()
	s := New(Options{})
	done := make(chan error, 1)
	go func() { done <- s.WaitForMessages(context.Background(), 1) }()
	require.Eventually(t, func() bool { // the waiter is registered
		s.mu.Lock()
		defer s.mu.Unlock()
		return len(s.st.waiters) == 1
	}, 5*time.Second, time.Millisecond)
	s.Close()
	require.ErrorIs(t, <-done, ErrClosed)
}

func TestReset(t *testing.T) {
	t.Parallel()
	s := NewT(t, Options{AutoCreateApps: true})
	c := newSDK(t, s, DefaultToken)
	ctx := context.Background()
	_, err := c.Message.Create(ctx, "a", msgIn("a.b", "e1"), withKey("k"))
	require.NoError(t, err)
	_, err = c.Message.Create(ctx, "a", msgIn("a.b", "e1"), nil)
	requireStatus(t, err, http.StatusConflict)
	_, err = c.EventType.Create(ctx, models.EventTypeIn{Name: "a.b"}, nil)
	require.NoError(t, err)
	s.InjectFault(Fault{Status: 500, Match: func(r *Request) bool { return r.Method == http.MethodGet }})

	s.Reset()
	require.Zero(t, s.MessageCount())
	require.Zero(t, s.CreateAttempts())
	require.Zero(t, s.Conflicts())
	require.Empty(t, s.Requests())
	require.Empty(t, s.Apps())
	require.Empty(t, s.EventTypes())

	_, err = c.Message.Create(ctx, "a", msgIn("a.b", "e1"), withKey("k"))
	require.NoError(t, err)
	reqs := s.Requests()
	require.False(t, reqs[0].Replayed, "the idempotency cache was cleared")
	require.Equal(t, int64(1), s.Messages()[0].Seq)
	_, err = c.Message.Get(ctx, "a", "e1", nil)
	require.NoError(t, err, "faults were cleared")
}

func TestDisableRequestLog(t *testing.T) {
	t.Parallel()
	s := NewT(t, Options{AutoCreateApps: true, DisableRequestLog: true})
	c := newSDK(t, s, DefaultToken)
	_, err := c.Message.Create(context.Background(), "a", msgIn("a.b", "e1"), nil)
	require.NoError(t, err)
	_, err = c.Message.Create(context.Background(), "a", msgIn("a.b", "e1"), nil)
	requireStatus(t, err, http.StatusConflict)
	require.Nil(t, s.Requests())
	require.Equal(t, 2, s.CreateAttempts())
	require.Equal(t, 1, s.MessageCount())
	require.Equal(t, 1, s.Conflicts())
}

func TestFaultKindString(t *testing.T) {
	t.Parallel()
	names := map[FaultKind]string{FaultStatus: "status", FaultRateLimit: "rate_limit",
		FaultHang: "hang", FaultReset: "reset", FaultLostResponse: "lost_response", 99: "fault(99)"}
	for k, want := range names {
		require.Equal(t, want, k.String())
	}
}

func BenchmarkCreate(b *testing.B) {
	s := NewT(b, Options{AutoCreateApps: true, DisableRequestLog: true})
	c := s.Client(b)
	var n atomic.Int64
	payload := map[string]any{"orderId": 42, "status": "created", "amount": 1999}
	b.ReportAllocs()
	b.SetParallelism(4)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			id := fmt.Sprint("evt-", n.Add(1))
			in := models.MessageIn{EventType: "order.created", EventId: &id, Payload: payload}
			if _, err := c.Message.Create(context.Background(), "bench", in, withKey(id)); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.StopTimer()
	if got := s.MessageCount(); got != b.N {
		b.Fatalf("created %d messages, want %d", got, b.N)
	}
}
