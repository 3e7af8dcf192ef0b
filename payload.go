package outbox

import (
	"bytes"
	"encoding/json"
	"strconv"
	"unicode/utf8"
)

// DefaultMaxPayloadBytes is the default limit on an encoded payload: 1 MiB,
// the most Svix accepts. Svix advises staying under about 40 kB.
const DefaultMaxPayloadBytes = 1 << 20

// encodePayload returns the JSON to store for v: v itself when it is
// json.RawMessage or []byte (validated, not re-encoded), json.Marshal(v)
// otherwise. The result is always a JSON object of at most max bytes that
// PostgreSQL's jsonb accepts.
func encodePayload(v any, max int) ([]byte, *ValidationError) {
	var (
		b   []byte
		raw bool
	)
	switch p := v.(type) {
	case nil:
		return nil, payloadError("must not be nil: Svix requires a JSON object", ErrInvalidPayload)
	case json.RawMessage:
		b, raw = p, true
	case []byte:
		b, raw = p, true
	default:
		var err error
		if b, err = json.Marshal(v); err != nil {
			return nil, payloadError("does not marshal to JSON: "+err.Error(), ErrInvalidPayload)
		}
	}
	if len(b) > max {
		return nil, payloadError("is "+strconv.Itoa(len(b))+" bytes encoded, over the limit of "+strconv.Itoa(max), ErrPayloadTooLarge)
	}
	if raw {
		if !utf8.Valid(b) {
			return nil, payloadError("is not valid UTF-8", ErrInvalidPayload)
		}
		if !json.Valid(b) {
			return nil, payloadError("is not valid JSON", ErrInvalidPayload)
		}
	}
	// json.Marshal output and valid JSON after trimming have their first
	// byte decide the kind of value: no decode needed.
	if first := firstByte(b); first != '{' {
		return nil, payloadError("must be a JSON object, got "+kindOf(first)+
			" (Svix accepts only objects; pass json.RawMessage for JSON you already have)", ErrInvalidPayload)
	}
	if hasNULEscape(b) {
		return nil, payloadError(`must not contain \u0000, which PostgreSQL's jsonb cannot store`, ErrInvalidPayload)
	}
	return b, nil
}

func payloadError(rule string, sentinel error) *ValidationError {
	return &ValidationError{Index: -1, Field: "Payload", Rule: rule, Err: sentinel}
}

func firstByte(b []byte) byte {
	for _, c := range b {
		if c != ' ' && c != '\t' && c != '\n' && c != '\r' {
			return c
		}
	}
	return 0
}

func kindOf(first byte) string {
	switch first {
	case 'n':
		return "null"
	case '[':
		return "an array"
	case '"':
		return "a string"
	case 't', 'f':
		return "a boolean"
	case 0:
		return "nothing"
	default:
		return "a number"
	}
}

var nulEscape = []byte(`\u0000`)

// hasNULEscape reports whether b holds the escape \u0000 (not an escaped
// backslash followed by "u0000").
func hasNULEscape(b []byte) bool {
	for {
		i := bytes.Index(b, nulEscape)
		if i < 0 {
			return false
		}
		backslashes := 0
		for j := i - 1; j >= 0 && b[j] == '\\'; j-- {
			backslashes++
		}
		if backslashes%2 == 0 {
			return true
		}
		b = b[i+len(nulEscape):]
	}
}
