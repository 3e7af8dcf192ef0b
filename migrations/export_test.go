package migrations

import "context"

// UpThese applies ms as Up applies the embedded migrations, for tests of
// the runner with migrations of their own.
func UpThese(ctx context.Context, db Beginner, opts Options, ms []Migration) ([]int, error) {
	return up(ctx, db, opts.withDefaults(), ms)
}
