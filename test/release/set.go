package main

import (
	"archive/zip"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"slices"
	"strings"

	"golang.org/x/mod/modfile"
	"golang.org/x/mod/module"
	"golang.org/x/mod/sumdb/dirhash"
	modzip "golang.org/x/mod/zip"
)

// set sets the tree to version v: VERSION, every module's requirements on
// our modules, go.work's replaces, and the released modules' go.sum lines
// for the modules of ours they require. Those lines are the h1: hashes of
// the required modules' zips and go.mod files at v, computed as the go
// command computes them from what a proxy serves once the release commit is
// tagged, so each released module is hashed only after its own go.sum is
// final: in dependency order (released).
func set(root, v string, allowDirty bool, out io.Writer) error {
	if err := checkVersion(v); err != nil {
		return err
	}
	ctx := context.Background()
	g := git{dir: root}
	if err := g.checkRoot(ctx); err != nil {
		return err
	}
	if !allowDirty {
		status, err := g.output(ctx, nil, "status", "--porcelain", "--untracked-files=all")
		if err != nil {
			return err
		}
		if status != "" {
			return fmt.Errorf("the work tree has changes; commit them first (or pass -allow-dirty and then commit everything, with git add -A: the hashes cover the whole work tree):\n%s", status)
		}
	}

	dirs, err := g.moduleDirs(ctx)
	if err != nil {
		return err
	}
	for _, d := range dirs {
		if !isReleased(d) && d != "test" && !strings.HasPrefix(d, "test/") {
			return fmt.Errorf("module %s is neither released nor under test/: add it to released in test/release/modules.go", d)
		}
	}
	for _, d := range released {
		if !slices.Contains(dirs, d) {
			return fmt.Errorf("released module %s has no go.mod", d)
		}
	}

	// VERSION, the requirements, go.work.
	if err := writeIfChanged(filepath.Join(root, versionFile), []byte(v+"\n")); err != nil {
		return err
	}
	var mods []*mod
	for _, d := range dirs {
		m, err := readMod(root, d)
		if err != nil {
			return err
		}
		for _, r := range m.ours() {
			if err := m.file.AddRequire(r.Path, v); err != nil {
				return err
			}
		}
		m.file.Cleanup()
		m.data = modfile.Format(m.file.Syntax)
		if err := writeIfChanged(goModPath(root, d), m.data); err != nil {
			return err
		}
		mods = append(mods, m)
	}
	wf, err := setWork(root, v)
	if err != nil {
		return err
	}
	if err := checkGraph(root, v, mods, wf); err != nil {
		return err
	}

	// The go.sum lines, in dependency order.
	index, err := os.MkdirTemp("", "outbox-release-")
	if err != nil {
		return err
	}
	defer func() { _ = os.RemoveAll(index) }()
	g.env = []string{"GIT_INDEX_FILE=" + filepath.Join(index, "index")}
	if _, err := g.output(ctx, nil, "rev-parse", "--verify", "--quiet", "HEAD"); err == nil {
		if _, err := g.output(ctx, nil, "read-tree", "HEAD"); err != nil {
			return err
		}
	}
	byDir := map[string]*mod{}
	for _, m := range mods {
		byDir[m.dir] = m
	}
	sums := map[string]moduleSums{}
	for _, d := range released {
		m := byDir[d]
		if err := writeSums(root, m, v, sums); err != nil {
			return err
		}
		tree, err := g.writeTree(ctx)
		if err != nil {
			return err
		}
		s, err := hashModule(root, tree, module.Version{Path: m.path(), Version: v}, d)
		if err != nil {
			return err
		}
		sums[m.path()] = s
	}

	fmt.Fprintf(out, "The tree is at %s. What the go command will verify, once the commit is tagged:\n", v)
	for _, d := range released {
		p := byDir[d].path()
		fmt.Fprintf(out, "  %s %s %s\n  %s %s/go.mod %s\n", p, v, sums[p].zip, p, v, sums[p].mod)
	}
	fmt.Fprintf(out, "\nNext: commit everything, then tag that commit and push it with its tags (docs/releasing.md):\n  git add -A && git commit -m 'Release %s'\n", v)
	var tags []string
	for _, d := range released {
		tags = append(tags, tagName(d, v))
		fmt.Fprintf(out, "  git tag %s\n", tagName(d, v))
	}
	fmt.Fprintf(out, "  git push origin HEAD %s\n", strings.Join(tags, " "))
	return nil
}

// setWork sets go.work's replaces of our modules to version v.
func setWork(root, v string) (*modfile.WorkFile, error) {
	wf, data, err := readWork(root)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	for _, r := range wf.Replace {
		if !isOurs(r.Old.Path) || r.Old.Version == v {
			continue
		}
		// The old version is the token before "=>" (modfile has no call
		// that changes it in place, keeping the line's place and comments).
		tok := r.Syntax.Token
		i := slices.Index(tok, "=>")
		if r.Old.Version == "" || i < 1 || tok[i-1] != r.Old.Version {
			return nil, fmt.Errorf("go.work: replace %s %s: want a replace of one version of ours", r.Old.Path, r.Old.Version)
		}
		tok[i-1] = v
		r.Old.Version = v
	}
	wf.Cleanup()
	formatted := modfile.Format(wf.Syntax)
	if !bytes.Equal(formatted, data) {
		if err := os.WriteFile(filepath.Join(root, "go.work"), formatted, 0o644); err != nil {
			return nil, err
		}
	}
	return wf, nil
}

// moduleSums are the go.sum hashes of one module version.
type moduleSums struct {
	zip, mod string // h1: of the module zip, and of its go.mod
}

// writeSums rewrites m's go.sum lines for our modules: the two lines of each
// one it requires, at v, from sums (checkGraph has made sure those come
// before it in released), and none for any other version of ours. The other
// lines stay as they are.
func writeSums(root string, m *mod, v string, sums map[string]moduleSums) error {
	name := filepath.Join(filepath.Dir(goModPath(root, m.dir)), "go.sum")
	data, err := os.ReadFile(name)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	old, lines := sumLines(data)
	if len(old) == 0 && len(m.ours()) == 0 {
		return nil // nothing of ours: the file stays as it is
	}
	for _, r := range m.ours() {
		s, ok := sums[r.Path]
		if !ok {
			return fmt.Errorf("%s requires %s, whose hashes are not known yet: released is not in dependency order", m.dir, r.Path)
		}
		lines = append(lines, fmt.Sprintf("%s %s %s", r.Path, v, s.zip), fmt.Sprintf("%s %s/go.mod %s", r.Path, v, s.mod))
	}
	return writeIfChanged(name, formatSum(lines))
}

// hashModule returns the hashes the go command records for module version m,
// whose files are those of directory dir in the git tree: the module zip as
// a proxy builds it from a tagged commit (zip.CreateFromVCS does what the go
// command does: git archive, without nested modules and vendored packages,
// plus the repository's LICENSE for a module in a subdirectory that has
// none), hashed by dirhash.HashZip; and the go.mod in that zip, hashed as the
// go command hashes a downloaded go.mod.
func hashModule(root, tree string, m module.Version, dir string) (moduleSums, error) {
	f, err := os.CreateTemp("", "outbox-release-*.zip")
	if err != nil {
		return moduleSums{}, err
	}
	defer func() { _ = os.Remove(f.Name()) }()
	subdir := ""
	if dir != "." {
		subdir = dir
	}
	err = modzip.CreateFromVCS(f, m, root, tree, subdir)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return moduleSums{}, err
	}
	zipSum, err := dirhash.HashZip(f.Name(), dirhash.Hash1)
	if err != nil {
		return moduleSums{}, err
	}
	goMod, err := readZipFile(f.Name(), m.Path+"@"+m.Version+"/go.mod")
	if err != nil {
		return moduleSums{}, err
	}
	modSum, err := goModSum(goMod)
	if err != nil {
		return moduleSums{}, err
	}
	return moduleSums{zip: zipSum, mod: modSum}, nil
}

// goModSum is the hash of a go.mod file in go.sum (cmd/go's modfetch.goModSum).
func goModSum(data []byte) (string, error) {
	return dirhash.Hash1([]string{"go.mod"}, func(string) (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(data)), nil
	})
}

func readZipFile(zipName, name string) ([]byte, error) {
	zr, err := zip.OpenReader(zipName)
	if err != nil {
		return nil, err
	}
	defer func() { _ = zr.Close() }()
	rc, err := zr.Open(name)
	if err != nil {
		return nil, err
	}
	defer func() { _ = rc.Close() }()
	return io.ReadAll(rc)
}

func writeIfChanged(name string, data []byte) error {
	if old, err := os.ReadFile(name); err == nil && bytes.Equal(old, data) {
		return nil
	}
	return os.WriteFile(name, data, 0o644)
}

// git runs git in the repository at dir, with env added to its environment.
type git struct {
	dir string
	env []string
}

func (g git) output(ctx context.Context, stdin io.Reader, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, "git", args...)
	cmd.Dir = g.dir
	cmd.Env = append(os.Environ(), g.env...)
	cmd.Stdin = stdin
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("git %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return stdout.String(), nil
}

// checkRoot makes sure dir is the top of a git work tree whose .git is the
// repository (zip.CreateFromVCS wants that: a linked worktree's .git is a file).
func (g git) checkRoot(ctx context.Context) error {
	out, err := g.output(ctx, nil, "rev-parse", "--absolute-git-dir")
	if err != nil {
		return fmt.Errorf("releasing needs the git clone: %w", err)
	}
	gitDir, err1 := filepath.EvalSymlinks(strings.TrimSpace(out))
	want, err2 := filepath.EvalSymlinks(filepath.Join(g.dir, ".git"))
	if err := errors.Join(err1, err2); err != nil || gitDir != want {
		return fmt.Errorf("run it at the top of a git clone whose .git directory is there (not a linked worktree): git dir is %s", strings.TrimSpace(out))
	}
	return nil
}

// moduleDirs lists the directories of the go.mod files git would commit
// (tracked or not ignored), outside testdata.
func (g git) moduleDirs(ctx context.Context) ([]string, error) {
	out, err := g.output(ctx, nil, "ls-files", "-z", "--cached", "--others", "--exclude-standard")
	if err != nil {
		return nil, err
	}
	var dirs []string
	for _, f := range strings.Split(out, "\x00") {
		if path.Base(f) != "go.mod" || f == "testdata" || strings.HasPrefix(f, "testdata/") || strings.Contains(f, "/testdata/") {
			continue
		}
		if _, err := os.Lstat(filepath.Join(g.dir, filepath.FromSlash(f))); err != nil {
			continue // deleted from the work tree
		}
		dirs = append(dirs, path.Dir(f))
	}
	slices.Sort(dirs)
	return slices.Compact(dirs), nil
}

// writeTree writes the work tree as `git add -A` would stage it into the
// index named by GIT_INDEX_FILE (a temporary one: the clone's own index,
// HEAD and refs are left alone) and returns the tree's id.
func (g git) writeTree(ctx context.Context) (string, error) {
	if _, err := g.output(ctx, nil, "add", "-A"); err != nil {
		return "", err
	}
	out, err := g.output(ctx, nil, "write-tree")
	return strings.TrimSpace(out), err
}
