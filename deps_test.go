package outbox_test

import (
	"errors"
	"os/exec"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// goList runs go list -deps with format over patterns, one line per
// package. go test puts the go command of its toolchain first on PATH.
func goList(t *testing.T, format string, patterns ...string) []string {
	t.Helper()
	out, err := exec.Command("go", append([]string{"list", "-deps", "-f", format}, patterns...)...).Output()
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		t.Fatalf("go list %v: %v\n%s", patterns, err, ee.Stderr)
	}
	require.NoError(t, err)
	return strings.Fields(string(out))
}

// The producer is lean: a program that only calls Append
// (testdata/appendonly) links, beyond the standard library, only package
// outbox's own packages and what pgx, google/uuid and the OpenTelemetry API
// bring themselves. At pgx v5.12 and otel v1.46 those are pgx's jackc
// packages (pgpassfile, pgservicefile) and the x/text packages of its SCRAM
// password preparation (secure/precis and what it needs), and otel's
// go-logr/logr and stdr, cespare/xxhash, otel/log and auto/sdk. No JSON
// Schema code (invopop, santhosh-tekuri), no YAML, no x/text/message, no
// Svix SDK: those are package eventtypes' and the relay's.
func TestAppendLinksOnlyPgxUUIDAndOpenTelemetry(t *testing.T) {
	t.Parallel()
	const nonStd = `{{if not .Standard}}{{.ImportPath}}{{end}}`
	allowed := goList(t, nonStd, "github.com/jackc/pgx/v5", "github.com/google/uuid",
		"go.opentelemetry.io/otel", "go.opentelemetry.io/otel/metric", "go.opentelemetry.io/otel/trace")
	deps := goList(t, nonStd, "./testdata/appendonly")
	require.Contains(t, deps, "github.com/outboxrelay/outbox", "the program calls outbox.Append")
	var extra []string
	for _, dep := range deps {
		own := dep == "github.com/outboxrelay/outbox" || strings.HasPrefix(dep, "github.com/outboxrelay/outbox/internal/") ||
			dep == "github.com/outboxrelay/outbox/testdata/appendonly"
		if !own && !slices.Contains(allowed, dep) {
			extra = append(extra, dep)
		}
		for _, banned := range []string{"github.com/invopop/", "github.com/santhosh-tekuri/", "go.yaml.in/", "gopkg.in/yaml",
			"github.com/svix/", "golang.org/x/text/message", "golang.org/x/time/"} {
			require.False(t, strings.HasPrefix(dep, banned), "an Append-only program links %s", dep)
		}
	}
	require.Empty(t, extra, "beyond std, pgx, uuid and the OpenTelemetry API")

	// Package outbox and its internal packages import, beyond the standard
	// library and each other, only these modules' packages.
	modules := []string{"", "github.com/outboxrelay/outbox", "github.com/jackc/pgx/v5", "github.com/google/uuid",
		"go.opentelemetry.io/otel", "go.opentelemetry.io/otel/metric", "go.opentelemetry.io/otel/trace"}
	moduleOf := map[string]string{}
	imports := map[string][]string{}
	for _, line := range goList(t, `{{.ImportPath}}|{{with .Module}}{{.Path}}{{end}}|{{join .Imports ","}}`, ".") {
		parts := strings.SplitN(line, "|", 3)
		moduleOf[parts[0]] = parts[1]
		if parts[1] == "github.com/outboxrelay/outbox" {
			imports[parts[0]] = strings.Split(parts[2], ",")
		}
	}
	require.Contains(t, imports, "github.com/outboxrelay/outbox")
	for pkg, imps := range imports {
		for _, imp := range imps {
			require.Contains(t, modules, moduleOf[imp], "%s imports %s, of module %s", pkg, imp, moduleOf[imp])
		}
	}
}
