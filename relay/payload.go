package relay

import (
	"encoding/json"
	"errors"
	"unicode/utf8"
)

// decodePayload turns the stored JSON object into the map the SDK sends.
// Only the top level is decoded: each value stays json.RawMessage, which
// the SDK's encoder writes back as the same JSON (compacted), so nested
// data is never rebuilt as Go values and numbers keep their exact text.
//
// A payload is valid JSON (it is read from a jsonb column, and checked
// here again), so its top level is split by a scan that only finds where
// each member starts and ends, and the values are slices of raw: well under
// half the time and allocations of encoding/json's decoder, which builds
// the same map (BenchmarkDecodePayload). Anything the scan does not expect
// goes to that decoder, which also gives the errors.
func decodePayload(raw []byte) (map[string]any, error) {
	if m, ok := splitObject(raw); ok {
		return m, nil
	}
	var top map[string]json.RawMessage
	if err := json.Unmarshal(raw, &top); err != nil {
		return nil, err
	}
	if top == nil {
		return nil, errors.New("null")
	}
	m := make(map[string]any, len(top))
	for k, v := range top {
		m[k] = v
	}
	return m, nil
}

// splitObject splits a valid JSON object into its members, as
// json.Unmarshal into a map[string]json.RawMessage would: the last of
// duplicate keys wins, keys are unquoted, values are the members' raw
// text. It returns false for anything else (not valid JSON, not an
// object), and leaves those to encoding/json.
func splitObject(raw []byte) (map[string]any, bool) {
	if !json.Valid(raw) {
		return nil, false
	}
	s := objectScan{raw: raw}
	s.skipSpace()
	if !s.consume('{') {
		return nil, false
	}
	m := make(map[string]any, 8) // events are small objects; the map grows for more
	s.skipSpace()
	if s.consume('}') {
		return m, true
	}
	for {
		s.skipSpace()
		key, ok := s.key()
		if !ok {
			return nil, false
		}
		s.skipSpace()
		if !s.consume(':') {
			return nil, false
		}
		s.skipSpace()
		start := s.i
		if !s.value() {
			return nil, false
		}
		m[key] = json.RawMessage(raw[start:s.i:s.i])
		s.skipSpace()
		if s.consume('}') {
			return m, true
		}
		if !s.consume(',') {
			return nil, false
		}
	}
}

// objectScan walks valid JSON text, a byte offset at a time.
type objectScan struct {
	raw []byte
	i   int
}

// skipSpace skips JSON whitespace.
func (s *objectScan) skipSpace() {
	for s.i < len(s.raw) {
		switch s.raw[s.i] {
		case ' ', '\t', '\n', '\r':
			s.i++
		default:
			return
		}
	}
}

// consume consumes c if it comes next.
func (s *objectScan) consume(c byte) bool {
	if s.i < len(s.raw) && s.raw[s.i] == c {
		s.i++
		return true
	}
	return false
}

// str consumes a string and returns its quoted text and whether it holds
// an escape.
func (s *objectScan) str() (quoted []byte, escaped, ok bool) {
	start := s.i
	if !s.consume('"') {
		return nil, false, false
	}
	for s.i < len(s.raw) {
		switch s.raw[s.i] {
		case '\\':
			escaped = true
			s.i += 2 // the backslash and the escaped character (a \u's hex digits are ordinary bytes)
		case '"':
			s.i++
			return s.raw[start:s.i], escaped, true
		default:
			s.i++
		}
	}
	return nil, false, false
}

// key consumes a member's name and returns it unquoted: as is when it is
// plain UTF-8 (what unquoting it would give), else through encoding/json,
// which decodes escapes and replaces invalid UTF-8 as its decoder does.
func (s *objectScan) key() (string, bool) {
	quoted, escaped, ok := s.str()
	if !ok {
		return "", false
	}
	plain := quoted[1 : len(quoted)-1]
	if !escaped && utf8.Valid(plain) {
		return string(plain), true
	}
	var k string
	if err := json.Unmarshal(quoted, &k); err != nil {
		return "", false
	}
	return k, true
}

// value consumes one value: a string, an object or array (to its matching
// bracket, strings inside skipped whole), or a literal or number (to the
// next delimiter).
func (s *objectScan) value() bool {
	if s.i >= len(s.raw) {
		return false
	}
	switch s.raw[s.i] {
	case '"':
		_, _, ok := s.str()
		return ok
	case '{', '[':
		depth := 0
		for s.i < len(s.raw) {
			switch s.raw[s.i] {
			case '"':
				if _, _, ok := s.str(); !ok {
					return false
				}
				continue
			case '{', '[':
				depth++
			case '}', ']':
				depth--
			}
			s.i++
			if depth == 0 {
				return true
			}
		}
		return false
	default:
		start := s.i
		for s.i < len(s.raw) {
			switch s.raw[s.i] {
			case ',', '}', ']', ' ', '\t', '\n', '\r':
				return s.i > start
			}
			s.i++
		}
		return false
	}
}
