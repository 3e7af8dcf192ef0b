package eventtypes

import (
	"context"
	"encoding/json"
	"fmt"
	"reflect"

	svix "github.com/svix/svix-webhooks/go"
	"github.com/svix/svix-webhooks/go/models"

	"github.com/outboxrelay/outbox"
)

// SyncOptions tunes Sync. The zero value creates and updates, and
// archives nothing.
type SyncOptions struct {
	// DryRun reports what Sync would do and changes nothing in Svix.
	// Defaults to false.
	DryRun bool
	// ArchiveMissing archives the event types Svix has and the catalog
	// does not (Svix keeps an archived type: endpoints that filter on it
	// go on doing so, and Sync unarchives it if it comes back). Sync never
	// deletes one. Defaults to false: types outside the catalog are left
	// alone.
	ArchiveMissing bool
}

// SyncReport is what Sync did, or would do with DryRun: event type names,
// each sorted.
type SyncReport struct {
	// Created were not in Svix.
	Created []string `json:"created"`
	// Updated were in Svix with another description, group, deprecation,
	// schema for the catalog's version, or archived.
	Updated []string `json:"updated"`
	// Unchanged were in Svix as the catalog says.
	Unchanged []string `json:"unchanged"`
	// Archived were in Svix and not in the catalog (with ArchiveMissing).
	Archived []string `json:"archived"`
}

// listPageSize is how many event types a List call asks for: the API's
// most.
const listPageSize = 250

// Sync makes Svix's event types what catalog says, and is idempotent: a
// second run reports every type unchanged. Each catalog type is created,
// or updated when it differs; its schemas for other versions, already in
// Svix, are kept. Every schema is generated (SchemaOf) before anything
// changes in Svix, so a type whose schema cannot be generated changes
// nothing. It stops at the first Svix error, with the report of what was
// done before it.
func Sync(ctx context.Context, client *svix.Svix, catalog *outbox.Catalog, opts SyncOptions) (SyncReport, error) {
	report := SyncReport{Created: []string{}, Updated: []string{}, Unchanged: []string{}, Archived: []string{}}
	specs := catalog.Specs()
	schemas := make([]map[string]any, len(specs))
	for i, spec := range specs { // every schema before the first change in Svix
		schema, err := decodeSchema(spec)
		if err != nil {
			return report, err
		}
		schemas[i] = schema
	}
	existing, order, err := listAll(ctx, client)
	if err != nil {
		return report, err
	}
	inCatalog := map[string]bool{}
	for i, spec := range specs {
		name := string(spec.Name)
		inCatalog[name] = true
		schema := schemas[i]
		have, ok := existing[name]
		switch {
		case !ok:
			if !opts.DryRun {
				if _, err := client.EventType.Create(ctx, createIn(spec, schema), nil); err != nil {
					return report, fmt.Errorf("eventtypes: create %s: %w", name, err)
				}
			}
			report.Created = append(report.Created, name)
		case differs(have, spec, schema):
			if !opts.DryRun {
				if _, err := client.EventType.Update(ctx, name, updateOf(have, spec, schema)); err != nil {
					return report, fmt.Errorf("eventtypes: update %s: %w", name, err)
				}
			}
			report.Updated = append(report.Updated, name)
		default:
			report.Unchanged = append(report.Unchanged, name)
		}
	}
	if opts.ArchiveMissing {
		for _, name := range order {
			if inCatalog[name] || archived(existing[name]) {
				continue
			}
			if !opts.DryRun {
				if err := client.EventType.Delete(ctx, name, &svix.EventTypeDeleteOptions{Expunge: ptr(false)}); err != nil {
					return report, fmt.Errorf("eventtypes: archive %s: %w", name, err)
				}
			}
			report.Archived = append(report.Archived, name)
		}
	}
	return report, nil
}

// listAll reads every event type Svix has, archived ones and schemas
// included, and their names in Svix's order.
func listAll(ctx context.Context, client *svix.Svix) (map[string]models.EventTypeOut, []string, error) {
	out := map[string]models.EventTypeOut{}
	var order []string
	opts := &svix.EventTypeListOptions{Limit: ptr(uint64(listPageSize)), IncludeArchived: ptr(true), WithContent: ptr(true)}
	for {
		page, err := client.EventType.List(ctx, opts)
		if err != nil {
			return nil, nil, fmt.Errorf("eventtypes: list event types: %w", err)
		}
		for _, et := range page.Data {
			if _, seen := out[et.Name]; !seen {
				order = append(order, et.Name)
			}
			out[et.Name] = et
		}
		if page.Done || page.Iterator == nil || len(page.Data) == 0 {
			return out, order, nil
		}
		opts.Iterator = page.Iterator
	}
}

// decodeSchema is spec's schema (SchemaOf) as the SDK sends it.
func decodeSchema(spec outbox.EventTypeSpec) (map[string]any, error) {
	raw, err := SchemaOf(spec)
	if err != nil {
		return nil, err
	}
	var schema map[string]any
	if err := json.Unmarshal(raw, &schema); err != nil {
		return nil, fmt.Errorf("eventtypes: the schema of %s: %w", spec.Name, err)
	}
	return schema, nil
}

func createIn(spec outbox.EventTypeSpec, schema map[string]any) models.EventTypeIn {
	schemas := map[string]any{spec.SchemaVersion: schema}
	return models.EventTypeIn{Name: string(spec.Name), Description: spec.Description, GroupName: group(spec),
		Deprecated: ptr(spec.Deprecated), Schemas: &schemas}
}

// updateOf is have made what spec says, keeping what the catalog does
// not own: its schemas of other versions and its feature flags (a PUT
// replaces every field).
func updateOf(have models.EventTypeOut, spec outbox.EventTypeSpec, schema map[string]any) models.EventTypeUpdate {
	schemas := map[string]any{}
	if have.Schemas != nil {
		for v, s := range *have.Schemas {
			schemas[v] = s
		}
	}
	schemas[spec.SchemaVersion] = schema
	return models.EventTypeUpdate{Description: spec.Description, GroupName: group(spec), Deprecated: ptr(spec.Deprecated),
		Archived: ptr(false), Schemas: &schemas, FeatureFlags: have.FeatureFlags, FeatureFlag: have.FeatureFlag}
}

// differs reports whether Svix's have is not what spec says.
func differs(have models.EventTypeOut, spec outbox.EventTypeSpec, schema map[string]any) bool {
	if archived(have) || have.Description != spec.Description || have.Deprecated != spec.Deprecated {
		return true
	}
	haveGroup := ""
	if have.GroupName != nil {
		haveGroup = *have.GroupName
	}
	if haveGroup != spec.Group {
		return true
	}
	if have.Schemas == nil {
		return true
	}
	current, ok := (*have.Schemas)[spec.SchemaVersion]
	return !ok || !sameJSON(current, schema)
}

// sameJSON compares two decoded JSON values as JSON: Svix may return
// numbers and key orders of its own.
func sameJSON(a, b any) bool {
	ja, err1 := json.Marshal(a)
	jb, err2 := json.Marshal(b)
	if err1 != nil || err2 != nil {
		return false
	}
	var va, vb any
	if json.Unmarshal(ja, &va) != nil || json.Unmarshal(jb, &vb) != nil {
		return false
	}
	return reflect.DeepEqual(va, vb)
}

func archived(et models.EventTypeOut) bool { return et.Archived != nil && *et.Archived }

func group(spec outbox.EventTypeSpec) *string {
	if spec.Group == "" {
		return nil
	}
	return ptr(spec.Group)
}

func ptr[T any](v T) *T { return &v }
