package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"golang.org/x/mod/modfile"
	"golang.org/x/mod/module"
	"golang.org/x/mod/semver"
	modzip "golang.org/x/mod/zip"
)

// The modules a release publishes, by directory, and what the test runs of
// each.
var releasedPaths = map[string]string{
	".":               "github.com/outboxrelay/outbox",
	"outboxtemporal":  "github.com/outboxrelay/outbox/outboxtemporal",
	"console":         "github.com/outboxrelay/outbox/console",
	"cmd/outbox":      "github.com/outboxrelay/outbox/cmd/outbox",
	"cmd/outbox-demo": "github.com/outboxrelay/outbox/cmd/outbox-demo",
}

// TestRelease releases a copy of this tree the way docs/releasing.md says,
// and then uses it the way the README's Install section says, from outside
// the repository: the copy is committed, scripts/release sets a version no
// proxy or module cache has seen, the release is committed, and a file-based
// module proxy serves each released module's zip, built from that commit as
// proxy.golang.org builds it from a tag (zip.CreateFromVCS). With the go
// command pointed at that proxy first (and at the usual one, without
// "direct", for everything else):
//
//   - go mod download of every released module: the go command hashes what
//     the proxy serves, and every go.sum line scripts/release wrote for our
//     modules must be exactly that;
//   - each released module loaded on its own go.mod and go.sum (GOWORK=off
//     in its directory, as in a clone of the tag): the go command checks
//     each of our modules it downloads against that go.sum, and refuses a
//     missing or wrong line;
//   - go install -n -tags temporal …/cmd/outbox@V: the command's Temporal
//     build resolves outside any module;
//   - go install …/cmd/outbox@V, then the installed outbox --help;
//   - go run …/cmd/outbox-demo@V --help;
//   - a new module, no replace, requiring the library and the Temporal
//     adapter at V and calling both: go mod tidy, go build, run.
//
// The go command refuses to install or run pkg@version from a module with a
// replace directive, and cannot resolve a version the proxy lacks. (It does
// not read that module's go.sum: go install pkg@V checks downloads against
// sum.golang.org only, which GONOSUMDB turns off here for our test versions.
// The go.sum lines matter to a build inside a released module, and keep it
// tidy; the first two checks cover them.) A replace coming back, a wrong or
// missing go.sum line, or a module missing from the release fails here.
//
// -short stops after the checks that compile nothing (seconds); the rest
// compiles the command, the demo and the adapter's Temporal SDK at their
// own modules' versions (under three minutes on two cores with an empty
// build cache, about fifteen seconds once it holds them).
func TestRelease(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	goBin, err := exec.LookPath("go")
	require.NoError(t, err, "the test runs the go command")
	_, err = exec.LookPath("git")
	require.NoError(t, err, "releasing needs git")

	src, err := filepath.Abs(filepath.Join("..", ".."))
	require.NoError(t, err)
	base, err := os.ReadFile(filepath.Join(src, versionFile))
	require.NoError(t, err)
	v := strings.TrimSpace(string(base))
	v = strings.TrimSuffix(v, semver.Prerelease(v))
	// A version of its own: the module cache never has it, so nothing
	// downloaded by an earlier run (or an earlier tree) can stand in for it.
	version := fmt.Sprintf("%s-test.%d", v, time.Now().UnixNano())
	require.NoError(t, checkVersion(version))

	tmp := t.TempDir()
	tree := filepath.Join(tmp, "outbox")
	copyTree(t, ctx, src, tree)
	env := environ(map[string]string{
		"GOWORK": "", "GIT_CONFIG_NOSYSTEM": "1", "GIT_CONFIG_GLOBAL": os.DevNull,
	})
	commit := func(msg string) {
		cmdOut(t, ctx, tree, env, "git", "add", "-A")
		cmdOut(t, ctx, tree, env, "git", "-c", "user.name=release test", "-c", "user.email=release-test@invalid",
			"-c", "commit.gpgsign=false", "commit", "-q", "--no-verify", "-m", msg)
	}
	cmdOut(t, ctx, tree, env, "git", "init", "-q")
	commit("the tree")

	out := cmdOut(t, ctx, tree, env, "bash", "scripts/release", version)
	require.Contains(t, out, "The tree is at "+version)
	for dir := range releasedPaths {
		require.Contains(t, out, "git tag "+tagName(dir, version))
	}
	commit("Release " + version)
	require.Equal(t, version+"\n", readFile(t, filepath.Join(tree, versionFile)))

	// The tree as released: the released modules are exactly those, with no
	// replace, and every module requires ours at the version only.
	goMods := map[string]*modfile.File{}
	require.NoError(t, filepath.WalkDir(tree, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() && (d.Name() == ".git" || d.Name() == "testdata") {
			return errOr(err, filepath.SkipDir)
		}
		if d.Name() == "go.mod" {
			rel, err := filepath.Rel(tree, filepath.Dir(p))
			require.NoError(t, err)
			f, err := modfile.Parse(p, []byte(readFile(t, p)), nil)
			require.NoError(t, err)
			goMods[filepath.ToSlash(rel)] = f
		}
		return nil
	}))
	var releasedDirs []string
	for dir, f := range goMods {
		for _, r := range f.Require {
			if strings.HasPrefix(r.Mod.Path, "github.com/outboxrelay/") {
				require.Equal(t, version, r.Mod.Version, "%s requires %s", dir, r.Mod.Path)
			}
		}
		if dir == "test" || strings.HasPrefix(dir, "test/") {
			continue
		}
		releasedDirs = append(releasedDirs, dir)
		require.Equal(t, releasedPaths[dir], f.Module.Mod.Path, "module in %s", dir)
		require.Empty(t, f.Replace, "%s is released: go install refuses a module with replace directives", dir)
	}
	require.ElementsMatch(t, slices.Collect(maps.Keys(releasedPaths)), releasedDirs, "the modules outside test/")

	// The proxy.
	proxy := filepath.Join(tmp, "proxy")
	for dir, p := range releasedPaths {
		serve(t, tree, proxy, dir, module.Version{Path: p, Version: version})
	}
	cacheEnv := environ(nil)
	modCache := strings.TrimSpace(cmdOut(t, ctx, tmp, cacheEnv, goBin, "env", "GOMODCACHE"))
	upstream := strings.TrimSpace(cmdOut(t, ctx, tmp, cacheEnv, goBin, "env", "GOPROXY"))
	t.Cleanup(func() { forget(t, modCache, version) })
	work := filepath.Join(tmp, "work")
	require.NoError(t, os.Mkdir(work, 0o755))
	outside := environ(map[string]string{
		"GOWORK":    "off",
		"GOPROXY":   proxyList("file://"+filepath.ToSlash(proxy), upstream),
		"GONOSUMDB": "github.com/outboxrelay/*",
		"GOPRIVATE": "",
		"GONOPROXY": "",
		// -modcacherw so that forget can remove this version from the module
		// cache; -buildvcs=false so that no build looks up the copy's commit
		// (the go command would record it as a pseudo-version in the cache).
		"GOFLAGS":     "-modcacherw -buildvcs=false",
		"GOTOOLCHAIN": "local",
		"GOBIN":       filepath.Join(tmp, "bin"),
	})

	t.Run("go.sum", func(t *testing.T) {
		t.Parallel()
		args := []string{"mod", "download", "-json"}
		for _, p := range releasedPaths {
			args = append(args, p+"@"+version)
		}
		out := cmdStdout(t, ctx, work, outside, goBin, args...)
		sums := map[string][2]string{}
		dec := json.NewDecoder(strings.NewReader(out))
		for {
			var m struct{ Path, Version, Error, Sum, GoModSum string }
			if err := dec.Decode(&m); errors.Is(err, io.EOF) {
				break
			} else {
				require.NoError(t, err)
			}
			require.Empty(t, m.Error, m.Path)
			require.Equal(t, version, m.Version)
			sums[m.Path] = [2]string{m.Sum, m.GoModSum}
		}
		require.Len(t, sums, len(releasedPaths))
		for dir := range releasedPaths {
			var want []string
			for _, r := range goMods[dir].Require {
				if s, ok := sums[r.Mod.Path]; ok {
					want = append(want, r.Mod.Path+" "+version+" "+s[0], r.Mod.Path+" "+version+"/go.mod "+s[1])
				}
			}
			got, _ := sumLines([]byte(readFile(t, filepath.Join(tree, dir, "go.sum"))))
			require.ElementsMatch(t, want, got, "the lines for our modules in %s/go.sum", dir)
		}
	})

	t.Run("each released module on its own go.sum", func(t *testing.T) {
		t.Parallel()
		for dir := range releasedPaths {
			// -deps loads every package the module's builds and tests
			// import, -tags temporal the command's Temporal mode too.
			out := cmdStdout(t, ctx, filepath.Join(tree, dir), outside, goBin,
				"list", "-deps", "-test", "-tags", "temporal", "-f", "{{with .Module}}{{.Path}}@{{.Version}}{{end}}", "./...")
			for _, r := range goMods[dir].Require {
				if slices.Contains(slices.Collect(maps.Values(releasedPaths)), r.Mod.Path) {
					require.Contains(t, out, r.Mod.Path+"@"+version+"\n", "%s loads %s from the proxy", dir, r.Mod.Path)
				}
			}
		}
	})

	t.Run("resolve the command with -tags temporal", func(t *testing.T) {
		t.Parallel()
		// -n prints the build instead of running it, once every module it
		// needs is resolved and downloaded: with the tag, outboxtemporal too.
		out := cmdOut(t, ctx, work, outside, goBin, "install", "-n", "-tags", "temporal", releasedPaths["cmd/outbox"]+"@"+version)
		require.Contains(t, out, releasedPaths["outboxtemporal"]+"@"+version)
	})

	t.Run("install the command", func(t *testing.T) {
		t.Parallel()
		if testing.Short() {
			t.Skip("-short: compiles the outbox command")
		}
		cmdPath := releasedPaths["cmd/outbox"]
		cmdOut(t, ctx, work, outside, goBin, "install", cmdPath+"@"+version)
		bin := filepath.Join(tmp, "bin", "outbox")
		out := cmdOut(t, ctx, work, outside, bin, "--help")
		require.Contains(t, out, "Usage: outbox <command> [flags]")
		require.Contains(t, out, "deliver outbox events to Svix until stopped")
		info := cmdOut(t, ctx, work, outside, goBin, "version", "-m", bin)
		require.Contains(t, info, "\tmod\t"+cmdPath+"\t"+version+"\t")
		require.Contains(t, info, "\tdep\t"+releasedPaths["."]+"\t"+version+"\t")
	})

	t.Run("run the demo", func(t *testing.T) {
		t.Parallel()
		if testing.Short() {
			t.Skip("-short: compiles the demo")
		}
		out := cmdOut(t, ctx, work, outside, goBin, "run", releasedPaths["cmd/outbox-demo"]+"@"+version, "--help")
		require.Contains(t, out, "Usage: outbox-demo [flags]")
	})

	t.Run("require the library and the adapter", func(t *testing.T) {
		t.Parallel()
		if testing.Short() {
			t.Skip("-short: compiles the Temporal SDK")
		}
		dir := filepath.Join(tmp, "service")
		require.NoError(t, os.Mkdir(dir, 0o755))
		goLine := goMods["."].Go.Version
		if v := goMods["outboxtemporal"].Go.Version; semver.Compare("v"+v, "v"+goLine) > 0 {
			goLine = v
		}
		writeFile(t, filepath.Join(dir, "go.mod"), fmt.Sprintf(
			"module example.com/service\n\ngo %s\n\nrequire (\n\t%s %s\n\t%s %s\n)\n",
			goLine, releasedPaths["."], version, releasedPaths["outboxtemporal"], version))
		// The third-party hashes a service would get from sum.golang.org,
		// taken from the released go.sum files instead: no lookups but the
		// proxy's. The lines for our modules the go command writes itself.
		var third []string
		for _, d := range []string{".", "outboxtemporal"} {
			_, rest := sumLines([]byte(readFile(t, filepath.Join(tree, d, "go.sum"))))
			third = append(third, rest...)
		}
		writeFile(t, filepath.Join(dir, "go.sum"), string(formatSum(third)))
		writeFile(t, filepath.Join(dir, "main.go"), serviceMain)
		cmdOut(t, ctx, dir, outside, goBin, "mod", "tidy")
		f, err := modfile.Parse("go.mod", []byte(readFile(t, filepath.Join(dir, "go.mod"))), nil)
		require.NoError(t, err)
		require.Empty(t, f.Replace)
		var ours []string
		for _, r := range f.Require {
			if strings.HasPrefix(r.Mod.Path, "github.com/outboxrelay/") {
				ours = append(ours, r.Mod.String())
			}
		}
		require.ElementsMatch(t, []string{releasedPaths["."] + "@" + version, releasedPaths["outboxtemporal"] + "@" + version}, ours)
		bin := filepath.Join(dir, "service")
		cmdOut(t, ctx, dir, outside, goBin, "build", "-o", bin, ".")
		require.Equal(t, "append refused: true\nsignaler refused: true\n", cmdOut(t, ctx, dir, outside, bin))
	})
}

// serviceMain calls the library and the adapter, without a database or a
// Temporal server: both refuse their input before needing one.
const serviceMain = `package main

import (
	"context"
	"errors"
	"fmt"

	"github.com/outboxrelay/outbox"
	"github.com/outboxrelay/outbox/outboxtemporal"
)

func main() {
	_, err := outbox.Append(context.Background(), nil, outbox.AppendParams{
		OrganizationID: "org_1",
		EventType:      "audit_log:created",
		Payload:        map[string]any{"id": 1},
	})
	fmt.Println("append refused:", errors.Is(err, outbox.ErrInvalidEventType))
	_, err = outboxtemporal.NewSignaler(outboxtemporal.SignalerConfig{})
	fmt.Println("signaler refused:", errors.Is(err, outbox.ErrInvalidConfig))
}
`

// copyTree copies the files git would commit in src (tracked, or untracked
// and not ignored; every file but .git when src is no git clone) into dst.
func copyTree(t *testing.T, ctx context.Context, src, dst string) {
	t.Helper()
	var files []string
	top, err := exec.CommandContext(ctx, "git", "-C", src, "rev-parse", "--show-toplevel").Output()
	if err == nil && sameDir(strings.TrimSpace(string(top)), src) {
		out := cmdStdout(t, ctx, src, environ(nil), "git", "ls-files", "-z", "--cached", "--others", "--exclude-standard")
		files = strings.Split(strings.TrimSuffix(out, "\x00"), "\x00")
	} else {
		require.NoError(t, filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
			if err != nil || d.IsDir() && d.Name() == ".git" {
				return errOr(err, filepath.SkipDir)
			}
			if !d.IsDir() {
				rel, err := filepath.Rel(src, p)
				require.NoError(t, err)
				files = append(files, filepath.ToSlash(rel))
			}
			return nil
		}))
	}
	for _, f := range files {
		from, to := filepath.Join(src, filepath.FromSlash(f)), filepath.Join(dst, filepath.FromSlash(f))
		info, err := os.Lstat(from)
		if errors.Is(err, fs.ErrNotExist) {
			continue // deleted in the work tree
		}
		require.NoError(t, err)
		require.NoError(t, os.MkdirAll(filepath.Dir(to), 0o755))
		switch {
		case info.Mode()&fs.ModeSymlink != 0:
			target, err := os.Readlink(from)
			require.NoError(t, err)
			require.NoError(t, os.Symlink(target, to))
		case info.Mode().IsRegular():
			data, err := os.ReadFile(from)
			require.NoError(t, err)
			require.NoError(t, os.WriteFile(to, data, info.Mode().Perm()))
		}
	}
}

// serve puts module version m, the module in dir of the committed tree, into
// a file-based module proxy (the GOPROXY protocol's layout).
func serve(t *testing.T, tree, proxy, dir string, m module.Version) {
	t.Helper()
	escPath, err := module.EscapePath(m.Path)
	require.NoError(t, err)
	escVersion, err := module.EscapeVersion(m.Version)
	require.NoError(t, err)
	vdir := filepath.Join(proxy, filepath.FromSlash(escPath), "@v")
	require.NoError(t, os.MkdirAll(vdir, 0o755))
	subdir := ""
	if dir != "." {
		subdir = dir
	}
	var zip bytes.Buffer
	require.NoError(t, modzip.CreateFromVCS(&zip, m, tree, "HEAD", subdir))
	info, err := json.Marshal(map[string]string{"Version": m.Version, "Time": time.Now().UTC().Format(time.RFC3339)})
	require.NoError(t, err)
	writeFile(t, filepath.Join(vdir, escVersion+".zip"), zip.String())
	writeFile(t, filepath.Join(vdir, escVersion+".mod"), readFile(t, filepath.Join(tree, dir, "go.mod")))
	writeFile(t, filepath.Join(vdir, escVersion+".info"), string(info))
	writeFile(t, filepath.Join(vdir, "list"), m.Version+"\n")
}

// forget removes version v of our modules from the module cache, where the
// test's go commands put them (the version is the test's alone): the
// extracted module, the download cache's files for v, v's line in its list
// file, and the directories this leaves empty.
func forget(t *testing.T, modCache, v string) {
	escVersion, err := module.EscapeVersion(v)
	require.NoError(t, err)
	for _, p := range releasedPaths {
		escPath, err := module.EscapePath(p)
		require.NoError(t, err)
		extracted := filepath.Join(modCache, filepath.FromSlash(escPath)+"@"+escVersion)
		require.NoError(t, os.RemoveAll(extracted))
		removeEmptyDirs(modCache, filepath.Dir(extracted))
		vdir := filepath.Join(modCache, "cache", "download", filepath.FromSlash(escPath), "@v")
		downloads, err := filepath.Glob(filepath.Join(vdir, escVersion+".*"))
		require.NoError(t, err)
		for _, f := range downloads {
			require.NoError(t, os.Remove(f))
		}
		list := filepath.Join(vdir, "list")
		if data, err := os.ReadFile(list); err == nil {
			var keep []string
			for line := range strings.Lines(string(data)) {
				if strings.TrimSpace(line) != v {
					keep = append(keep, line)
				}
			}
			if len(keep) == 0 {
				require.NoError(t, os.Remove(list))
			} else {
				require.NoError(t, os.WriteFile(list, []byte(strings.Join(keep, "")), 0o644))
			}
		}
		removeEmptyDirs(modCache, vdir)
	}
}

// removeEmptyDirs removes dir and its parents below top while they are empty.
func removeEmptyDirs(top, dir string) {
	for strings.HasPrefix(dir, top+string(filepath.Separator)) && os.Remove(dir) == nil {
		dir = filepath.Dir(dir)
	}
}

// proxyList is first, then the proxies of upstream (a GOPROXY value), less
// "direct" and "off": nothing is fetched from a version control server.
func proxyList(first, upstream string) string {
	list := []string{first}
	for _, p := range strings.FieldsFunc(upstream, func(r rune) bool { return r == ',' || r == '|' }) {
		if p != "direct" && p != "off" && p != "" {
			list = append(list, p)
		}
	}
	if len(list) == 1 {
		list = append(list, "off")
	}
	return strings.Join(list, ",")
}

// environ is the process's environment with the variables in set set (or,
// with an empty value, unset).
func environ(set map[string]string) []string {
	var env []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		if _, ok := set[k]; !ok {
			env = append(env, kv)
		}
	}
	for k, v := range set {
		if v != "" {
			env = append(env, k+"="+v)
		}
	}
	return env
}

// cmdOut runs a command and returns its output, stdout and stderr together.
func cmdOut(t *testing.T, ctx context.Context, dir string, env []string, name string, args ...string) string {
	t.Helper()
	var out bytes.Buffer
	cmdRun(t, ctx, dir, env, &out, &out, name, args...)
	return out.String()
}

// cmdStdout runs a command and returns its stdout.
func cmdStdout(t *testing.T, ctx context.Context, dir string, env []string, name string, args ...string) string {
	t.Helper()
	var stdout, stderr bytes.Buffer
	cmdRun(t, ctx, dir, env, &stdout, &stderr, name, args...)
	return stdout.String()
}

func cmdRun(t *testing.T, ctx context.Context, dir string, env []string, stdout, stderr *bytes.Buffer, name string, args ...string) {
	t.Helper()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir, cmd.Env, cmd.Stdout, cmd.Stderr = dir, env, stdout, stderr
	start := time.Now()
	err := cmd.Run()
	t.Logf("%s %s (in %s): %s", path.Base(name), strings.Join(args, " "), dir, time.Since(start).Round(time.Millisecond))
	require.NoError(t, err, "%s %s in %s:\n%s%s", name, strings.Join(args, " "), dir, stdout, stderr)
}

func readFile(t *testing.T, name string) string {
	t.Helper()
	data, err := os.ReadFile(name)
	require.NoError(t, err)
	return string(data)
}

func writeFile(t *testing.T, name, data string) {
	t.Helper()
	require.NoError(t, os.WriteFile(name, []byte(data), 0o644))
}

func sameDir(a, b string) bool {
	a, errA := filepath.EvalSymlinks(a)
	b, errB := filepath.EvalSymlinks(b)
	return errA == nil && errB == nil && a == b
}

// errOr is err when there is one, else skip: WalkDir's answer for an error,
// or for a directory to skip.
func errOr(err, skip error) error {
	if err != nil {
		return err
	}
	return skip
}
