package main

import (
	"context"
	"fmt"
	"time"

	"github.com/testcontainers/testcontainers-go"
	"github.com/testcontainers/testcontainers-go/modules/postgres"

	"github.com/outboxrelay/outbox/internal/pgserver"
)

// containerImage is the image started when a Docker daemon answers.
const containerImage = "postgres:16-alpine"

// containerStarter starts PostgreSQL in a container through testcontainers
// when a Docker daemon answers; pgserver tries it before the local binaries.
var containerStarter = pgserver.Starter{Name: "testcontainers", Start: startContainer}

func startContainer(ctx context.Context, logf func(string, ...any)) (*pgserver.Server, error) {
	if err := dockerAnswers(ctx); err != nil {
		return nil, err
	}
	logf("demo: starting %s with testcontainers", containerImage)
	ctr, err := postgres.Run(ctx, containerImage,
		postgres.WithDatabase("outbox"),
		postgres.WithUsername("postgres"),
		postgres.WithPassword("postgres"),
		postgres.BasicWaitStrategies(),
	)
	if err != nil {
		return nil, fmt.Errorf("start container: %w", err)
	}
	url, err := ctr.ConnectionString(ctx, "sslmode=disable")
	if err != nil {
		_ = testcontainers.TerminateContainer(ctr)
		return nil, fmt.Errorf("container connection string: %w", err)
	}
	return pgserver.NewServer(url, "testcontainers", func() error {
		return testcontainers.TerminateContainer(ctr)
	}), nil
}

// dockerAnswers asks the Docker daemon for its info with a short deadline.
func dockerAnswers(ctx context.Context) (err error) {
	defer func() {
		// testcontainers panics on some broken Docker configurations.
		if r := recover(); r != nil {
			err = fmt.Errorf("docker: %v", r)
		}
	}()
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	provider, err := testcontainers.NewDockerProvider()
	if err != nil {
		return fmt.Errorf("no Docker daemon: %w", err)
	}
	if err := provider.Health(ctx); err != nil {
		return fmt.Errorf("no Docker daemon: %w", err)
	}
	return nil
}
