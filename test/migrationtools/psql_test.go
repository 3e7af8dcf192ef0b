package migrationtools_test

import (
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/outboxrelay/outbox/internal/pgtest"
)

// TestPsql runs every .up.sql in lexical order with psql -v ON_ERROR_STOP=1,
// then every .down.sql in reverse, in a schema picked by search_path: from
// PGOPTIONS, or from options= in the URI. (psql rejects a search_path=
// parameter in the URI, which pgx accepts.)
func TestPsql(t *testing.T) {
	t.Parallel()
	psql := findPsql(t)
	ups, err := filepath.Glob(filepath.Join("..", "..", "migrations", "*.up.sql"))
	require.NoError(t, err)
	downs, err := filepath.Glob(filepath.Join("..", "..", "migrations", "*.down.sql"))
	require.NoError(t, err)
	require.Len(t, ups, latestVersion())
	require.Len(t, downs, latestVersion())
	slices.Sort(ups)
	slices.Sort(downs)
	slices.Reverse(downs)
	server := pgtest.ServerURL(t)

	for _, tc := range []struct {
		name    string
		connect func(schema string) (uri string, env []string)
	}{
		{"PGOPTIONS", func(schema string) (string, []string) {
			return server, []string{"PGOPTIONS=-c search_path=" + schema}
		}},
		{"options in the URI", func(schema string) (string, []string) {
			u, err := url.Parse(server)
			require.NoError(t, err)
			// libpq decodes %XX in a URI but not "+", so spaces must be %20.
			u.RawQuery += "&options=" + strings.ReplaceAll(url.QueryEscape("-c search_path="+schema), "+", "%20")
			return u.String(), nil
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			db := pgtest.NewEmpty(t)
			uri, env := tc.connect(db.Schema)
			for _, f := range ups {
				runPsql(t, psql, uri, env, f)
			}
			requireApplied(t, db)
			for _, f := range downs {
				runPsql(t, psql, uri, env, f)
			}
			requireReverted(t, db)
		})
	}
}

func runPsql(t *testing.T, psql, uri string, env []string, file string) {
	t.Helper()
	cmd := exec.CommandContext(t.Context(), psql, uri, "-v", "ON_ERROR_STOP=1", "-f", file)
	cmd.Env = append(os.Environ(), env...)
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "psql -f %s:\n%s", file, out)
}

// findPsql returns psql from PATH or Debian's server package. CI must have
// it; elsewhere the test is skipped without it.
func findPsql(t *testing.T) string {
	t.Helper()
	if p, err := exec.LookPath("psql"); err == nil {
		return p
	}
	if found, _ := filepath.Glob("/usr/lib/postgresql/*/bin/psql"); len(found) > 0 {
		slices.Sort(found)
		return found[len(found)-1]
	}
	if os.Getenv("CI") != "" {
		t.Fatal("psql not found on PATH or in /usr/lib/postgresql/*/bin")
	}
	t.Skip("psql not found on PATH or in /usr/lib/postgresql/*/bin: install postgresql-client")
	return ""
}
