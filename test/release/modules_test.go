package main

import (
	"testing"

	"github.com/stretchr/testify/require"
	"golang.org/x/mod/modfile"
)

func parseMod(t *testing.T, dir, text string) *mod {
	t.Helper()
	f, err := modfile.Parse(dir+"/go.mod", []byte(text), nil)
	require.NoError(t, err)
	return &mod{dir: dir, data: []byte(text), file: f}
}

func parseWork(t *testing.T, text string) *modfile.WorkFile {
	t.Helper()
	wf, err := modfile.ParseWork("go.work", []byte(text), nil)
	require.NoError(t, err)
	return wf
}

func TestCheckGraph(t *testing.T) {
	t.Parallel()
	const work = "go 1.26.0\nuse (\n\t.\n\t./outboxtemporal\n)\nreplace (\n\tgithub.com/outboxrelay/outbox v0.1.0 => ./\n\tgithub.com/outboxrelay/outbox/outboxtemporal v0.1.0 => ./outboxtemporal\n)\n"
	tree := func(temporal, cmd, test string) []*mod {
		return []*mod{
			parseMod(t, ".", "module github.com/outboxrelay/outbox\n"),
			parseMod(t, "outboxtemporal", temporal),
			parseMod(t, "cmd/outbox", cmd),
			parseMod(t, "cmd/outbox-demo", "module github.com/outboxrelay/outbox/cmd/outbox-demo\nrequire github.com/outboxrelay/outbox v0.1.0\n"),
			parseMod(t, "test/reliability", test),
		}
	}
	const (
		temporal = "module github.com/outboxrelay/outbox/outboxtemporal\nrequire github.com/outboxrelay/outbox v0.1.0\n"
		cmd      = "module github.com/outboxrelay/outbox/cmd/outbox\nrequire (\n\tgithub.com/outboxrelay/outbox v0.1.0\n\tgithub.com/outboxrelay/outbox/outboxtemporal v0.1.0\n)\n"
		test     = "module github.com/outboxrelay/outbox/test/reliability\nrequire github.com/outboxrelay/outbox v0.1.0\nreplace github.com/outboxrelay/outbox => ../..\n"
	)
	require.NoError(t, checkGraph(".", "v0.1.0", tree(temporal, cmd, test), parseWork(t, work)))

	for name, tc := range map[string]struct {
		mods []*mod
		work string
		want string
	}{
		"released module with a replace": {
			mods: tree(temporal+"replace github.com/outboxrelay/outbox => ../\n", cmd, test), work: work,
			want: "outboxtemporal is released and has a replace directive",
		},
		"requirement at another version": {
			mods: tree(temporal, "module github.com/outboxrelay/outbox/cmd/outbox\nrequire (\n\tgithub.com/outboxrelay/outbox v0.1.0\n\tgithub.com/outboxrelay/outbox/outboxtemporal v0.0.9\n)\n", test), work: work,
			want: "cmd/outbox requires github.com/outboxrelay/outbox/outboxtemporal v0.0.9, the tree is at v0.1.0",
		},
		"test module at another version": {
			mods: tree(temporal, cmd, "module github.com/outboxrelay/outbox/test/reliability\nrequire github.com/outboxrelay/outbox v0.0.0-00010101000000-000000000000\nreplace github.com/outboxrelay/outbox => ../..\n"), work: work,
			want: "test/reliability requires github.com/outboxrelay/outbox v0.0.0-00010101000000-000000000000",
		},
		"released module requiring a later one": {
			mods: tree(temporal+"require github.com/outboxrelay/outbox/cmd/outbox v0.1.0\n", cmd, test), work: work,
			want: "outboxtemporal requires github.com/outboxrelay/outbox/cmd/outbox (cmd/outbox), which is not a released module before it",
		},
		"go.work without the replace": {
			mods: tree(temporal, cmd, test), work: "go 1.26.0\nuse .\nreplace github.com/outboxrelay/outbox v0.1.0 => ./\n",
			want: "go.work must have: replace github.com/outboxrelay/outbox/outboxtemporal v0.1.0 => ./outboxtemporal",
		},
		"go.work at another version": {
			mods: tree(temporal, cmd, test), work: "go 1.26.0\nuse .\nreplace (\n\tgithub.com/outboxrelay/outbox v0.0.9 => ./\n\tgithub.com/outboxrelay/outbox/outboxtemporal v0.1.0 => ./outboxtemporal\n)\n",
			want: "go.work replaces github.com/outboxrelay/outbox v0.0.9, the tree is at v0.1.0",
		},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			err := checkGraph(".", "v0.1.0", tc.mods, parseWork(t, tc.work))
			require.ErrorContains(t, err, tc.want)
		})
	}
}

func TestCheckVersion(t *testing.T) {
	t.Parallel()
	for _, v := range []string{"v0.1.0", "v1.2.3", "v0.1.0-rc.1", "v0.1.0-test.1796314950093470825"} {
		require.NoError(t, checkVersion(v), v)
	}
	for _, v := range []string{"0.1.0", "v0.1", "v1.2.3+meta", "v2.0.0", "latest", ""} {
		require.Error(t, checkVersion(v), v)
	}
}

func TestFormatSum(t *testing.T) {
	t.Parallel()
	// The go command's order: by path, then version with the go.mod line
	// after the module's, then hash; no duplicates.
	got := formatSum([]string{
		"golang.org/x/mod v0.43.0/go.mod h1:b=",
		"github.com/outboxrelay/outbox v0.10.0 h1:c=",
		"golang.org/x/mod v0.43.0 h1:a=",
		"github.com/outboxrelay/outbox v0.9.0/go.mod h1:d=",
		"github.com/outboxrelay/outbox v0.9.0 h1:e=",
		"golang.org/x/mod v0.43.0 h1:a=",
	})
	require.Equal(t, "github.com/outboxrelay/outbox v0.9.0 h1:e=\n"+
		"github.com/outboxrelay/outbox v0.9.0/go.mod h1:d=\n"+
		"github.com/outboxrelay/outbox v0.10.0 h1:c=\n"+
		"golang.org/x/mod v0.43.0 h1:a=\n"+
		"golang.org/x/mod v0.43.0/go.mod h1:b=\n", string(got))
}

func TestTagName(t *testing.T) {
	t.Parallel()
	require.Equal(t, "v0.1.0", tagName(".", "v0.1.0"))
	require.Equal(t, "cmd/outbox/v0.1.0", tagName("cmd/outbox", "v0.1.0"))
}
