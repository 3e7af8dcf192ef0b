package pgcontainer_test

import (
	"context"
	"fmt"
	"os"
	osexec "os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/outboxrelay/outbox/internal/pgcontainer"
	"github.com/outboxrelay/outbox/internal/pgserver"
)

// When Docker answers but the image cannot be had (no registry, an unknown
// name), the starter says so in one line and the local binaries serve,
// within seconds. Without a Docker daemon there is nothing to fall back
// from: the test skips, but fails under CI (CI=true), whose machines run
// one.
func TestUnavailableImageFallsBackToTheLocalBinaries(t *testing.T) {
	if err := exec("docker", "info"); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("CI runs a Docker daemon, but docker info failed: %v", err)
		}
		t.Skipf("no Docker daemon here (docker info: %v)", err)
	}
	t.Setenv(pgcontainer.ImageEnv, "outbox-no-such-image:never")
	var (
		mu    sync.Mutex
		lines []string
	)
	logf := func(format string, args ...any) {
		mu.Lock()
		defer mu.Unlock()
		lines = append(lines, fmt.Sprintf(format, args...))
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	start := time.Now()
	srv, err := pgserver.Start(ctx, pgserver.Options{EnvVars: []string{}, Starters: []pgserver.Starter{pgcontainer.Starter}, Logf: logf})
	require.NoError(t, err)
	t.Cleanup(func() { _ = srv.Stop() })
	took := time.Since(start)
	require.Equal(t, "local", srv.Source)
	var fallback []string
	for _, l := range lines {
		if strings.HasPrefix(l, "pgserver: testcontainers:") {
			fallback = append(fallback, l)
		}
	}
	require.Len(t, fallback, 1, "one line says why the container way failed: %q", lines)
	require.Contains(t, fallback[0], "outbox-no-such-image:never is not on this machine and cannot be pulled")
	t.Logf("fell back in %s (local cluster start included): %s", took, fallback[0])
	require.Less(t, took, 30*time.Second, "within seconds, not a pull's retries")
}

// exec runs a command, for the Docker probe.
func exec(name string, args ...string) error {
	return osexec.Command(name, args...).Run()
}
