// Package goosefmt renders the migrations' NNNN_name.up.sql / .down.sql pairs
// as goose's annotated files, one per version. The generator
// (migrations/internal/gengoose, run by `go generate ./migrations`) writes
// them to migrations/goose, and a test of package migrations checks that the
// files there are what it would write.
package goosefmt

import (
	"fmt"
	"io/fs"
	"regexp"
	"sort"
	"strings"
)

// noTransaction is migrations.NoTransactionDirective (this package cannot
// import migrations, which embeds its output).
const noTransaction = "-- outbox:no-transaction"

// fileName is a migration file's name: NNNN_name.up.sql or .down.sql.
// dollarQuote and beginAtomic find SQL whose statements hold semicolons of
// their own (function bodies, DO blocks), which goose would split at each
// line ending in ";" unless the section is one StatementBegin/End block.
var (
	fileName    = regexp.MustCompile(`^([0-9]+_.+)\.(up|down)\.sql$`)
	dollarQuote = regexp.MustCompile(`\$([A-Za-z_][A-Za-z0-9_]*)?\$`)
	beginAtomic = regexp.MustCompile(`(?i)\bBEGIN\s+ATOMIC\b`)
)

// Render returns the goose file of one migration: a header naming the files
// it comes from (stem is "NNNN_name"), then the up SQL under "-- +goose Up"
// and the down SQL under "-- +goose Down", each section wrapped in
// StatementBegin/End only when it needs it.
func Render(stem, up, down string) []byte {
	var b strings.Builder
	fmt.Fprintf(&b, "-- Code generated from ../%s.{up,down}.sql by `go generate ./migrations`. DO NOT EDIT.\n", stem)
	b.WriteString("-- Edit those files and re-run go generate: migrations/goose_test.go checks this file is current.\n")
	if strings.HasPrefix(up, noTransaction+"\n") {
		b.WriteString("-- +goose NO TRANSACTION\n")
	}
	section(&b, "Up", up)
	section(&b, "Down", down)
	return []byte(b.String())
}

func section(b *strings.Builder, name, sql string) {
	sql = strings.TrimRight(sql, "\n") + "\n"
	block := dollarQuote.MatchString(sql) || beginAtomic.MatchString(sql)
	fmt.Fprintf(b, "\n-- +goose %s\n", name)
	if block {
		b.WriteString("-- +goose StatementBegin\n")
	}
	b.WriteString(sql)
	if block {
		b.WriteString("-- +goose StatementEnd\n")
	}
}

// Files reads the NNNN_name.up.sql / .down.sql pairs at the root of fsys and
// returns the goose file of each version, keyed by its name, NNNN_name.sql.
func Files(fsys fs.FS) (map[string][]byte, error) {
	names, err := fs.Glob(fsys, "*.sql")
	if err != nil {
		return nil, err
	}
	sort.Strings(names)
	type pair struct{ up, down string }
	pairs := map[string]*pair{}
	for _, name := range names {
		m := fileName.FindStringSubmatch(name)
		if m == nil {
			return nil, fmt.Errorf("migration file %q: want NNNN_name.up.sql or .down.sql", name)
		}
		stem, dir := m[1], m[2]
		body, err := fs.ReadFile(fsys, name)
		if err != nil {
			return nil, err
		}
		if strings.Contains(string(body), "+goose") {
			return nil, fmt.Errorf("migration file %q: contains \"+goose\", which goose would read as an annotation", name)
		}
		p := pairs[stem]
		if p == nil {
			p = &pair{}
			pairs[stem] = p
		}
		if dir == "up" {
			p.up = string(body)
		} else {
			p.down = string(body)
		}
	}
	files := make(map[string][]byte, len(pairs))
	for stem, p := range pairs {
		if strings.TrimSpace(p.up) == "" || strings.TrimSpace(p.down) == "" {
			return nil, fmt.Errorf("migration %s: both a non-empty .up.sql and .down.sql are required", stem)
		}
		files[stem+".sql"] = Render(stem, p.up, p.down)
	}
	return files, nil
}
