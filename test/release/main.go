// Command release keeps the repository's modules at one version, and is how
// that version changes:
//
//	go run ./test/release set [-allow-dirty] VERSION   set the version (scripts/release VERSION)
//	go run ./test/release check DIR...                 the modules in DIR... are at VERSION and tidy (scripts/check)
//	go run ./test/release tidy DIR...                  go mod tidy those modules
//
// Run it from the repository root. The version of the whole repository is
// the file VERSION; every module that requires another of ours requires it
// at that version, and the modules users get (released, below) have no
// replace directives, so that `go install …/cmd/outbox@VERSION` works once
// the release commit is tagged (docs/releasing.md).
//
// It lives in a module of its own, test/release, with the test that
// releases a copy of the tree into a file-based module proxy and installs
// from it, so that golang.org/x/mod reaches no released module's go.mod.
package main

import (
	"flag"
	"fmt"
	"io"
	"os"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

const usageText = `usage:
  release set [-allow-dirty] VERSION   set every module's version (VERSION, go.mod, go.sum, go.work)
  release check DIR...                 check that the modules in DIR... are at VERSION and tidy
  release tidy DIR...                  go mod tidy the modules in DIR...
Run it from the repository root.
`

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usageText)
		return 2
	}
	fs := flag.NewFlagSet("release "+args[0], flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, usageText) }
	allowDirty := fs.Bool("allow-dirty", false, "set: hash the work tree even with uncommitted changes (commit them all, with git add -A)")
	if err := fs.Parse(args[1:]); err != nil {
		return 2
	}
	root, err := os.Getwd()
	if err != nil {
		fmt.Fprintln(stderr, "release:", err)
		return 1
	}
	switch args[0] {
	case "set":
		if fs.NArg() != 1 {
			fmt.Fprint(stderr, usageText)
			return 2
		}
		err = set(root, fs.Arg(0), *allowDirty, stdout)
	case "check", "tidy":
		if fs.NArg() == 0 {
			fmt.Fprint(stderr, usageText)
			return 2
		}
		err = checkOrTidy(root, fs.Args(), args[0] == "tidy", stdout, stderr)
	default:
		fmt.Fprint(stderr, usageText)
		return 2
	}
	if err != nil {
		fmt.Fprintln(stderr, "release:", err)
		return 1
	}
	return 0
}
