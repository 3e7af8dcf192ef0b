package relay

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	svix "github.com/svix/svix-webhooks/go"
	"github.com/svix/svix-webhooks/go/models"
)

// pendingEvent is one claimed row of the hot table.
type pendingEvent struct {
	id        int64
	eventID   uuid.UUID
	eventType string
	payload   []byte
	attempts  int
	createdAt time.Time
	// traceparent and tracestate are the producer's W3C trace context, or
	// "" when it had no span.
	traceparent, tracestate string
	// channels and tags are the message's Svix routing fields, or nil.
	channels, tags []string
	// lastError is the error its last attempt recorded, or "".
	lastError string
}

// outcome is what became of one event in a turn.
type outcome int

const (
	outcomeUnsent      outcome = iota // not sent, or interrupted: no attempt is recorded
	outcomeDelivered                  // created in Svix (or confirmed after a 409)
	outcomeSkipped                    // the organization has no webhooks
	outcomeRetry                      // transient failure: try again after a backoff
	outcomeDeadLetter                 // permanent failure: dead-letter it
	outcomeRateLimited                // 429: pause the lane, not the event's fault
	outcomeAuth                       // 401/403: the token is bad, not the event's fault
)

// result is an event's outcome with its details.
type result struct {
	outcome    outcome
	messageID  string        // delivered
	err        string        // retry, dead, rate limited, auth
	status     int           // the HTTP status, when Svix answered
	body       string        // Svix's response body, for dead letters
	retryAfter time.Duration // rate limited, when Svix said
	// fastRetry: a transient failure of the create that came back fast (a
	// 5xx, a reset), which a quick retry may fix.
	fastRetry bool
	// at is when the send ended: a delivered event's latency ends there,
	// not at the settlement.
	at time.Time
	// timedOut: Svix did not answer within SendTimeout.
	timedOut bool
}

// send creates ev in Svix at dest, classifies the answer and records it in
// the health signal. sendCtx ends when the relay gives up on in-flight
// calls; each call also gets its own SendTimeout.
func (r *Relay) send(sendCtx context.Context, dest Destination, ev *pendingEvent) (res result) {
	defer func() { r.health.recordOutcome(res.outcome); r.svixHealth.record(res) }()
	payload, err := decodePayload(ev.payload)
	if err != nil {
		return result{outcome: outcomeDeadLetter, err: "payload is not a JSON object: " + err.Error()}
	}
	if r.clock.Since(ev.createdAt) > lookUpFirstAfter {
		if res, found := r.lookUp(sendCtx, dest, ev); found {
			return res
		}
	}
	eventID := ev.eventID.String()
	in := models.MessageIn{EventType: ev.eventType, EventId: &eventID, Payload: payload, Channels: ev.channels, Tags: ev.tags}
	if dest.CreateName != "" {
		app := dest.App
		in.Application = &models.ApplicationIn{Name: dest.CreateName, Uid: &app}
	}
	key := "outbox-" + eventID
	withContent := false
	ctx, cancel := context.WithTimeout(sendCtx, r.cfg.SendTimeout)
	defer cancel()
	ctx, retryAfter := withRetryAfterSlot(ctx)

	if r.log.Enabled(ctx, levelDebug) {
		r.log.DebugContext(ctx, "relay: creating message", "event_id", eventID, "app", dest.App, "payload", string(ev.payload))
	}
	started := r.clock.Now()
	out, err := r.svix.Message.Create(ctx, dest.App, in, &svix.MessageCreateOptions{IdempotencyKey: &key, WithContent: &withContent})
	if err == nil {
		return result{outcome: outcomeDelivered, messageID: out.Id}
	}
	var serr *svix.Error
	if !errors.As(err, &serr) {
		res = transportFailure(sendCtx, err)
	} else if status, body := serr.Status(), string(serr.Body()); status == http.StatusConflict {
		return r.confirm(sendCtx, dest, ev, body)
	} else {
		res = classify(status, body, retryAfter)
	}
	res.fastRetry = res.outcome == outcomeRetry && r.clock.Since(started) < r.cfg.SendTimeout/2
	return res
}

// transportFailure classifies an error without an HTTP answer: a retry, or
// unsent when the relay itself cut the call off.
func transportFailure(sendCtx context.Context, err error) result {
	if sendCtx.Err() != nil {
		return result{outcome: outcomeUnsent, err: "interrupted: " + err.Error()}
	}
	return result{outcome: outcomeRetry, err: err.Error(), timedOut: isTimeout(err)}
}

// classify turns Svix's non-2xx answer into an outcome, for message
// creation and for the lookup that confirms a 409 alike.
func classify(status int, body string, retryAfter *atomic.Int64) result {
	switch {
	case status == http.StatusTooManyRequests:
		return result{outcome: outcomeRateLimited, status: status, err: "429 rate limited", retryAfter: time.Duration(retryAfter.Load()) * time.Millisecond}
	case status == http.StatusUnauthorized || status == http.StatusForbidden:
		return result{outcome: outcomeAuth, status: status, err: fmt.Sprintf("%d %s", status, body)}
	case status == http.StatusRequestTimeout || status >= 500:
		return result{outcome: outcomeRetry, status: status, err: fmt.Sprintf("%d %s", status, body)}
	default: // 400, 404, 413, 422 and the other 4xx: the event itself is refused
		return result{outcome: outcomeDeadLetter, status: status, body: body, err: fmt.Sprintf("svix refused the message: %d", status)}
	}
}

// lookUpFirstAfter is the age from which an event is looked up by eventId
// before it is created. An earlier attempt may have created it without the
// relay learning so (a timeout, a lost response); Svix deduplicates such a
// repeat by Idempotency-Key for about 12 hours and by eventId for about a
// day, so an event retried for longer, or a dead letter requeued later,
// could otherwise become a second message. Half the shorter window leaves a
// margin for clock differences.
const lookUpFirstAfter = 6 * time.Hour

// lookUp asks Svix for ev by eventId. found is true when that settles the
// event: the message exists (delivered) or the lookup failed in a way that
// decides the attempt (rate limit, bad token, transient error). A 404 is
// not found: create it.
func (r *Relay) lookUp(sendCtx context.Context, dest Destination, ev *pendingEvent) (res result, found bool) {
	ctx, cancel := context.WithTimeout(sendCtx, r.cfg.SendTimeout)
	defer cancel()
	ctx, retryAfter := withRetryAfterSlot(ctx)
	out, err := r.svix.Message.Get(ctx, dest.App, ev.eventID.String(), nil)
	if err == nil {
		r.stats.foundBeforeCreate.Add(1)
		return result{outcome: outcomeDelivered, messageID: out.Id}, true
	}
	var serr *svix.Error
	if !errors.As(err, &serr) {
		res = transportFailure(sendCtx, err)
		res.err = "look up old event: " + res.err
		return res, true
	}
	if serr.Status() == http.StatusNotFound {
		return result{}, false
	}
	res = classify(serr.Status(), string(serr.Body()), retryAfter)
	res.err = "look up old event: " + res.err
	return res, true
}

// conflictLookups is how many attempts a 409 whose message Message.Get does
// not find yet gets before the event is dead-lettered: the lookup may
// trail the create that answered 409 (read-after-write lag).
const conflictLookups = 3

// confirm resolves a 409 on eventId: an earlier attempt created the
// message, so look it up and settle the event as delivered. The lookup's
// own failures are classified like a create's.
func (r *Relay) confirm(sendCtx context.Context, dest Destination, ev *pendingEvent, conflictBody string) result {
	ctx, cancel := context.WithTimeout(sendCtx, r.cfg.SendTimeout)
	defer cancel()
	ctx, retryAfter := withRetryAfterSlot(ctx)
	out, err := r.svix.Message.Get(ctx, dest.App, ev.eventID.String(), nil)
	if err == nil {
		r.stats.conflictsConfirmed.Add(1)
		return result{outcome: outcomeDelivered, messageID: out.Id}
	}
	var serr *svix.Error
	if !errors.As(err, &serr) {
		res := transportFailure(sendCtx, err)
		res.err = "confirm 409: " + res.err
		return res
	}
	if serr.Status() != http.StatusNotFound {
		res := classify(serr.Status(), string(serr.Body()), retryAfter)
		res.err = "confirm 409: " + res.err
		return res
	}
	looked := conflictLookupsOf(ev.lastError) + 1
	if looked < conflictLookups {
		return result{outcome: outcomeRetry, status: http.StatusConflict,
			err: fmt.Sprintf("%s%d of %d); looking again", conflictLookupPrefix, looked, conflictLookups)}
	}
	return result{outcome: outcomeDeadLetter, status: http.StatusConflict, body: conflictBody,
		err: fmt.Sprintf("svix answered 409 on eventId but has no message with it (looked %d times)", looked)}
}

// conflictLookupPrefix starts the error a 409 whose message is not found
// yet records; the count of lookups so far follows it.
const conflictLookupPrefix = "svix answered 409 on eventId but Message.Get does not find it yet (lookup "

// conflictLookupsOf returns how many 409 lookups in a row found nothing,
// read from the error the event's last attempt recorded (0 when that
// attempt was anything else). The event's attempts count every failure,
// so an event that failed twice before would have been dead-lettered on
// its first lookup lag.
func conflictLookupsOf(lastError string) int {
	rest, ok := strings.CutPrefix(lastError, conflictLookupPrefix)
	if !ok {
		return 0
	}
	if end := strings.IndexFunc(rest, func(c rune) bool { return c < '0' || c > '9' }); end >= 0 {
		rest = rest[:end]
	}
	n, err := strconv.Atoi(rest)
	if err != nil {
		return 0
	}
	return n
}
