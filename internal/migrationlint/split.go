package migrationlint

import "strings"

// Statement is one SQL statement of a file, comments removed.
type Statement struct {
	// Line is the line of the statement's first character, from 1.
	Line int
	// Text is the statement without its terminating semicolon.
	Text string
}

// Split splits sql into statements at the semicolons outside comments,
// quoted strings, quoted identifiers and dollar-quoted bodies (a DO block
// or a function is one statement). Comments are dropped.
func Split(sql string) []Statement {
	var (
		out   []Statement
		cur   strings.Builder
		line  = 1
		start = 0 // the current statement's first line, 0 before its first character
	)
	flush := func() {
		if t := strings.TrimSpace(cur.String()); t != "" {
			out = append(out, Statement{Line: start, Text: t})
		}
		cur.Reset()
		start = 0
	}
	write := func(s string) {
		if start == 0 && strings.TrimSpace(s) != "" {
			start = line
		}
		cur.WriteString(s)
		line += strings.Count(s, "\n")
	}
	for i := 0; i < len(sql); {
		c := sql[i]
		switch {
		case strings.HasPrefix(sql[i:], "--"):
			end := strings.IndexByte(sql[i:], '\n')
			if end < 0 {
				end = len(sql) - i
			}
			i += end // the newline itself is written as text
		case strings.HasPrefix(sql[i:], "/*"):
			n := len(sql) - i // an unterminated comment runs to the end
			if end := strings.Index(sql[i+2:], "*/"); end >= 0 {
				n = end + 4
			}
			comment := sql[i : i+n]
			line += strings.Count(comment, "\n")
			cur.WriteByte(' ')
			i += len(comment)
		case c == '\'' || c == '"':
			end := closing(sql, i+1, c)
			write(sql[i:end])
			i = end
		case c == '$':
			tag, ok := dollarTag(sql[i:])
			if !ok {
				write(sql[i : i+1])
				i++
				continue
			}
			body := strings.Index(sql[i+len(tag):], tag)
			end := len(sql)
			if body >= 0 {
				end = i + len(tag) + body + len(tag)
			}
			write(sql[i:end])
			i = end
		case c == ';':
			flush()
			i++
		default:
			write(sql[i : i+1])
			i++
		}
	}
	flush()
	return out
}

// closing returns the index just past the quote q that closes a quoted
// run starting at from (a doubled quote is an escaped one).
func closing(s string, from int, q byte) int {
	for i := from; i < len(s); i++ {
		if s[i] == q {
			if i+1 < len(s) && s[i+1] == q {
				i++
				continue
			}
			return i + 1
		}
	}
	return len(s)
}

// dollarTag returns the dollar-quote tag s starts with ($$ or $name$).
func dollarTag(s string) (string, bool) {
	for i := 1; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '$':
			return s[:i+1], true
		case c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || i > 1 && c >= '0' && c <= '9':
		default:
			return "", false
		}
	}
	return "", false
}
