package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"golang.org/x/mod/modfile"
	"golang.org/x/mod/module"
)

// checkOrTidy checks (or, with fix, makes) the modules in dirs at VERSION
// and tidy.
//
// A module that requires one of ours without replacing it (every released
// module but the root) cannot simply be tidied outside a release: `go mod
// tidy` ignores go.work, so it would fetch github.com/outboxrelay/outbox at
// VERSION, which no proxy has until it is tagged, and which, once tagged, is
// not this tree. So its go.mod and go.sum are tidied as copies (-modfile),
// with our modules at VERSION replaced by their directories here (what
// go.work does), and the replace dropped again: go.mod must come out the
// same byte for byte, and go.sum too, but for the lines of our modules.
// Those hash module zips, which a replaced module has none of; scripts/release
// writes them (and its test checks them against the go command). Nothing is
// downloaded for our modules and nothing of ours enters the module cache.
func checkOrTidy(root string, dirs []string, fix bool, stdout, stderr io.Writer) error {
	v, err := readVersion(root)
	if err != nil {
		return err
	}
	var given, all []*mod
	seen := map[string]bool{}
	for _, d := range dirs {
		m, err := readMod(root, d)
		if err != nil {
			return err
		}
		given = append(given, m)
		all = append(all, m)
		seen[m.dir] = true
	}
	for _, d := range released {
		if !seen[d] {
			m, err := readMod(root, d)
			if err != nil {
				return err
			}
			all = append(all, m)
		}
	}
	wf, _, err := readWork(root)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	if err := checkGraph(root, v, all, wf); err != nil {
		return err
	}
	modDirs := dirsByPath(all)
	var failed []string
	for _, m := range given {
		if err := tidy(context.Background(), root, m, modDirs, fix, stdout, stderr); err != nil {
			fmt.Fprintln(stderr, err)
			failed = append(failed, m.dir)
		}
	}
	if len(failed) > 0 {
		return fmt.Errorf("not tidy: %s", strings.Join(failed, " "))
	}
	return nil
}

// tidy runs go mod tidy on m (-diff unless fix): as is when it requires none
// of our modules unreplaced, else on copies of its go.mod and go.sum as
// described at checkOrTidy.
func tidy(ctx context.Context, root string, m *mod, modDirs map[string]string, fix bool, stdout, stderr io.Writer) error {
	dir := filepath.Join(root, filepath.FromSlash(m.dir))
	var ours []module.Version
	for _, r := range m.ours() {
		if !m.replaced(r) {
			ours = append(ours, r)
		}
	}
	if len(ours) == 0 {
		args := []string{"mod", "tidy"}
		if !fix {
			args = append(args, "-diff")
		}
		if err := goCmd(ctx, dir, stdout, stderr, args...); err != nil {
			return fmt.Errorf("go.mod of %s is not tidy: run (cd %s && go mod tidy)", m.dir, m.dir)
		}
		return nil
	}

	tmp, err := os.MkdirTemp("", "outbox-tidy-")
	if err != nil {
		return err
	}
	defer func() { _ = os.RemoveAll(tmp) }()
	f, err := modfile.Parse("go.mod", m.data, nil)
	if err != nil {
		return err
	}
	for _, r := range ours {
		d, ok := modDirs[r.Path]
		if !ok {
			return fmt.Errorf("%s requires %s, which is no module of this tree", m.dir, r.Path)
		}
		if err := f.AddReplace(r.Path, r.Version, filepath.Join(root, filepath.FromSlash(d)), ""); err != nil {
			return err
		}
	}
	f.Cleanup()
	tmpMod, tmpSum := filepath.Join(tmp, "go.mod"), filepath.Join(tmp, "go.sum")
	sumName := filepath.Join(dir, "go.sum")
	sum, err := os.ReadFile(sumName)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	oursSum, restSum := sumLines(sum)
	wantSum := joinLines(restSum)
	if err := errors.Join(os.WriteFile(tmpMod, modfile.Format(f.Syntax), 0o644), os.WriteFile(tmpSum, wantSum, 0o644)); err != nil {
		return err
	}
	var out bytes.Buffer
	if err := goCmd(ctx, dir, &out, &out, "mod", "tidy", "-modfile="+tmpMod); err != nil {
		return fmt.Errorf("go mod tidy in %s (our modules replaced by their directories): %w\n%s", m.dir, err, out.String())
	}

	gotModData, err := os.ReadFile(tmpMod)
	if err != nil {
		return err
	}
	got, err := modfile.Parse("go.mod", gotModData, nil)
	if err != nil {
		return err
	}
	for _, r := range ours {
		if err := got.DropReplace(r.Path, r.Version); err != nil {
			return err
		}
	}
	got.Cleanup()
	gotMod := modfile.Format(got.Syntax)
	gotSumData, err := os.ReadFile(tmpSum)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	_, gotRest := sumLines(gotSumData)
	gotSum := joinLines(gotRest)

	if fix {
		return errors.Join(
			writeIfChanged(goModPath(root, m.dir), gotMod),
			writeIfChanged(sumName, formatSum(append(gotRest, oursSum...))))
	}
	if bytes.Equal(gotMod, m.data) && bytes.Equal(gotSum, wantSum) {
		return nil
	}
	showDiff(stdout, m.dir+"/go.mod", m.data, gotMod)
	showDiff(stdout, m.dir+"/go.sum (but for our modules' lines)", wantSum, gotSum)
	return fmt.Errorf("go.mod of %s is not tidy: run go run ./test/release tidy %s", m.dir, m.dir)
}

func joinLines(lines []string) []byte {
	if len(lines) == 0 {
		return nil
	}
	return []byte(strings.Join(lines, "\n") + "\n")
}

// goCmd runs the go command in dir, outside the workspace.
func goCmd(ctx context.Context, dir string, stdout, stderr io.Writer, args ...string) error {
	cmd := exec.CommandContext(ctx, "go", args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GOWORK=off")
	cmd.Stdout, cmd.Stderr = stdout, stderr
	return cmd.Run()
}

// showDiff prints a unified diff of want and got with diff(1), or says they
// differ when there is no diff.
func showDiff(w io.Writer, name string, want, got []byte) {
	if bytes.Equal(want, got) {
		return
	}
	tmp, err := os.MkdirTemp("", "outbox-tidy-diff-")
	if err == nil {
		defer func() { _ = os.RemoveAll(tmp) }()
		a, b := filepath.Join(tmp, "a"), filepath.Join(tmp, "b")
		if errors.Join(os.WriteFile(a, want, 0o644), os.WriteFile(b, got, 0o644)) == nil {
			cmd := exec.Command("diff", "-u", "--label", name, "--label", name+" (tidy)", a, b)
			cmd.Stdout = w
			if err := cmd.Run(); err != nil {
				var exit *exec.ExitError
				if errors.As(err, &exit) && exit.ExitCode() == 1 {
					return
				}
			}
		}
	}
	fmt.Fprintf(w, "%s differs from what go mod tidy writes\n", name)
}
