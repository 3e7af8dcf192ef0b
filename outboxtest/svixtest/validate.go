package svixtest

import (
	"strconv"
	"strings"
)

const maxNameLen = 256

// textRule is Svix's rule for a short identifier: 1 to maxLen characters, each
// allowed by the pattern.
type textRule struct {
	maxLen  int
	allowed func(c byte) bool
	pattern string // the pattern as Svix states it, for error messages
}

var (
	// nameRule is ^[a-zA-Z0-9\-_.]+$, at most 256: event types, event ids, application
	// uids, group names and feature flags.
	nameRule = textRule{maxNameLen, nameByte, `^[a-zA-Z0-9\-_.]+$`}
	// channelRule is a message channel: ^[a-zA-Z0-9\-_.:]+$, at most 128.
	channelRule = textRule{128, func(c byte) bool { return nameByte(c) || c == ':' }, `^[a-zA-Z0-9\-_.:]+$`}
	// tagRule is a message tag: ^[a-zA-Z0-9\-_./\\#]+$, at most 128.
	tagRule = textRule{128, func(c byte) bool { return nameByte(c) || c == '/' || c == '\\' || c == '#' }, `^[a-zA-Z0-9\-_./\\#]+$`}
)

func nameByte(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' ||
		c == '-' || c == '_' || c == '.'
}

// valid reports whether s satisfies the rule.
func (r textRule) valid(s string) bool { return r.problem(s) == "" }

// problem explains why s breaks the rule, or returns "" when it does not.
func (r textRule) problem(s string) string {
	switch {
	case s == "":
		return "ensure this value has at least 1 characters"
	case len(s) > r.maxLen:
		return "ensure this value has at most " + strconv.Itoa(r.maxLen) + " characters"
	}
	for i := 0; i < len(s); i++ {
		if !r.allowed(s[i]) {
			return `string does not match pattern "` + r.pattern + `"`
		}
	}
	return ""
}

// check appends a validation error at loc when value breaks the rule.
func (r textRule) check(errs []fieldError, value string, loc ...string) []fieldError {
	if msg := r.problem(value); msg != "" {
		errs = append(errs, invalid(msg, loc...))
	}
	return errs
}

// listRule is Svix's rule for a list of identifiers: minItems to maxItems unique
// items, each satisfying item.
type listRule struct {
	minItems int
	maxItems int // 0: no limit
	item     textRule
}

var (
	// channelsRule is MessageIn.channels: 1 to 10 unique channels.
	channelsRule = listRule{minItems: 1, maxItems: 10, item: channelRule}
	// tagsRule is MessageIn.tags: at most 5 unique tags.
	tagsRule = listRule{maxItems: 5, item: tagRule}
	// featureFlagsRule is featureFlags of event types: at least 1 unique flag.
	featureFlagsRule = listRule{minItems: 1, item: nameRule}
)

// check validates a present (non-null) list: the count and uniqueness errors are at
// loc, an item's error at loc plus its index ("body","channels","3").
func (r listRule) check(errs []fieldError, items []string, loc ...string) []fieldError {
	switch {
	case len(items) < r.minItems:
		errs = append(errs, invalid("ensure this value has at least "+strconv.Itoa(r.minItems)+" items", loc...))
	case r.maxItems > 0 && len(items) > r.maxItems:
		errs = append(errs, invalid("ensure this value has at most "+strconv.Itoa(r.maxItems)+" items", loc...))
	}
	seen := make(map[string]bool, len(items))
	duplicate := false
	for i, it := range items {
		duplicate = duplicate || seen[it]
		seen[it] = true
		errs = r.item.check(errs, it, append(loc[:len(loc):len(loc)], strconv.Itoa(i))...)
	}
	if duplicate {
		errs = append(errs, invalid("ensure all items are unique", loc...))
	}
	return errs
}

// validName reports whether s matches ^[a-zA-Z0-9\-_.]+$ with at most 256 characters,
// Svix's rule for event types, event ids and application uids.
func validName(s string) bool { return nameRule.valid(s) }

// checkName appends a validation error for field when value is not a valid name.
func checkName(errs []fieldError, value string, loc ...string) []fieldError {
	return nameRule.check(errs, value, loc...)
}

// checkUID validates an application uid: a valid name not starting with "app_".
func checkUID(errs []fieldError, uid string, loc ...string) []fieldError {
	if strings.HasPrefix(uid, appIDPrefix) {
		return append(errs, invalid(`uid must not start with "app_"`, loc...))
	}
	return checkName(errs, uid, loc...)
}

// checkNoControlChars rejects the control characters 0x00-0x08, as Svix does in
// descriptions.
func checkNoControlChars(errs []fieldError, value string, loc ...string) []fieldError {
	for i := 0; i < len(value); i++ {
		if value[i] <= 0x08 {
			return append(errs, invalid("Control characters 0x00-0x08 not allowed.", loc...))
		}
	}
	return errs
}
