// Package config holds the helpers every Config of outbox's packages shares:
// applying a default in one statement and reporting every bad field at once.
package config

import "strings"

// Default sets *field to value when it holds its zero value.
func Default[T comparable](field *T, value T) {
	var zero T
	if *field == zero {
		*field = value
	}
}

// Join returns nil when errs is empty, and otherwise one error whose text is
// prefix, ": ", then each error's text separated by "; ", and which unwraps
// to every error of errs (for errors.Is and errors.As).
func Join(prefix string, errs []error) error {
	if len(errs) == 0 {
		return nil
	}
	return &joined{prefix: prefix, errs: errs}
}

type joined struct {
	prefix string
	errs   []error
}

func (j *joined) Error() string {
	msgs := make([]string, len(j.errs))
	for i, err := range j.errs {
		msgs[i] = err.Error()
	}
	return j.prefix + ": " + strings.Join(msgs, "; ")
}

func (j *joined) Unwrap() []error { return j.errs }
