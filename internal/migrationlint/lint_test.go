package migrationlint

import (
	"testing"

	"github.com/stretchr/testify/require"
)

// Each rule finds what it names, and lets its safe form through.
func TestRules(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name string
		sql  string
		want []Rule
	}{
		{"index on an existing table", "CREATE INDEX events_x ON outbox_events (x);", []Rule{IndexNotConcurrent}},
		{"unique index, schema-qualified", `CREATE UNIQUE INDEX k ON "s".outbox_events (event_id);`, []Rule{IndexNotConcurrent}},
		{"index concurrently", NoTransactionDirective + "\nCREATE INDEX CONCURRENTLY IF NOT EXISTS events_x ON outbox_events (x);", nil},
		{"index on a table made in the file", "CREATE TABLE t (x int); CREATE INDEX t_x ON t (x);", nil},
		{"volatile default", "ALTER TABLE outbox_events ADD COLUMN token uuid DEFAULT gen_random_uuid();", []Rule{VolatileDefault}},
		{"stable default", "ALTER TABLE outbox_events ADD COLUMN seen timestamptz NOT NULL DEFAULT now();", nil},
		{"constant default", "ALTER TABLE outbox_events ADD COLUMN n int NOT NULL DEFAULT 0, ADD COLUMN m text;", nil},
		{"type change", "ALTER TABLE outbox_events ALTER COLUMN attempts TYPE bigint;", []Rule{TypeChange}},
		{"type change, SET DATA", "ALTER TABLE outbox_events ALTER attempts SET DATA TYPE bigint;", []Rule{TypeChange}},
		{"set not null", "ALTER TABLE outbox_events ALTER COLUMN tags SET NOT NULL;", []Rule{SetNotNull}},
		{"drop not null", "ALTER TABLE outbox_events ALTER COLUMN tags DROP NOT NULL;", nil},
		{"foreign key", "ALTER TABLE outbox_lanes ADD CONSTRAINT fk FOREIGN KEY (holder) REFERENCES outbox_relays (instance);", []Rule{ConstraintNotValid}},
		{"foreign key not valid", "ALTER TABLE outbox_lanes ADD CONSTRAINT fk FOREIGN KEY (holder) REFERENCES outbox_relays (instance) NOT VALID;", nil},
		{"column with a reference", "ALTER TABLE outbox_lanes ADD COLUMN r uuid REFERENCES outbox_relays (instance);", []Rule{ConstraintNotValid}},
		{"check", "ALTER TABLE outbox_events ADD CONSTRAINT c CHECK (attempts >= 0);", []Rule{ConstraintNotValid}},
		{"check not valid, then validated", "ALTER TABLE outbox_events ADD CONSTRAINT c CHECK (attempts >= 0) NOT VALID; ALTER TABLE outbox_events VALIDATE CONSTRAINT c;", nil},
		{"rename a table", "ALTER TABLE outbox_deliveries RENAME TO outbox_history;", []Rule{Rename}},
		{"rename a column", "ALTER TABLE outbox_events RENAME COLUMN tags TO labels;", []Rule{Rename}},
		{"update an existing table", "UPDATE outbox_lanes SET due_at = now();", []Rule{UnbatchedWrite}},
		{"delete from an existing table", "DELETE FROM outbox_lanes WHERE due_at IS NULL;", []Rule{UnbatchedWrite}},
		{"update a table made in the file", "CREATE TABLE t (x int); UPDATE t SET x = 1;", nil},
		{"drop a column", "ALTER TABLE outbox_events DROP COLUMN tags;", []Rule{DropColumn}},
		{"drop a table", "DROP TABLE outbox_relays;", []Rule{DropColumn}},
		{"drop a default", "ALTER TABLE outbox_events ALTER COLUMN tags DROP DEFAULT;", nil},
		{"add a nullable column", "ALTER TABLE outbox_events ADD COLUMN traceparent text, ADD COLUMN tracestate text;", nil},
		{"attach a partition", "ALTER TABLE outbox_deliveries ATTACH PARTITION p FOR VALUES FROM (MINVALUE) TO ('2026-01-01');", nil},
		{"lowercase, spread over lines", "create\n  index\n x on\n outbox_events (x)", []Rule{IndexNotConcurrent}},
		{"concurrently without the directive", "CREATE INDEX CONCURRENTLY x ON outbox_events (x);", []Rule{ConcurrentlyInTransaction}},
		{"concurrently with the directive", NoTransactionDirective + "\nCREATE INDEX CONCURRENTLY x ON outbox_events (x);\n", nil},
		{"the directive and two statements", NoTransactionDirective + "\nCREATE INDEX CONCURRENTLY x ON outbox_events (x);\nCREATE INDEX CONCURRENTLY y ON outbox_events (y);", []Rule{NoTransactionOneStatement}},
		{"drop a column beside a dropped default", "ALTER TABLE outbox_events ALTER COLUMN a DROP DEFAULT, DROP COLUMN b;", []Rule{DropColumn}},
		{"one constraint not valid, another not", "ALTER TABLE outbox_events ADD CONSTRAINT a CHECK (x > 0) NOT VALID, ADD CONSTRAINT b CHECK (y > 0);", []Rule{ConstraintNotValid}},
		{"a unique constraint", "ALTER TABLE outbox_events ADD CONSTRAINT u UNIQUE (event_id);", []Rule{IndexNotConcurrent}},
		{"a primary key from an index built concurrently", "ALTER TABLE outbox_events ADD CONSTRAINT p PRIMARY KEY USING INDEX p_idx;", nil},
		{"truncate", "TRUNCATE outbox_lanes;", []Rule{BlockingCommand}},
		{"lock table", "LOCK TABLE outbox_events IN ACCESS EXCLUSIVE MODE;", []Rule{BlockingCommand}},
		{"vacuum full", "VACUUM FULL outbox_events;", []Rule{BlockingCommand}},
		{"reindex", "REINDEX TABLE outbox_events;", []Rule{BlockingCommand}},
		{"reindex concurrently", NoTransactionDirective + "\nREINDEX TABLE CONCURRENTLY outbox_events;", nil},
		{"drop index", "DROP INDEX outbox_events_x;", []Rule{BlockingCommand}},
		{"drop index concurrently", NoTransactionDirective + "\nDROP INDEX CONCURRENTLY IF EXISTS outbox_events_x;", nil},
		{"in a comment or a string, nothing", "-- CREATE INDEX x ON outbox_events (x);\nSELECT 'UPDATE outbox_lanes SET x = 1;';", nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var got []Rule
			for _, f := range Check(tc.sql) {
				got = append(got, f.Rule)
			}
			require.Equal(t, tc.want, got)
		})
	}
}

// Statements split at semicolons outside comments, strings, quoted
// identifiers and dollar quotes, and say where they start.
func TestSplit(t *testing.T) {
	t.Parallel()
	sql := "-- a header; with a semicolon\nCREATE TABLE \"a;b\" (x text DEFAULT 'it''s; fine');\n\n/* block;\ncomment */ DO $body$ BEGIN PERFORM 1; END $body$;\nSELECT $$;$$ ; SELECT 2"
	got := Split(sql)
	require.Equal(t, []Statement{
		{Line: 2, Text: `CREATE TABLE "a;b" (x text DEFAULT 'it''s; fine')`},
		{Line: 5, Text: "DO $body$ BEGIN PERFORM 1; END $body$"},
		{Line: 6, Text: "SELECT $$;$$"},
		{Line: 6, Text: "SELECT 2"},
	}, got)
}

// A finding names its line, rule and what to do instead.
func TestFindingSaysWhatToDo(t *testing.T) {
	t.Parallel()
	f := Check("SELECT 1;\n\nCREATE INDEX x ON outbox_events (x);")
	require.Len(t, f, 1)
	require.Equal(t, 3, f[0].Line)
	require.Contains(t, f[0].String(), "line 3: index-not-concurrent: CREATE INDEX x ON outbox_events (x) (CREATE INDEX on an existing table blocks")
}
