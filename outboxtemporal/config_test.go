package outboxtemporal_test

import (
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// Every field of Options and SignalerConfig says its default in its doc
// comment, and docs/configuration.md has a row for it.
func TestDefaultsAreDocumented(t *testing.T) {
	t.Parallel()
	page, err := os.ReadFile("../docs/configuration.md")
	require.NoError(t, err)
	for file, typ := range map[string]string{"options.go": "Options", "signaler.go": "SignalerConfig"} {
		fset := token.NewFileSet()
		f, err := parser.ParseFile(fset, file, nil, parser.ParseComments)
		require.NoError(t, err)
		var fields *ast.FieldList
		ast.Inspect(f, func(n ast.Node) bool {
			if ts, ok := n.(*ast.TypeSpec); ok && ts.Name.Name == typ {
				fields = ts.Type.(*ast.StructType).Fields
			}
			return fields == nil
		})
		require.NotNil(t, fields, typ)
		section := string(page[strings.Index(string(page), "`outboxtemporal."+typ+"`"):])
		for _, field := range fields.List {
			name := field.Names[0].Name
			doc := field.Doc.Text()
			if name != "Client" { // required
				require.Contains(t, strings.Join(strings.Fields(doc), " "), "Defaults to", "%s.%s says its default", typ, name)
			}
			require.Regexp(t, regexp.MustCompile("(?m)^\\| `"+name+"` \\|"), section, "docs/configuration.md has a row for %s.%s", typ, name)
		}
	}
}
