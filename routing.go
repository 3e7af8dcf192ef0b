package outbox

import (
	"strconv"
	"strings"
)

// Svix's rules for a message's channels and tags (its API's MessageIn).
const (
	maxChannels     = 10
	maxTags         = 5
	maxRoutingValue = 128
)

// validateChannels checks AppendParams.Channels against Svix's rules.
func validateChannels(channels []string) *ValidationError {
	return validateRouting("Channels", channels, maxChannels, "[a-zA-Z0-9-_.:]", isChannelChar, ErrInvalidChannels)
}

// validateTags checks AppendParams.Tags against Svix's rules.
func validateTags(tags []string) *ValidationError {
	return validateRouting("Tags", tags, maxTags, `[a-zA-Z0-9-_./\#]`, isTagChar, ErrInvalidTags)
}

func validateRouting(field string, values []string, most int, chars string, ok func(byte) bool, sentinel error) *ValidationError {
	bad := func(rule string) *ValidationError {
		return &ValidationError{Index: -1, Field: field, Rule: rule, Err: sentinel}
	}
	if len(values) > most {
		return bad("at most " + strconv.Itoa(most) + ", got " + strconv.Itoa(len(values)))
	}
	for i, v := range values {
		at := "element " + strconv.Itoa(i)
		if v == "" || len(v) > maxRoutingValue {
			return bad(at + " must be 1 to " + strconv.Itoa(maxRoutingValue) + " characters, got " + strconv.Itoa(len(v)))
		}
		for j := 0; j < len(v); j++ {
			if !ok(v[j]) {
				return bad(at + " must be characters of " + chars + ", got " + strconv.Quote(v))
			}
		}
		for _, w := range values[:i] {
			if w == v {
				return bad(at + " repeats " + strconv.Quote(v) + ": values must be distinct")
			}
		}
	}
	return nil
}

func isIDChar(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.'
}

func isChannelChar(c byte) bool { return isIDChar(c) || c == ':' }

func isTagChar(c byte) bool { return isIDChar(c) || strings.IndexByte(`/\#`, c) >= 0 }
