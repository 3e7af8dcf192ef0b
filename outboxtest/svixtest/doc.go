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
//     GET /api/v1/app/{app}/attempt/msg/{idOrEventId} (always empty: see below),
//     POST /api/v1/app[?get_if_exists=true] (201 created, 200 existing, 409 duplicate uid),
//     GET /api/v1/app/{idOrUid}, and the event types:
//     POST /api/v1/event-type, GET /api/v1/event-type[?limit=&iterator=&order=&include_archived=&with_content=],
//     GET, PUT, PATCH and DELETE[?expunge=true] /api/v1/event-type/{name}.
//     {app} is an application id ("app_...") or uid.
//   - Bearer token check on every route above: 401 {"code":"authentication_failed","detail":"Invalid token"}.
//   - Validation (422 {"detail":[{"loc":[...],"msg":...,"type":"value_error"}]}): eventType
//     required and ^[a-zA-Z0-9\-_.]+$ up to 256 chars (a colon is rejected); eventId the same
//     pattern, 1-256 chars, not starting with "msg_"; payload must be a JSON object (null is
//     rejected, which is what the SDK sends for a nil MessageIn.Payload); channels (when not
//     null) 1 to 10 unique items of ^[a-zA-Z0-9\-_.:]+$ up to 128 chars; tags at most 5 unique
//     items of ^[a-zA-Z0-9\-_./\\#]+$ up to 128 chars (an item's error is at
//     ["body","channels","<index>"], a count or duplicate at ["body","channels"]); deliverAt 1
//     minute to 24 hours ahead; application.name required and application.uid equal to the
//     uid in the path. Malformed JSON is a 422 too.
//   - Event types, as in svix-server plus the hosted API's groupName, featureFlags, deprecated
//     and expunge: name (POST) and description required; name and groupName
//     ^[a-zA-Z0-9\-_.]+$ up to 256 chars (a PUT's path name too, at ["path","event_type_name"]);
//     no control characters 0x00-0x08 in description; featureFlags (when not null) at least 1
//     unique name; schemas null or an object of version => JSON Schema (an object or a boolean).
//     POST answers 201, also when it finds an archived event type, which it overwrites with the
//     body (unarchived unless the body says archived; description and schemas are not
//     preserved, createdAt is); a non-archived one is a 409
//     {"code":"event_type_exists","detail":"An event_type with this name already exists"}.
//     PUT replaces every field (missing ones get their defaults, so it unarchives) and answers
//     200, or 201 when it created the event type. PATCH changes the fields present; null clears
//     groupName, featureFlags and schemas. DELETE archives (204, again if already archived);
//     expunge=true forgets the event type. GET, PATCH and DELETE of a missing (or expunged)
//     event type are a 404 {"code":"not_found","detail":"Entity not found"}; GET finds archived
//     ones. Every successful write sets updatedAt, whether or not it changed anything.
//   - Event type listing: by name ascending (order=descending reverses it), limit 1-250
//     (default 50; 0 or above 250 is a 422 at ["query","limit"]), iterator the last name of
//     the previous page, or prevIterator ("-" + the first name) for the page before (an
//     invalid name is a 422 at ["query","iterator"]); done is true
//     when nothing is left in that direction. Archived event types only with
//     include_archived=true, schemas only with with_content=true. A query value that does not
//     parse (limit=ten, with_content=yes) is a 400 {"code":"bad_request",...}.
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
//   - Nothing is delivered to endpoints, nothing is signed, and there are no endpoints, so a
//     message's attempts (GET /api/v1/app/{app}/attempt/msg/{msg_id}) are always an empty
//     list; there are no message listings, or application updates and deletes: only the routes above
//     exist (not the event type OpenAPI import nor generate-example); any other route is a 404
//     {"code":"not_found","detail":"Route not found"} (no 405s).
//   - Messages are not checked against event types: any valid eventType is accepted, even an
//     archived or unknown one.
//   - Event type names sort byte by byte (Postgres may collate differently); schemas are
//     checked to be objects or booleans, not compiled as JSON Schemas; the deprecated singular
//     featureFlag is ignored (not stored nor echoed), and feature flags do not hide event types
//     from any token.
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
