//go:build !temporal

package main

import (
	"context"
	"log/slog"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/outboxrelay/outbox/relay"
)

// temporalOptions holds only --temporal, to say how to get a build that has
// it.
type temporalOptions struct{ enabled bool }

func (o *temporalOptions) register(fs *flagSet) {
	fs.BoolVar(&o.enabled, "temporal", false, "deliver through Temporal workflows (needs a build with -tags temporal)")
}

func (o *temporalOptions) checkFlags(*flagSet) error {
	if o.enabled {
		return usagef("this outbox binary was built without Temporal support; build it with: go install -tags temporal github.com/outboxrelay/outbox/cmd/outbox@latest (in a clone: go build -tags temporal ./cmd/outbox)")
	}
	return nil
}

func runTemporalRelay(context.Context, *environment, *temporalOptions, *pgxpool.Pool, relay.Config, *slog.Logger, func(*relay.Relay) (func(), error)) error {
	panic("unreachable: checkFlags refuses --temporal in this build")
}
