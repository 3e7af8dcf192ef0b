package relay

import (
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/stretchr/testify/require"
)

// Whatever Svix or a proxy in front of it answers must be storable, or the
// settlement would fail on every try and the lane never move.
func TestCleanText(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, in, want string
		n              int
	}{
		{"plain", `{"code":"x"}`, `{"code":"x"}`, 100},
		{"NUL", "a\x00b", "ab", 100},
		{"invalid UTF-8", "a\xffb", "a\uFFFDb", 100},
		{"truncated", strings.Repeat("x", 10), "xxxx", 4},
		{"truncated inside a rune", "ab✓", "ab", 4},
	}
	for _, tt := range tests {
		got := cleanText(tt.in, tt.n)
		require.Equal(t, tt.want, got, tt.name)
		require.True(t, utf8.ValidString(got), tt.name)
		require.LessOrEqual(t, len(got), tt.n, tt.name)
	}
}
