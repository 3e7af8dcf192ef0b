package outbox_test

import (
	"context"
	"errors"
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/outboxrelay/outbox"
)

func TestErrorsDoNotPanicOnNilValidationError(t *testing.T) {
	t.Parallel()
	// Validate returns a nil error interface on success, not a typed nil.
	err := outbox.EventType("ok").Validate()
	require.True(t, err == nil)
	err = outbox.ValidateOrganizationID("ok")
	require.True(t, err == nil)
	require.False(t, errors.Is(err, outbox.ErrInvalidOrganizationID))
}

// TestSentinelsAreBarePhrases holds every package of the repository to the
// convention errors.go states: a sentinel's message names the condition
// with no package prefix (the functions that return it add theirs), so a
// wrapped sentinel never prints "relay: relay: …".
func TestSentinelsAreBarePhrases(t *testing.T) {
	t.Parallel()
	fset := token.NewFileSet()
	found := 0
	err := filepath.WalkDir(".", func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && (d.Name() == ".git" || d.Name() == "testdata") {
			return filepath.SkipDir
		}
		if d.IsDir() || !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return nil
		}
		f, err := parser.ParseFile(fset, path, nil, 0)
		if err != nil {
			return err
		}
		for _, decl := range f.Decls {
			gen, ok := decl.(*ast.GenDecl)
			if !ok || gen.Tok != token.VAR {
				continue
			}
			for _, spec := range gen.Specs {
				vs := spec.(*ast.ValueSpec)
				for i, name := range vs.Names {
					if !strings.HasPrefix(name.Name, "Err") || i >= len(vs.Values) {
						continue
					}
					msg, ok := errorsNewMessage(vs.Values[i])
					if !ok {
						continue
					}
					found++
					prefix, _, hasColon := strings.Cut(msg, ": ")
					require.False(t, hasColon && !strings.Contains(prefix, " "),
						"%s: %s = errors.New(%q): a sentinel is a bare phrase; the returning function adds the package prefix", path, name.Name, msg)
				}
			}
		}
		return nil
	})
	require.NoError(t, err)
	require.Greater(t, found, 10, "the walk found the sentinels")
}

// errorsNewMessage returns the message of an errors.New("…") call.
func errorsNewMessage(e ast.Expr) (string, bool) {
	call, ok := e.(*ast.CallExpr)
	if !ok || len(call.Args) != 1 {
		return "", false
	}
	sel, ok := call.Fun.(*ast.SelectorExpr)
	if !ok || sel.Sel.Name != "New" {
		return "", false
	}
	if pkg, ok := sel.X.(*ast.Ident); !ok || pkg.Name != "errors" {
		return "", false
	}
	lit, ok := call.Args[0].(*ast.BasicLit)
	if !ok {
		return "", false
	}
	s, err := strconv.Unquote(lit.Value)
	return s, err == nil
}

func TestReturnedErrorsCarryTheirPackagePrefixOnce(t *testing.T) {
	t.Parallel()
	_, err := outbox.Append(context.Background(), nil, outbox.AppendParams{OrganizationID: "org", EventType: "a:b", Payload: map[string]any{}})
	require.EqualError(t, err, `outbox: EventType: must contain only [a-zA-Z0-9-_.], has ':' at byte 1 (got "a:b")`)
	var ve *outbox.ValidationError
	require.ErrorAs(t, err, &ve)
	require.Equal(t, "EventType", ve.Field)
	require.ErrorIs(t, outbox.ValidateOrganizationID(""), outbox.ErrInvalidOrganizationID)
	require.True(t, strings.HasPrefix(outbox.ValidateOrganizationID("").Error(), "outbox: OrganizationID: "))
	_, err = outbox.AppendBatch(context.Background(), nil, []outbox.AppendParams{{OrganizationID: "org", EventType: "ok", Payload: map[string]any{}}, {OrganizationID: "app_x", EventType: "ok", Payload: map[string]any{}}})
	require.ErrorIs(t, err, outbox.ErrInvalidOrganizationID)
	require.True(t, strings.HasPrefix(err.Error(), "outbox: batch element 1: OrganizationID: "), err.Error())
}
