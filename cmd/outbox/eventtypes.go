package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"os"
	"strings"

	svix "github.com/svix/svix-webhooks/go"

	"github.com/outboxrelay/outbox"
	"github.com/outboxrelay/outbox/eventtypes"
)

// eventTypesOptions are the flags of `outbox event-types`.
type eventTypesOptions struct {
	catalog        string
	dryRun         bool
	archiveMissing bool
	asJSON         bool
	format         string
	out            string
	title          string
	version        string
}

func runEventTypes(ctx context.Context, env *environment, args []string) error {
	var o eventTypesOptions
	fs := newFlagSet(env, "event-types", "outbox event-types sync | export --catalog FILE [flags]\n\n"+
		"The event catalog a service defines (outbox.DefineEvent), from the file its program writes with\n"+
		"eventtypes.MarshalCatalog(outbox.DefaultCatalog). sync creates or updates every event type in Svix (description,\n"+
		"group, JSON Schema), reports created / updated / unchanged, never deletes, and with --archive-missing\n"+
		"archives the types that left the catalog; it needs SVIX_AUTH_TOKEN (and SVIX_SERVER_URL for a\n"+
		"non-default Svix). export writes the catalog for customers: an OpenAPI 3.1 document of webhooks\n"+
		"(--format openapi, to --out or stdout) or one JSON Schema file per event type (--format schemas, into --out).",
		"  outbox event-types sync --catalog catalog.json --dry-run\n"+
			"  outbox event-types sync --catalog catalog.json --archive-missing\n"+
			"  outbox event-types export --catalog catalog.json --format openapi --out webhooks.json\n"+
			"  outbox event-types export --catalog catalog.json --format schemas --out schemas/")
	fs.StringVar(&o.catalog, "catalog", "", "the catalog file (JSON, as eventtypes.MarshalCatalog(outbox.DefaultCatalog) writes it); required")
	fs.BoolVar(&o.dryRun, "dry-run", false, "sync: report what would change, change nothing")
	fs.BoolVar(&o.archiveMissing, "archive-missing", false, "sync: archive the event types Svix has and the catalog does not")
	fs.BoolVar(&o.asJSON, "json", false, "sync: print the report as JSON")
	fs.StringVar(&o.format, "format", "openapi", "export: openapi or schemas")
	fs.StringVar(&o.out, "out", "", "export: the file (openapi; default stdout) or directory (schemas; required)")
	fs.StringVar(&o.title, "title", "Webhooks", "export --format openapi: the document's title")
	fs.StringVar(&o.version, "version", "1", "export --format openapi: the document's version")
	action, rest := splitAction(args)
	if err := parse(fs, rest); err != nil {
		return err
	}
	if action != "sync" && action != "export" {
		return usagef("event-types needs sync or export (run 'outbox event-types --help')")
	}
	if fs.NArg() > 0 {
		return usagef("event-types %s takes no arguments, got %q", action, fs.Args())
	}
	catalog, err := readCatalog(o.catalog)
	if err != nil {
		return err
	}
	if action == "sync" {
		return syncEventTypes(ctx, env, catalog, &o)
	}
	return exportEventTypes(env, catalog, &o)
}

// readCatalog reads the --catalog file.
func readCatalog(path string) (*outbox.Catalog, error) {
	if path == "" {
		return nil, usagef("--catalog is required: the file eventtypes.MarshalCatalog(outbox.DefaultCatalog) writes")
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, usagef("--catalog: %v", err)
	}
	c, err := eventtypes.UnmarshalCatalog(data)
	if err != nil {
		return nil, usagef("--catalog %s: %v", path, err)
	}
	return c, nil
}

func syncEventTypes(ctx context.Context, env *environment, catalog *outbox.Catalog, o *eventTypesOptions) error {
	client, err := svixClient(env)
	if err != nil {
		return err
	}
	report, err := eventtypes.Sync(ctx, client, catalog, eventtypes.SyncOptions{DryRun: o.dryRun, ArchiveMissing: o.archiveMissing})
	if err != nil {
		return err
	}
	if o.asJSON {
		return json.NewEncoder(env.stdout).Encode(struct {
			eventtypes.SyncReport
			DryRun bool `json:"dry_run"`
		}{report, o.dryRun})
	}
	verb := map[bool]string{false: "", true: " (dry run: nothing changed)"}[o.dryRun]
	for _, line := range []struct {
		what  string
		names []string
	}{{"created", report.Created}, {"updated", report.Updated}, {"unchanged", report.Unchanged}, {"archived", report.Archived}} {
		for _, name := range line.names {
			fmt.Fprintf(env.stdout, "%-9s  %s\n", line.what, name)
		}
	}
	fmt.Fprintf(env.stdout, "%d created, %d updated, %d unchanged, %d archived%s\n",
		len(report.Created), len(report.Updated), len(report.Unchanged), len(report.Archived), verb)
	return nil
}

// svixClient is the SDK client SVIX_AUTH_TOKEN and SVIX_SERVER_URL say.
func svixClient(env *environment) (*svix.Svix, error) {
	token := env.getenv("SVIX_AUTH_TOKEN")
	if token == "" {
		return nil, usagef("SVIX_AUTH_TOKEN is not set: sync needs a Svix API token")
	}
	opts := &svix.SvixOptions{}
	if raw := env.getenv("SVIX_SERVER_URL"); raw != "" {
		u, err := url.Parse(raw)
		if err != nil || u.Scheme == "" || u.Host == "" {
			return nil, usagef("SVIX_SERVER_URL: want an absolute URL, got %q", raw)
		}
		opts.ServerUrl = u
	}
	return svix.New(token, opts)
}

func exportEventTypes(env *environment, catalog *outbox.Catalog, o *eventTypesOptions) error {
	switch o.format {
	case "openapi":
		doc, err := eventtypes.OpenAPI(catalog, eventtypes.OpenAPIInfo{Title: o.title, Version: o.version})
		if err != nil {
			return err
		}
		doc = append(doc, '\n')
		if o.out == "" || o.out == "-" {
			_, err := env.stdout.Write(doc)
			return err
		}
		return os.WriteFile(o.out, doc, 0o644)
	case "schemas":
		if o.out == "" {
			return usagef("export --format schemas needs --out DIR")
		}
		paths, err := eventtypes.WriteSchemas(o.out, catalog)
		if err != nil {
			return err
		}
		fmt.Fprintln(env.stdout, strings.Join(paths, "\n"))
		return nil
	}
	return usagef("--format: openapi or schemas, got %q", o.format)
}
