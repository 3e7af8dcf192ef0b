// Command gengoose writes goose's format of the migrations: for each
// NNNN_name.up.sql / .down.sql pair in the current directory, goose/NNNN_name.sql
// (see package goosefmt), and removes any other .sql file in goose/. It is
// run from migrations/ by `go generate ./migrations` (the directive is in
// goose.go).
package main

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/outboxrelay/outbox/migrations/internal/goosefmt"
)

const outDir = "goose"

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "gengoose:", err)
		os.Exit(1)
	}
}

func run() error {
	files, err := goosefmt.Files(os.DirFS("."))
	if err != nil {
		return err
	}
	if err := os.MkdirAll(outDir, 0o755); err != nil {
		return err
	}
	entries, err := os.ReadDir(outDir)
	if err != nil {
		return err
	}
	for _, e := range entries {
		if _, ok := files[e.Name()]; !ok && strings.HasSuffix(e.Name(), ".sql") {
			if err := os.Remove(filepath.Join(outDir, e.Name())); err != nil {
				return err
			}
		}
	}
	names := make([]string, 0, len(files))
	for name := range files {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		if err := os.WriteFile(filepath.Join(outDir, name), files[name], 0o644); err != nil {
			return err
		}
	}
	return nil
}
