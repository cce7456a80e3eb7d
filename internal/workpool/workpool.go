// Package workpool is the project's one bounded worker pool: errgroup with SetLimit, stopping
// at the first error.
package workpool

import (
	"context"

	"golang.org/x/sync/errgroup"
)

// ForEach runs fn(0..n-1) on at most jobs goroutines (at least one) and returns the first
// error. After an error or a cancelled ctx no new call starts; calls under way finish.
func ForEach(ctx context.Context, n, jobs int, fn func(i int) error) error {
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(max(jobs, 1))
	for i := 0; i < n && gctx.Err() == nil; i++ {
		g.Go(func() error {
			if err := gctx.Err(); err != nil { // waited for a slot while another call failed
				return err
			}
			return fn(i)
		})
	}
	if err := g.Wait(); err != nil {
		return err
	}
	return ctx.Err()
}
