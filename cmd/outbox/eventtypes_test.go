package main_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/outboxrelay/outbox"
	"github.com/outboxrelay/outbox/eventtypes"
	"github.com/outboxrelay/outbox/outboxtest/svixtest"
)

type invoicePaid struct {
	ID     string `json:"id"`
	Amount int    `json:"amount"`
}

// writeCatalog writes a catalog file as a service's program would.
func writeCatalog(t *testing.T, defs func(c *outbox.Catalog)) string {
	t.Helper()
	c := outbox.NewCatalog()
	defs(c)
	data, err := eventtypes.MarshalCatalog(c)
	require.NoError(t, err)
	path := filepath.Join(t.TempDir(), "catalog.json")
	require.NoError(t, os.WriteFile(path, data, 0o644))
	return path
}

// sync creates, then finds nothing to do; a dry run changes nothing; the
// report is a line per type and a count.
func TestEventTypesSync(t *testing.T) {
	t.Parallel()
	fake := svixtest.NewT(t, svixtest.Options{})
	env := []string{"SVIX_AUTH_TOKEN=" + fake.Token(), "SVIX_SERVER_URL=" + fake.URL()}
	path := writeCatalog(t, func(c *outbox.Catalog) {
		outbox.DefineEventIn[invoicePaid](c, "invoice.paid", outbox.EventTypeInfo{Description: "An invoice was paid.", Group: "invoice"})
	})

	r := runOutbox(t, env, "", "event-types", "sync", "--catalog", path, "--dry-run")
	require.Equal(t, 0, r.code, r.stderr)
	require.Contains(t, r.stdout, "created    invoice.paid")
	require.Contains(t, r.stdout, "1 created, 0 updated, 0 unchanged, 0 archived (dry run: nothing changed)")
	require.Empty(t, fake.EventTypes())

	r = runOutbox(t, env, "", "event-types", "sync", "--catalog", path)
	require.Equal(t, 0, r.code, r.stderr)
	require.Contains(t, r.stdout, "1 created, 0 updated, 0 unchanged, 0 archived\n")
	et, ok := fake.EventType("invoice.paid")
	require.True(t, ok)
	require.Equal(t, "invoice", et.GroupName)

	r = runOutbox(t, env, "", "event-types", "sync", "--catalog", path, "--json")
	require.Equal(t, 0, r.code, r.stderr)
	var report struct {
		Created, Unchanged []string
		DryRun             bool `json:"dry_run"`
	}
	require.NoError(t, json.Unmarshal([]byte(r.stdout), &report))
	require.Equal(t, []string{"invoice.paid"}, report.Unchanged)
	require.Empty(t, report.Created)
}

// export writes an OpenAPI document to stdout, or schema files into a
// directory.
func TestEventTypesExport(t *testing.T) {
	t.Parallel()
	path := writeCatalog(t, func(c *outbox.Catalog) {
		outbox.DefineEventIn[invoicePaid](c, "invoice.paid", outbox.EventTypeInfo{Description: "An invoice was paid."})
	})
	r := runOutbox(t, nil, "", "event-types", "export", "--catalog", path, "--title", "Acme")
	require.Equal(t, 0, r.code, r.stderr)
	var doc struct {
		OpenAPI  string         `json:"openapi"`
		Info     map[string]any `json:"info"`
		Webhooks map[string]any `json:"webhooks"`
	}
	require.NoError(t, json.Unmarshal([]byte(r.stdout), &doc))
	require.Equal(t, "3.1.0", doc.OpenAPI)
	require.Equal(t, "Acme", doc.Info["title"])
	require.Contains(t, doc.Webhooks, "invoice.paid")

	dir := filepath.Join(t.TempDir(), "schemas")
	r = runOutbox(t, nil, "", "event-types", "export", "--catalog", path, "--format", "schemas", "--out", dir)
	require.Equal(t, 0, r.code, r.stderr)
	require.FileExists(t, filepath.Join(dir, "invoice.paid.v1.schema.json"))
}

// Bad command lines are usage errors that say what is wrong.
func TestEventTypesUsageErrors(t *testing.T) {
	t.Parallel()
	bad := filepath.Join(t.TempDir(), "bad.json")
	require.NoError(t, os.WriteFile(bad, []byte(`{"eventTypes":[{"name":"a:b","description":"x","schemaVersion":"1","schema":{}}]}`), 0o644))
	good := writeCatalog(t, func(c *outbox.Catalog) {
		outbox.DefineEventIn[invoicePaid](c, "invoice.paid", outbox.EventTypeInfo{Description: "d"})
	})
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"event-types"}, "needs sync or export"},
		{[]string{"event-types", "sync"}, "--catalog is required"},
		{[]string{"event-types", "sync", "--catalog", "/nonexistent.json"}, "--catalog"},
		{[]string{"event-types", "export", "--catalog", bad}, `event type "a:b": Name: must contain only`},
		{[]string{"event-types", "sync", "--catalog", good}, "SVIX_AUTH_TOKEN is not set"},
		{[]string{"event-types", "export", "--catalog", good, "--format", "yaml"}, "openapi or schemas"},
		{[]string{"event-types", "export", "--catalog", good, "--format", "schemas"}, "needs --out"},
	} {
		r := runOutbox(t, []string{"PATH=" + os.Getenv("PATH")}, "", tc.args...)
		require.Equal(t, 2, r.code, "%v: %s", tc.args, r.stderr)
		require.Contains(t, r.stderr, tc.want, strings.Join(tc.args, " "))
	}
}
