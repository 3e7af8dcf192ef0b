package relay

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
)

// sqlRelays lists the relays that heartbeated in the last hour, most
// recently alive first, with the lanes each holds under a live lease.
// $1 limit.
const sqlRelays = `
SELECT r.instance, r.name, r.started_at, r.alive_until, r.alive_until > now(), r.svix_health,
       (SELECT count(*) FROM {lanes} l WHERE l.holder = r.instance AND l.leased_until > now())::int
FROM {relays} r
WHERE r.alive_until > now() - interval '1 hour'
ORDER BY r.alive_until DESC LIMIT $1`

// DefaultRelaysLimit is how many relays Relays lists at most.
const DefaultRelaysLimit = 100

// SvixHealth is what Svix answered one relay over its last minutes, as the
// relay reports it with its heartbeat. It holds counts and status classes
// only: no body, no payload, no token.
type SvixHealth struct {
	// WindowSeconds is the span the counts cover.
	WindowSeconds int `json:"window_seconds"`
	// Calls counts the calls to Svix.
	Calls int64 `json:"calls"`
	// OK counts the calls Svix answered with success (2xx, or 409 on a
	// known eventId).
	OK int64 `json:"ok"`
	// Errors counts the calls that failed for a transient reason (5xx, a
	// timeout, a network error) or that Svix refused (4xx but 401, 403 and
	// 429).
	Errors int64 `json:"errors"`
	// RateLimited counts 429s.
	RateLimited int64 `json:"rate_limited"`
	// Unauthorized counts 401s and 403s: Svix refused the token.
	Unauthorized int64 `json:"unauthorized"`
	// LastError is the last failure's class ("503", "429", "timeout",
	// "network"); empty when none.
	LastError string `json:"last_error,omitempty"`
	// LastErrorAt is when it happened.
	LastErrorAt *time.Time `json:"last_error_at,omitempty"`
}

// RelayInstance is one relay process, as its heartbeat row describes it.
type RelayInstance struct {
	// Instance is the relay's instance id (LaneState.Holder).
	Instance uuid.UUID `json:"instance"`
	// Name is the relay's Config.ID.
	Name string `json:"name"`
	// StartedAt is when it first heartbeated.
	StartedAt time.Time `json:"started_at"`
	// AliveUntil is the end of its last heartbeat: other relays may take
	// its lanes after it.
	AliveUntil time.Time `json:"alive_until"`
	// Alive is AliveUntil in the future.
	Alive bool `json:"alive"`
	// Lanes counts the lanes it holds under a live lease.
	Lanes int `json:"lanes"`
	// SvixHealth is what Svix answered it lately; nil when it reports
	// nothing (a relay older than migration 0007).
	SvixHealth *SvixHealth `json:"svix_health,omitempty"`
}

// Relays lists the relays that heartbeated in the last hour, most recently
// alive first, at most DefaultRelaysLimit.
func (a *Admin) Relays(ctx context.Context) ([]RelayInstance, error) {
	rows, err := a.db.Query(ctx, a.q.relays, DefaultRelaysLimit)
	if err != nil {
		return nil, fmt.Errorf("relay: list relays: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (RelayInstance, error) {
		var (
			ri     RelayInstance
			health []byte
		)
		if err := row.Scan(&ri.Instance, &ri.Name, &ri.StartedAt, &ri.AliveUntil, &ri.Alive, &health, &ri.Lanes); err != nil {
			return ri, err
		}
		if len(health) > 0 {
			ri.SvixHealth = &SvixHealth{}
			if err := json.Unmarshal(health, ri.SvixHealth); err != nil {
				return ri, fmt.Errorf("svix_health of %s: %w", ri.Name, err)
			}
		}
		return ri, nil
	})
	if err != nil {
		return nil, fmt.Errorf("relay: list relays: %w", err)
	}
	return out, nil
}
