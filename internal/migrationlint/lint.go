// Package migrationlint finds statements in a migration that would block a
// live installation: a lock held on a table the producers write while the
// statement rewrites, scans or waits, or a change that stops the previous
// release's code (migrate first, then roll the binaries).
//
// It is a small checker of its own, not a SQL parser: it splits a file into
// statements (minding comments, quotes and dollar quotes), and matches each
// statement's text against the rules. Tables created earlier in the same
// file are new, and exempt from the rules about existing tables. The rules
// follow squawk's and strong_migrations' (squawk does not install from the
// registries our machines reach).
package migrationlint

import (
	"fmt"
	"regexp"
	"slices"
	"strings"
)

// Rule names a kind of blocking statement.
type Rule string

// The rules. Each names what it finds and, in Why, what to do instead.
const (
	// IndexNotConcurrent: CREATE INDEX on an existing table without
	// CONCURRENTLY holds a SHARE lock, which blocks every write, for as long
	// as the build takes.
	IndexNotConcurrent Rule = "index-not-concurrent"
	// VolatileDefault: ADD COLUMN with a volatile default rewrites the
	// table under an ACCESS EXCLUSIVE lock (a constant or a stable default,
	// such as now(), does not since PostgreSQL 11).
	VolatileDefault Rule = "volatile-default"
	// TypeChange: ALTER COLUMN ... TYPE rewrites the table (and its indexes)
	// under an ACCESS EXCLUSIVE lock, and breaks the previous release.
	TypeChange Rule = "type-change"
	// SetNotNull: SET NOT NULL scans the whole table under an ACCESS
	// EXCLUSIVE lock, unless a validated CHECK (col IS NOT NULL) already
	// proves it.
	SetNotNull Rule = "set-not-null"
	// ConstraintNotValid: a new FOREIGN KEY or CHECK on an existing table
	// without NOT VALID is validated at once, scanning the table under its
	// lock; add it NOT VALID, then VALIDATE CONSTRAINT in its own step.
	ConstraintNotValid Rule = "constraint-not-valid"
	// Rename: renaming a table or a column breaks the previous release's
	// producers and relays, which still use the old name.
	Rename Rule = "rename"
	// UnbatchedWrite: an UPDATE or DELETE on an existing table in a
	// migration writes every matching row in one transaction, holding their
	// locks to its end; move data in batches, outside the migration.
	UnbatchedWrite Rule = "unbatched-write"
	// DropColumn: dropping a column (or table) breaks the previous
	// release's code, which still reads it.
	DropColumn Rule = "drop-column"
	// ConcurrentlyInTransaction: CONCURRENTLY in a file not marked with
	// NoTransactionDirective, which the runner would run in a transaction,
	// where PostgreSQL refuses it.
	ConcurrentlyInTransaction Rule = "concurrently-in-transaction"
	// NoTransactionOneStatement: a file marked NoTransactionDirective holds
	// more than one statement (goose would run each on its own, golang-migrate
	// and psql all in one implicit transaction block, which CONCURRENTLY
	// refuses).
	NoTransactionOneStatement Rule = "no-transaction-one-statement"
	// BlockingCommand: TRUNCATE, LOCK TABLE, VACUUM FULL, CLUSTER, and
	// REINDEX or DROP INDEX without CONCURRENTLY take an ACCESS EXCLUSIVE
	// lock (or, for REINDEX, block writes) for their whole run.
	BlockingCommand Rule = "blocking-command"
)

// NoTransactionDirective, as a file's first line, marks a migration that
// runs outside a transaction (migrations.NoTransactionDirective).
const NoTransactionDirective = "-- outbox:no-transaction"

// Why says what a rule finds and what to do instead.
var Why = map[Rule]string{
	IndexNotConcurrent:        "CREATE INDEX on an existing table blocks its writes for the whole build: use CREATE INDEX CONCURRENTLY, in a migration of its own (it cannot run in a transaction)",
	VolatileDefault:           "a volatile default rewrites the table under an exclusive lock: add the column without it, then fill it in batches",
	TypeChange:                "a type change rewrites the table under an exclusive lock: add a new column, backfill in batches, switch readers",
	SetNotNull:                "SET NOT NULL scans the table under an exclusive lock: add CHECK (col IS NOT NULL) NOT VALID, VALIDATE it, then SET NOT NULL",
	ConstraintNotValid:        "a new constraint is validated at once under the table's lock: add it NOT VALID, then VALIDATE CONSTRAINT separately",
	Rename:                    "a rename breaks the previous release, which still uses the old name: add the new name, move, drop the old one a release later",
	UnbatchedWrite:            "an UPDATE or DELETE of an existing table writes every row in one transaction: move data in batches, outside the schema migration",
	DropColumn:                "a drop breaks the previous release, which still uses it: stop using it first, drop it a release later",
	ConcurrentlyInTransaction: "CONCURRENTLY cannot run in a transaction: put the statement alone in a migration whose first line is " + NoTransactionDirective,
	NoTransactionOneStatement: "a migration run outside a transaction holds one statement: split it",
	BlockingCommand:           "the command holds an exclusive lock for its whole run: use the CONCURRENTLY form, or do it outside the migration",
}

// Finding is one statement that breaks a rule.
type Finding struct {
	Rule Rule
	// Line is the statement's first line in the file, from 1.
	Line int
	// Statement is the statement's text, whitespace collapsed.
	Statement string
}

func (f Finding) String() string {
	return fmt.Sprintf("line %d: %s: %s (%s)", f.Line, f.Rule, f.Statement, Why[f.Rule])
}

// Check returns the findings of one migration file's SQL, in file order.
func Check(sql string) []Finding {
	created := map[string]bool{}
	var out []Finding
	statements := Split(sql)
	outside := strings.HasPrefix(sql, NoTransactionDirective+"\n")
	if outside && len(statements) > 1 {
		out = append(out, Finding{Rule: NoTransactionOneStatement, Line: statements[1].Line, Statement: normalize(statements[1].Text)})
	}
	for _, st := range statements {
		text := normalize(st.Text)
		upper := strings.ToUpper(text)
		if m := createTable.FindStringSubmatch(upper); m != nil {
			created[unquote(m[1])] = true
			continue
		}
		if !outside && strings.Contains(upper, " CONCURRENTLY ") {
			out = append(out, Finding{Rule: ConcurrentlyInTransaction, Line: st.Line, Statement: text})
		}
		for _, r := range rulesOf(upper, created) {
			out = append(out, Finding{Rule: r, Line: st.Line, Statement: text})
		}
	}
	return out
}

var (
	ident       = `((?:"[^"]+"|[A-Z0-9_$]+)(?:\.(?:"[^"]+"|[A-Z0-9_$]+))?)`
	createTable = regexp.MustCompile(`^CREATE (?:UNLOGGED )?TABLE (?:IF NOT EXISTS )?` + ident)
	createIndex = regexp.MustCompile(`^CREATE (?:UNIQUE )?INDEX (CONCURRENTLY )?(?:IF NOT EXISTS )?(?:` + ident + ` )?ON (?:ONLY )?` + ident)
	alterTable  = regexp.MustCompile(`^ALTER TABLE (?:IF EXISTS )?(?:ONLY )?` + ident + ` (.*)$`)
	writeTable  = regexp.MustCompile(`^(?:UPDATE|DELETE FROM) (?:ONLY )?` + ident)
	renameAny   = regexp.MustCompile(`^ALTER (?:TABLE|INDEX|SEQUENCE|VIEW) .* RENAME `)
	addColumn   = regexp.MustCompile(`ADD (?:COLUMN )?(?:IF NOT EXISTS )?[A-Z0-9_"]+ [^,]*?DEFAULT ([^,]*)`)
	volatile    = regexp.MustCompile(`\b(RANDOM|CLOCK_TIMESTAMP|TIMEOFDAY|GEN_RANDOM_UUID|UUID_GENERATE_V[14]|NEXTVAL|STATEMENT_TIMESTAMP)\s*\(`)
	typeChange  = regexp.MustCompile(`ALTER (?:COLUMN )?[A-Z0-9_"]+ (?:SET DATA )?TYPE `)
	setNotNull  = regexp.MustCompile(`ALTER (?:COLUMN )?[A-Z0-9_"]+ SET NOT NULL`)
	addCons     = regexp.MustCompile(`ADD (?:CONSTRAINT [A-Z0-9_"]+ )?(FOREIGN KEY|CHECK)\b|\bREFERENCES\b`)
	dropCol     = regexp.MustCompile(`DROP (?:COLUMN )?(?:IF EXISTS )?[A-Z0-9_"]+`)
	dropTable   = regexp.MustCompile(`^DROP TABLE `)
	blocking    = regexp.MustCompile(`^(TRUNCATE|LOCK |VACUUM (\([^)]*\bFULL\b[^)]*\)|FULL)|CLUSTER|REINDEX (?:TABLE|INDEX|SCHEMA|DATABASE|SYSTEM) (?:[^C]|C[^O])|DROP INDEX (?:IF EXISTS )?[^C])`)
	addIndexed  = regexp.MustCompile(`^ADD (?:CONSTRAINT [A-Z0-9_"]+ )?(PRIMARY KEY|UNIQUE)\b`)
)

// rulesOf returns the rules one statement (upper-cased) breaks.
func rulesOf(st string, created map[string]bool) []Rule {
	var rules []Rule
	if m := createIndex.FindStringSubmatch(st); m != nil {
		if m[1] == "" && !created[unquote(m[3])] {
			rules = append(rules, IndexNotConcurrent)
		}
		return rules
	}
	if blocking.MatchString(st) && !strings.Contains(st, "CONCURRENTLY") {
		return append(rules, BlockingCommand)
	}
	if renameAny.MatchString(st) {
		return append(rules, Rename)
	}
	if dropTable.MatchString(st) {
		return append(rules, DropColumn)
	}
	if m := writeTable.FindStringSubmatch(st); m != nil {
		if !created[unquote(m[1])] {
			rules = append(rules, UnbatchedWrite)
		}
		return rules
	}
	m := alterTable.FindStringSubmatch(st)
	if m == nil || created[unquote(m[1])] {
		return nil
	}
	actions := m[2]
	if strings.Contains(actions, "ATTACH PARTITION") || strings.Contains(actions, "DETACH PARTITION") {
		return nil // partition maintenance: its own locks, documented where it is used
	}
	for _, action := range splitActions(actions) {
		for _, r := range actionRules(action) {
			if !slices.Contains(rules, r) {
				rules = append(rules, r)
			}
		}
	}
	return rules
}

// actionRules returns the rules one action of an ALTER TABLE breaks.
func actionRules(a string) []Rule {
	var rules []Rule
	if d := addColumn.FindStringSubmatch(a); d != nil && volatile.MatchString(d[1]) {
		rules = append(rules, VolatileDefault)
	}
	if typeChange.MatchString(a) {
		rules = append(rules, TypeChange)
	}
	if setNotNull.MatchString(a) {
		rules = append(rules, SetNotNull)
	}
	if addCons.MatchString(a) && !strings.Contains(a, "NOT VALID") {
		rules = append(rules, ConstraintNotValid)
	}
	if addIndexed.MatchString(a) && !strings.Contains(a, "USING INDEX") {
		rules = append(rules, IndexNotConcurrent)
	}
	if strings.HasPrefix(a, "DROP ") && dropCol.MatchString(a) && !strings.HasPrefix(a, "DROP CONSTRAINT") {
		rules = append(rules, DropColumn)
	}
	return rules
}

// splitActions splits an ALTER TABLE's actions at the commas outside
// parentheses.
func splitActions(actions string) []string {
	var out []string
	depth, start := 0, 0
	for i, c := range actions {
		switch c {
		case '(':
			depth++
		case ')':
			depth--
		case ',':
			if depth == 0 {
				out = append(out, strings.TrimSpace(actions[start:i]))
				start = i + 1
			}
		}
	}
	return append(out, strings.TrimSpace(actions[start:]))
}

// unquote returns a table name without its schema and quotes, upper-cased
// as the statement is.
func unquote(name string) string {
	if i := strings.LastIndexByte(name, '.'); i >= 0 {
		name = name[i+1:]
	}
	return strings.ToUpper(strings.Trim(name, `"`))
}

// normalize collapses a statement's whitespace.
func normalize(s string) string { return strings.Join(strings.Fields(s), " ") }
