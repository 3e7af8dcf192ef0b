package main

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"

	"golang.org/x/mod/modfile"
	"golang.org/x/mod/module"
	"golang.org/x/mod/semver"
)

// modulePrefix is the path of the library; every module of this repository
// is it or below it.
const modulePrefix = "github.com/outboxrelay/outbox"

// released are the directories of the modules users require or install, in
// dependency order (each requires only modules before it): they have no
// replace directives, and a release tags each of them. Every other module
// (test/...) is test code, shipped nowhere, and may replace its siblings by
// their directories.
var released = []string{".", "outboxtemporal", "console", "cmd/outbox", "cmd/outbox-demo"}

// versionFile holds the version the tree is at: the one the modules require
// each other at, and the one the next tags name.
const versionFile = "VERSION"

// isOurs reports whether a module path is one of this repository's.
func isOurs(p string) bool {
	return p == modulePrefix || strings.HasPrefix(p, modulePrefix+"/")
}

// isReleased reports whether dir (slash-separated, relative to the root) is
// one of the released modules.
func isReleased(dir string) bool { return slices.Contains(released, dir) }

// tagName is the git tag of the module in dir at version v: the root module's
// tags are bare versions, a module in a subdirectory's are prefixed with it.
func tagName(dir, v string) string {
	if dir == "." {
		return v
	}
	return dir + "/" + v
}

// mod is one module's go.mod.
type mod struct {
	dir  string // slash-separated, relative to the repository root; "." for the root
	data []byte
	file *modfile.File
}

func (m *mod) path() string { return m.file.Module.Mod.Path }

// goModPath is the file name of dir's go.mod under root.
func goModPath(root, dir string) string {
	return filepath.Join(root, filepath.FromSlash(dir), "go.mod")
}

func readMod(root, dir string) (*mod, error) {
	dir = path.Clean(filepath.ToSlash(dir))
	name := goModPath(root, dir)
	data, err := os.ReadFile(name)
	if err != nil {
		return nil, err
	}
	f, err := modfile.Parse(name, data, nil)
	if err != nil {
		return nil, err
	}
	if f.Module == nil || !isOurs(f.Module.Mod.Path) {
		return nil, fmt.Errorf("%s: not a module of %s", name, modulePrefix)
	}
	return &mod{dir: dir, data: data, file: f}, nil
}

// ours returns the requirements on this repository's modules.
func (m *mod) ours() []module.Version {
	var vs []module.Version
	for _, r := range m.file.Require {
		if isOurs(r.Mod.Path) {
			vs = append(vs, r.Mod)
		}
	}
	return vs
}

// replaced reports whether the module's go.mod replaces v.
func (m *mod) replaced(v module.Version) bool {
	for _, r := range m.file.Replace {
		if r.Old.Path == v.Path && (r.Old.Version == "" || r.Old.Version == v.Version) {
			return true
		}
	}
	return false
}

// readVersion reads VERSION.
func readVersion(root string) (string, error) {
	data, err := os.ReadFile(filepath.Join(root, versionFile))
	if err != nil {
		return "", err
	}
	v := strings.TrimSpace(string(data))
	if err := checkVersion(v); err != nil {
		return "", fmt.Errorf("%s: %w", versionFile, err)
	}
	return v, nil
}

// checkVersion accepts the versions this repository's module paths allow: a
// canonical semantic version without build metadata, major version 0 or 1
// (v2 and later need a /v2 suffix on every module path).
func checkVersion(v string) error {
	switch {
	case !semver.IsValid(v) || semver.Canonical(v) != v:
		return fmt.Errorf("%q is not a canonical semantic version such as v1.2.3", v)
	case semver.Major(v) != "v0" && semver.Major(v) != "v1":
		return fmt.Errorf("%s: major version %s needs the module paths to end in /%s", v, semver.Major(v), semver.Major(v))
	}
	return nil
}

// readWork reads the root's go.work.
func readWork(root string) (*modfile.WorkFile, []byte, error) {
	name := filepath.Join(root, "go.work")
	data, err := os.ReadFile(name)
	if err != nil {
		return nil, nil, err
	}
	wf, err := modfile.ParseWork(name, data, nil)
	return wf, data, err
}

// dirsByPath maps the module paths of the given modules to their directories.
func dirsByPath(mods []*mod) map[string]string {
	dirs := map[string]string{}
	for _, m := range mods {
		dirs[m.path()] = m.dir
	}
	return dirs
}

// checkGraph checks the invariants of a tree at version v, for the modules
// given: each requires our modules at v only; a released one has no replace
// directive (the go command refuses to install from a module with one), and
// requires only released modules listed before it; go.work replaces every
// version of ours that a workspace module requires by its directory (a
// workspace still reads the go.mod of every version required, and v is on no
// proxy until it is tagged).
func checkGraph(root, v string, mods []*mod, wf *modfile.WorkFile) error {
	var errs []error
	dirs := dirsByPath(mods)
	needWork := map[module.Version]bool{}
	for _, m := range mods {
		for _, r := range m.ours() {
			if r.Version != v {
				errs = append(errs, fmt.Errorf("%s requires %s %s, the tree is at %s (%s): run scripts/release %s", m.dir, r.Path, r.Version, v, versionFile, v))
			}
			if !m.replaced(r) {
				needWork[r] = true
			}
		}
		if !isReleased(m.dir) {
			continue
		}
		for _, r := range m.file.Replace {
			errs = append(errs, fmt.Errorf("%s is released and has a replace directive (%s => %s): go install refuses modules with one; the workspace (go.work) replaces our modules for local work", m.dir, r.Old.Path, r.New.Path))
		}
		for _, r := range m.ours() {
			d, ok := dirs[r.Path]
			if !ok {
				continue
			}
			if !isReleased(d) || slices.Index(released, d) >= slices.Index(released, m.dir) {
				errs = append(errs, fmt.Errorf("%s requires %s (%s), which is not a released module before it: update released in test/release/modules.go", m.dir, r.Path, d))
			}
		}
	}
	if wf != nil {
		replaces := map[module.Version]string{}
		for _, r := range wf.Replace {
			if isOurs(r.Old.Path) {
				replaces[r.Old] = path.Clean(filepath.ToSlash(r.New.Path))
				if r.Old.Version != v {
					errs = append(errs, fmt.Errorf("go.work replaces %s %s, the tree is at %s: run scripts/release %s", r.Old.Path, r.Old.Version, v, v))
				}
			}
		}
		for r := range needWork {
			d, ok := dirs[r.Path]
			if !ok {
				continue
			}
			if got, ok := replaces[r]; !ok || got != d {
				errs = append(errs, fmt.Errorf("go.work must have: replace %s %s => ./%s", r.Path, r.Version, strings.TrimPrefix(d, ".")))
			}
		}
	}
	return errors.Join(errs...)
}

// sumLines splits a go.sum into its lines for our modules and the rest.
func sumLines(data []byte) (ours, rest []string) {
	for line := range strings.Lines(string(data)) {
		line = strings.TrimSuffix(line, "\n")
		if line == "" {
			continue
		}
		if f := strings.Fields(line); len(f) > 0 && isOurs(f[0]) {
			ours = append(ours, line)
		} else {
			rest = append(rest, line)
		}
	}
	return ours, rest
}

// formatSum writes go.sum lines in the go command's order: by module and
// version (module.Sort, which puts "v1.2.3" before "v1.2.3/go.mod"), then by
// hash, without duplicates.
func formatSum(lines []string) []byte {
	hashes := map[module.Version][]string{}
	for _, line := range lines {
		f := strings.Fields(line)
		if len(f) != 3 {
			continue
		}
		m := module.Version{Path: f[0], Version: f[1]}
		hashes[m] = append(hashes[m], f[2])
	}
	mods := make([]module.Version, 0, len(hashes))
	for m := range hashes {
		mods = append(mods, m)
	}
	module.Sort(mods)
	var buf bytes.Buffer
	for _, m := range mods {
		hs := hashes[m]
		slices.Sort(hs)
		for _, h := range slices.Compact(hs) {
			fmt.Fprintf(&buf, "%s %s %s\n", m.Path, m.Version, h)
		}
	}
	return buf.Bytes()
}
