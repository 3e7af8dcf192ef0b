// Package svixid holds Svix's rules for the identifiers outbox sends it: an
// application uid (an organization id, by default) and an event type. The
// producer checks them when an event is appended and the relay again before
// it puts one in a URL, so both read the rules from here.
package svixid

import (
	"strconv"
	"strings"
	"unicode/utf8"
)

// MaxLen is Svix's limit on uids, eventIds and event types.
const MaxLen = 256

// Rule returns "" when s is 1 to 256 characters of [a-zA-Z0-9-_.], the
// pattern Svix requires of uids, eventIds and event types, and the broken
// rule otherwise.
func Rule(s string) string {
	if s == "" {
		return "must not be empty"
	}
	if len(s) > MaxLen {
		return "must be at most 256 characters, has " + strconv.Itoa(len(s))
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '_' || c == '.') {
			what := strconv.QuoteRune(rune(c))
			if c >= utf8.RuneSelf {
				what = "a non-ASCII character"
			}
			return "must contain only [a-zA-Z0-9-_.], has " + what + " at byte " + strconv.Itoa(i)
		}
	}
	return ""
}

// AppUIDRule returns "" when s can be a Svix application uid, and the broken
// rule otherwise: Rule; not starting with "app_" (Svix's own application
// ids); and not "." or "..", which the SDK would splice unescaped into the
// URL path (/api/v1/app/../msg is another route).
func AppUIDRule(s string) string {
	if rule := Rule(s); rule != "" {
		return rule
	}
	if strings.HasPrefix(s, "app_") {
		return `must not start with "app_", which Svix reserves for its own application ids`
	}
	if s == "." || s == ".." {
		return `must not be "." or "..": it goes into Svix's URL paths unescaped`
	}
	return ""
}

// Quote shortens s for an error message and quotes it.
func Quote(s string) string {
	if len(s) > 40 {
		s = s[:40] + "..."
	}
	return strconv.Quote(s)
}
