package relay

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// sqlDeliveryRate counts the events settled (delivered or skipped) per
// minute over the last $1 minutes of the delivery history, oldest first,
// one row per minute including the empty ones. Only the hourly partitions
// that cover the window are read (settled_at prunes them).
const sqlDeliveryRate = `
WITH minutes AS (
    SELECT generate_series(date_trunc('minute', now()) - ($1::int - 1) * interval '1 minute',
                           date_trunc('minute', now()), interval '1 minute') AS minute
), counted AS (
    SELECT date_trunc('minute', settled_at) AS minute, count(*) AS n
    FROM {deliveries}
    WHERE settled_at >= date_trunc('minute', now()) - ($1::int - 1) * interval '1 minute'
    GROUP BY 1
)
SELECT m.minute, coalesce(c.n, 0)::bigint FROM minutes m LEFT JOIN counted c USING (minute) ORDER BY m.minute`

// ErrInvalidWindow is returned by DeliveryRate for a window out of range.
var ErrInvalidWindow = errors.New("invalid delivery-rate window")

// MinuteCount is how many events were settled in one minute.
type MinuteCount struct {
	// Minute is the minute's start, on the database's clock.
	Minute time.Time `json:"minute"`
	// Settled counts the events delivered or skipped in it.
	Settled int64 `json:"settled"`
}

// DeliveryRate returns the events settled per minute over the last minutes
// (the current one included, so far), oldest first, one entry per minute.
// It reads the delivery history of that window: on a busy installation, a
// long window reads that much history. minutes must be from 1 to 1440.
func (a *Admin) DeliveryRate(ctx context.Context, minutes int) ([]MinuteCount, error) {
	if minutes < 1 || minutes > 1440 {
		return nil, fmt.Errorf("relay: delivery rate: minutes must be from 1 to 1440 (got %d): %w", minutes, ErrInvalidWindow)
	}
	rows, err := a.db.Query(ctx, a.q.deliveryRate, minutes)
	if err != nil {
		return nil, fmt.Errorf("relay: delivery rate: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (MinuteCount, error) {
		var m MinuteCount
		err := row.Scan(&m.Minute, &m.Settled)
		return m, err
	})
	if err != nil {
		return nil, fmt.Errorf("relay: delivery rate: %w", err)
	}
	return out, nil
}
