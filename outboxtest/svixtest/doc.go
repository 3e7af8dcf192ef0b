// Package svixtest is an in-process test double of the Svix HTTP API, for
// tests of code that talks to Svix (the outbox relay, or your own). It
// serves real HTTP (net/http/httptest), so clients talk to it through the
// real Svix Go SDK (github.com/svix/svix-webhooks/go) exactly as they would
// talk to Svix: point relay.Config.SvixServerURL at URL() and use Token().
//
//	fake := svixtest.NewT(t, svixtest.Options{})
//	r, _ := relay.New(pool, relay.Config{SvixToken: fake.Token(), SvixServerURL: fake.URL()})
//	...
//	fake.WaitForMessages(ctx, 1)
//	msgs := fake.MessagesFor("org_42")
//
// # Faithful
//
// The fake follows the Svix API as read from the SDK v1.93.0 and the
// open-source svix-server:
//
//   - Routes: POST /api/v1/app/{app}/msg (202), GET /api/v1/app/{app}/msg/{idOrEventId},
//     POST /api/v1/app[?get_if_exists=true] (201 created, 200 existing, 409 duplicate uid),
//     GET /api/v1/app/{idOrUid}, POST /api/v1/event-type (201, 409 duplicate).
//     {app} is an application id ("app_...") or uid.
//   - Bearer token check on every route above: 401 {"code":"authentication_failed","detail":"Invalid token"}.
//   - Validation (422 {"detail":[{"loc":[...],"msg":...,"type":"value_error"}]}): eventType
//     required and ^[a-zA-Z0-9\-_.]+$ up to 256 chars (a colon is rejected); eventId the same
//     pattern, 1-256 chars, not starting with "msg_"; payload must be a JSON object (null is
//     rejected, which is what the SDK sends for a nil MessageIn.Payload); at most 10 channels
//     and 5 tags; deliverAt 1 minute to 24 hours ahead; application.name required and
//     application.uid equal to the uid in the path. Malformed JSON is a 422 too.
//   - Payload limit (Options.MaxPayloadBytes, 1 MiB by default) measured on the raw JSON of
//     the "payload" value: 413 {"code":"payload_too_large",...}.
//   - A missing application is a 404 {"code":"not_found","detail":"Application not found"}
//     unless the body carries "application", which creates it under the uid of the path.
//   - eventId is unique per application, forever (like the open-source server): a duplicate
//     is a 409 {"code":"conflict","detail":"A conflict has occurred"} and nothing is stored.
//   - Idempotency-Key on POSTs, keyed by (Authorization header, key, path+query); the body is
//     not part of the key. Only 2xx responses are cached and replayed byte for byte; a
//     concurrent duplicate waits up to 5 s for the first one to finish, then replays its 2xx
//     or runs itself (after a timeout, without caching its own answer). As in svix-server the
//     idempotency layer sits in front of authentication, so a cached 2xx is replayed even after
//     the token was rotated with SetToken.
//   - 5xx bodies are {}.
//   - Message ids ("msg_...") and application ids ("app_...") are 27-character KSUID-like
//     strings that sort in creation order.
//
// # Not faithful
//
//   - Nothing is delivered to endpoints, nothing is signed, and there are no endpoints,
//     attempts, listings, updates or deletes: only the routes above exist; any other route is
//     a 404 {"code":"not_found","detail":"Route not found"} (no 405s).
//   - There are no quotas: 429s, 5xxs, hangs, resets and lost responses only happen when
//     injected with InjectFault or SetFaultRate.
//   - The idempotency cache has no 12 h expiry; it keeps the most recent
//     Options.IdempotencyCacheSize successful responses instead.
//   - Payloads are stored and echoed as compacted JSON with the client's key order.
//
// # Faults and the Go HTTP transport
//
// net/http's Transport transparently re-sends a request that carries an Idempotency-Key
// header (the SDK sets one on every POST) when a reused keep-alive connection dies before
// any response byte arrives. A FaultReset or FaultLostResponse with Times: 1 can therefore
// be invisible to the caller: the transport's silent second attempt succeeds (for a lost
// response, as an idempotent replay). Use Times: 0 (until removed) or a fresh connection
// when a test needs the caller to see the failure.
package svixtest
