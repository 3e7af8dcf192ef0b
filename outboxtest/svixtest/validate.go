package svixtest

import "strings"

const maxNameLen = 256

// validName reports whether s matches ^[a-zA-Z0-9\-_.]+$ with at most 256 characters,
// Svix's rule for event types, event ids and application uids.
func validName(s string) bool {
	if len(s) == 0 || len(s) > maxNameLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !nameByte(s[i]) {
			return false
		}
	}
	return true
}

func nameByte(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' ||
		c == '-' || c == '_' || c == '.'
}

// nameError explains why s is not a valid name, or returns "" when it is.
func nameError(s string) string {
	switch {
	case s == "":
		return "ensure this value has at least 1 characters"
	case len(s) > maxNameLen:
		return "ensure this value has at most 256 characters"
	case !validName(s):
		return `string does not match pattern "^[a-zA-Z0-9\-_.]+$"`
	}
	return ""
}

// checkName appends a validation error for field when value is not a valid name.
func checkName(errs []fieldError, value string, loc ...string) []fieldError {
	if msg := nameError(value); msg != "" {
		errs = append(errs, invalid(msg, loc...))
	}
	return errs
}

// checkUID validates an application uid: a valid name not starting with "app_".
func checkUID(errs []fieldError, uid string, loc ...string) []fieldError {
	if strings.HasPrefix(uid, appIDPrefix) {
		return append(errs, invalid(`uid must not start with "app_"`, loc...))
	}
	return checkName(errs, uid, loc...)
}
