package outbox

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"strconv"
	"unicode/utf8"

	"github.com/outboxrelay/outbox/internal/svixid"
)

// DefaultMaxPayloadBytes is the default limit on an encoded payload: 1 MiB,
// the most Svix accepts. Svix advises staying under about 40 kB.
const DefaultMaxPayloadBytes = 1 << 20

// encodePayload returns the JSON to store for v: v itself when it is
// json.RawMessage or []byte (validated, not re-encoded), json.Marshal(v)
// otherwise. The result is always a JSON object of at most limit bytes that
// PostgreSQL's jsonb accepts and writes back out within limit bytes (bar the
// spaces jsonb adds), and that encoding/json decodes again.
func encodePayload(v any, limit int) ([]byte, *ValidationError) {
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
	if len(b) > limit {
		return nil, payloadError("is "+strconv.Itoa(len(b))+" bytes encoded, over the limit of "+strconv.Itoa(limit), ErrPayloadTooLarge)
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
	// json.Marshal replaces invalid UTF-8 in Go strings, but copies the
	// output of a json.RawMessage or MarshalJSON inside v as is.
	if !raw && !utf8.Valid(b) {
		return nil, payloadError("is not valid UTF-8 once marshalled (json.Marshal copies a json.RawMessage or MarshalJSON output in it as is)", ErrInvalidPayload)
	}
	if verr := checkJSONB(b, limit); verr != nil {
		return nil, verr
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

// What valid JSON can hold that PostgreSQL's jsonb refuses, beyond \u0000
// and lone surrogates. jsonb stores every number as numeric, whose input
// function (numeric_in) refuses:
//   - a value of 10^131072 or more: numeric holds at most 131072 digits
//     before the decimal point;
//   - a display scale over 16383: the digits after the point as written
//     (trailing zeros count) plus a negative exponent, so 1e-16384 and
//     0.0e-16383 are refused and 1e-16383 is not;
//   - an exponent of 2^30-1 or more in magnitude, even on zero.
//
// Nesting is capped at the limit of encoding/json, which json.Valid enforces
// for raw payloads and the relay needs to decode stored payloads; json.Marshal
// has none. PostgreSQL 15's parser takes about 13000 levels under the
// default max_stack_depth of 2MB (fewer under a smaller setting).
const (
	numericMaxPower    = 131071 // highest power of ten of a digit
	numericMaxScale    = 16383
	numericMaxExponent = 1<<30 - 1
	maxPayloadDepth    = 10000
)

// checkJSONB scans the valid JSON object b once and reports what
// PostgreSQL's jsonb would refuse: the escape \u0000, a UTF-16 surrogate
// escape other than a high one directly followed by a low one, a number
// numeric cannot hold, nesting deeper than maxPayloadDepth. It also keeps
// the payload within limit as jsonb writes it back: jsonb keeps no exponent,
// so 1e400 comes back as 401 digits and a few bytes of input could come back
// as gigabytes, more than PostgreSQL can return or Svix accepts.
func checkJSONB(b []byte, limit int) *ValidationError {
	var (
		depth  int
		growth int64 // bytes numbers gain when jsonb writes them out
	)
	for i := 0; i < len(b); {
		switch c := b[i]; {
		case c == '"':
			var rule string
			if i, rule = scanString(b, i+1); rule != "" {
				return payloadError(rule, ErrInvalidPayload)
			}
		case c == '{' || c == '[':
			if depth++; depth > maxPayloadDepth {
				return payloadError("nests arrays and objects more than "+strconv.Itoa(maxPayloadDepth)+
					" deep, which encoding/json cannot decode (the relay reads payloads back with it)", ErrInvalidPayload)
			}
			i++
		case c == '}' || c == ']':
			depth--
			i++
		case c == '-' || isDigit(c):
			// Most numbers have no exponent and few digits: jsonb stores
			// and writes them as they are.
			j := i + 1
			for j < len(b) && (isDigit(b[j]) || b[j] == '.') {
				j++
			}
			if (j == len(b) || b[j]|0x20 != 'e') && j-i <= numericMaxScale {
				i = j
				break
			}
			end, gain, rule := scanNumber(b, i)
			if rule != "" {
				return payloadError(rule+" (got "+svixid.Quote(string(b[i:end]))+" at byte "+strconv.Itoa(i)+")", ErrInvalidPayload)
			}
			growth += gain
			i = end
		default: // whitespace, ':', ',', true, false, null
			i++
		}
	}
	if n := int64(len(b)) + growth; n > int64(limit) {
		return payloadError("is "+strconv.FormatInt(n, 10)+" bytes once PostgreSQL's jsonb writes its numbers out in full, over the limit of "+
			strconv.Itoa(limit)+" (jsonb keeps no exponent: 1e400 comes back as 401 digits)", ErrPayloadTooLarge)
	}
	return nil
}

// scanString checks the escapes of the string whose contents start at b[i]
// and returns the index just past its closing quote, or a broken rule.
func scanString(b []byte, i int) (int, string) {
	quote := -1 // the next quote at or after i, once a long run looked for it
	for {
		// Find the next quote or backslash: 8 bytes at a time for a short
		// run, with bytes.IndexByte past 32 bytes.
		for n := 0; i+8 <= len(b); n++ {
			if n == 4 {
				i = skipLong(b, i, &quote)
				break
			}
			if x := binary.LittleEndian.Uint64(b[i:]); hasByte(x, '"')|hasByte(x, '\\') != 0 {
				break
			}
			i += 8
		}
		for i < len(b) && b[i] != '"' && b[i] != '\\' {
			i++
		}
		if i+1 >= len(b) || b[i] == '"' {
			return i + 1, ""
		}
		// b[i] is a backslash.
		if b[i+1] != 'u' {
			i += 2 // \" \\ \/ \b \f \n \r \t
			continue
		}
		r, ok := hex4(b, i+2)
		if !ok {
			return len(b), "" // not valid JSON: cannot happen
		}
		switch {
		case r == 0:
			return i, `must not contain \u0000, which PostgreSQL's jsonb cannot store`
		case 0xD800 <= r && r < 0xDC00: // high surrogate: a low one must follow
			if i+7 < len(b) && b[i+6] == '\\' && b[i+7] == 'u' {
				if lo, ok := hex4(b, i+8); ok && 0xDC00 <= lo && lo < 0xE000 {
					i += 12
					continue
				}
			}
			return i, surrogateRule(b[i:i+6], i)
		case 0xDC00 <= r && r < 0xE000: // low surrogate without a high one
			return i, surrogateRule(b[i:i+6], i)
		}
		i += 6
	}
}

// skipLong returns the index of the first quote or backslash at or after
// b[i], or len(b), with bytes.IndexByte. *quote remembers where the next
// quote is, so a long string with many escapes is still searched once.
func skipLong(b []byte, i int, quote *int) int {
	if *quote < i {
		if *quote = bytes.IndexByte(b[i:], '"'); *quote < 0 {
			*quote = len(b)
		} else {
			*quote += i
		}
	}
	if k := bytes.IndexByte(b[i:*quote], '\\'); k >= 0 {
		return i + k
	}
	return *quote
}

// hasByte reports (as nonzero) whether any of the 8 bytes of x is c.
func hasByte(x uint64, c byte) uint64 {
	const ones, highs = 0x0101010101010101, 0x8080808080808080
	y := x ^ (ones * uint64(c))
	return (y - ones) &^ y & highs
}

func surrogateRule(escape []byte, at int) string {
	return "has the unpaired UTF-16 surrogate escape " + string(escape) + " at byte " + strconv.Itoa(at) +
		`, which PostgreSQL's jsonb cannot store (a high surrogate \ud800-\udbff must be directly followed by a low one \udc00-\udfff)`
}

// hex4 decodes the four hex digits at b[i:i+4].
func hex4(b []byte, i int) (rune, bool) {
	if i+4 > len(b) {
		return 0, false
	}
	var r rune
	for _, c := range b[i : i+4] {
		switch {
		case '0' <= c && c <= '9':
			c -= '0'
		case 'a' <= c && c <= 'f':
			c -= 'a' - 10
		case 'A' <= c && c <= 'F':
			c -= 'A' - 10
		default:
			return 0, false
		}
		r = r<<4 | rune(c)
	}
	return r, true
}

// scanNumber reads the JSON number at b[i:] and returns where it ends, how
// many bytes longer PostgreSQL writes it out (numeric_out: no exponent, all
// scale digits), or the numeric limit it breaks.
func scanNumber(b []byte, i int) (end int, gain int64, rule string) {
	start := i
	neg := b[i] == '-'
	if neg {
		i++
	}
	intStart := i
	for i < len(b) && isDigit(b[i]) {
		i++
	}
	// JSON integer parts are "0" or have no leading zero.
	nonzero := i > intStart && b[intStart] != '0'
	power := int64(i - intStart - 1) // power of ten of the leading nonzero digit, before the exponent
	var scale, exp int64
	if i < len(b) && b[i] == '.' {
		i++
		fracStart := i
		for i < len(b) && isDigit(b[i]) {
			if !nonzero && b[i] != '0' {
				nonzero, power = true, int64(fracStart-i-1)
			}
			i++
		}
		scale = int64(i - fracStart)
	}
	if i < len(b) && (b[i] == 'e' || b[i] == 'E') {
		i++
		expNeg := false
		if i < len(b) && (b[i] == '+' || b[i] == '-') {
			expNeg = b[i] == '-'
			i++
		}
		for ; i < len(b) && isDigit(b[i]); i++ {
			if exp < numericMaxExponent { // saturate: PostgreSQL refuses it anyway
				exp = exp*10 + int64(b[i]-'0')
			}
		}
		if expNeg {
			exp = -exp
		}
	}
	power += exp
	scale = max(scale-exp, 0)
	switch {
	case nonzero && power > numericMaxPower:
		return i, 0, "has a number too large for PostgreSQL's jsonb, whose numeric type holds at most 131072 digits before the decimal point"
	case scale > numericMaxScale:
		return i, 0, "has a number with more digits after the decimal point than PostgreSQL's jsonb holds " +
			"(numeric keeps at most 16383, counting trailing zeros and the places a negative exponent adds)"
	case exp >= numericMaxExponent || exp <= -numericMaxExponent:
		return i, 0, "has a number whose exponent PostgreSQL's jsonb refuses, even on zero (numeric takes exponents up to 1073741822 in magnitude)"
	}
	written := int64(1) // "0" before the point when there is no integer part
	if nonzero && power >= 0 {
		written = power + 1
	}
	if neg && nonzero {
		written++
	}
	if scale > 0 {
		written += 1 + scale
	}
	return i, max(written-int64(i-start), 0), ""
}

func isDigit(c byte) bool { return '0' <= c && c <= '9' }
