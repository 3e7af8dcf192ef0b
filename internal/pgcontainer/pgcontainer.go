// Package pgcontainer starts PostgreSQL in a container through
// testcontainers-go, as a pgserver.Starter: the tests (internal/pgtest) and
// the demo try it after a URL from the environment and before the local
// binaries. It is linked by tests and the demo only, never by the outbox
// command (deps_test.go and depguard check).
//
// The image is OUTBOX_TEST_POSTGRES_IMAGE, or DefaultImage. One that is
// not on the machine is pulled, for at most PullTimeout; when that fails
// (no registry), the starter says so in one error and pgserver goes on to
// the local binaries. scripts/postgres-image builds an image without a
// registry (Debian's postgresql, debootstrap, docker import).
//
// testcontainers' reaper (Ryuk) is a container of its own, whose image a
// machine without a registry cannot pull: unless TESTCONTAINERS_RYUK_DISABLED
// is set, the starter sets it to true (testcontainers' documented switch),
// and the server's Stop terminates the container instead. A process with
// /.dockerenv is taken by testcontainers for one in a container beside the
// daemon, which it reaches through the default gateway; when the daemon's
// bridge (docker0) is an interface of this machine, its published ports are
// on localhost, and the starter sets TESTCONTAINERS_HOST_OVERRIDE to say so
// (unless it is set). A test process
// killed before its Stop leaves its container running: docker ps --filter
// label=org.testcontainers=true lists them.
package pgcontainer

import (
	"context"
	"fmt"
	"net"
	"os"
	"strings"
	"time"

	"github.com/moby/moby/client"
	"github.com/testcontainers/testcontainers-go"
	"github.com/testcontainers/testcontainers-go/modules/postgres"

	"github.com/outboxrelay/outbox/internal/pgserver"
)

const (
	// ImageEnv names the variable that chooses the image.
	ImageEnv = "OUTBOX_TEST_POSTGRES_IMAGE"
	// DefaultImage is the image used when ImageEnv is unset: the official
	// one a user would pull.
	DefaultImage = "postgres:16-alpine"
	// PullTimeout bounds the pull of an image not on the machine.
	PullTimeout = 20 * time.Second
)

// Starter is the container way to a server, for pgserver.Options.Starters.
var Starter = pgserver.Starter{Name: "testcontainers", Start: start}

// Image returns the image the starter runs.
func Image() string {
	if img := os.Getenv(ImageEnv); img != "" {
		return img
	}
	return DefaultImage
}

func start(ctx context.Context, logf func(string, ...any)) (srv *pgserver.Server, err error) {
	defer func() {
		// testcontainers panics on some broken Docker configurations.
		if r := recover(); r != nil {
			srv, err = nil, fmt.Errorf("docker: %v", r)
		}
	}()
	// Before testcontainers reads its configuration (once, at first use).
	if os.Getenv("TESTCONTAINERS_RYUK_DISABLED") == "" {
		_ = os.Setenv("TESTCONTAINERS_RYUK_DISABLED", "true")
	}
	if os.Getenv("TESTCONTAINERS_HOST_OVERRIDE") == "" && daemonIsLocal() {
		// testcontainers takes a process with /.dockerenv for a container
		// beside the daemon, and dials the default gateway; a daemon whose
		// bridge is an interface of this machine publishes on localhost.
		_ = os.Setenv("TESTCONTAINERS_HOST_OVERRIDE", "localhost")
	}
	provider, err := dockerProvider(ctx)
	if err != nil {
		return nil, err
	}
	defer func() { _ = provider.Close() }()
	image := Image()
	if err := ensureImage(ctx, provider, image, logf); err != nil {
		return nil, err
	}
	logf("pgcontainer: starting %s with testcontainers", image)
	ctr, err := postgres.Run(ctx, image,
		postgres.WithDatabase("outbox"),
		postgres.WithUsername("postgres"),
		postgres.WithPassword("postgres"),
		postgres.BasicWaitStrategies(),
		testcontainers.WithCmdArgs("-c", "max_connections=300", "-c", "shared_buffers=256MB"),
	)
	if err != nil {
		if ctr != nil {
			_ = testcontainers.TerminateContainer(ctr)
		}
		return nil, fmt.Errorf("start %s: %w", image, err)
	}
	url, err := ctr.ConnectionString(ctx, "sslmode=disable")
	if err != nil {
		_ = testcontainers.TerminateContainer(ctr)
		return nil, fmt.Errorf("%s: connection string: %w", image, err)
	}
	return pgserver.NewServer(url, "testcontainers", func() error { return testcontainers.TerminateContainer(ctr) }), nil
}

// daemonIsLocal reports whether the Docker daemon runs in this machine's
// network namespace: its default bridge, docker0, is one of our
// interfaces.
func daemonIsLocal() bool {
	if h := os.Getenv("DOCKER_HOST"); h != "" && !strings.HasPrefix(h, "unix://") {
		return false // a daemon elsewhere publishes on its own host
	}
	_, err := net.InterfaceByName("docker0")
	return err == nil
}

// dockerProvider returns testcontainers' Docker provider once the daemon
// has answered, within 3 s.
func dockerProvider(ctx context.Context) (*testcontainers.DockerProvider, error) {
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	provider, err := testcontainers.NewDockerProvider()
	if err != nil {
		return nil, fmt.Errorf("no Docker daemon: %w", err)
	}
	if err := provider.Health(ctx); err != nil {
		_ = provider.Close()
		return nil, fmt.Errorf("no Docker daemon: %w", err)
	}
	return provider, nil
}

// ensureImage returns nil when image is on the machine, or was pulled in
// one attempt within PullTimeout (testcontainers retries a refused pull
// for many minutes; a machine without a registry refuses at once).
func ensureImage(ctx context.Context, provider *testcontainers.DockerProvider, image string, logf func(string, ...any)) error {
	cli := provider.Client()
	if _, err := cli.ImageInspect(ctx, image); err == nil {
		return nil
	}
	logf("pgcontainer: %s is not on this machine; pulling it (at most %s)", image, PullTimeout)
	pctx, cancel := context.WithTimeout(ctx, PullTimeout)
	defer cancel()
	pull, err := cli.ImagePull(pctx, image, client.ImagePullOptions{})
	if err == nil {
		err = pull.Wait(pctx)
	}
	if err != nil {
		return fmt.Errorf("image %s is not on this machine and cannot be pulled (build one with scripts/postgres-image and set %s): %w", image, ImageEnv, err)
	}
	return nil
}
