package workpool

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"
)

func TestForEachRunsAllWithinLimit(t *testing.T) {
	var running, peak, done atomic.Int32
	err := ForEach(context.Background(), 50, 3, func(i int) error {
		n := running.Add(1)
		for {
			p := peak.Load()
			if n <= p || peak.CompareAndSwap(p, n) {
				break
			}
		}
		time.Sleep(time.Millisecond)
		running.Add(-1)
		done.Add(1)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if done.Load() != 50 {
		t.Fatalf("ran %d of 50", done.Load())
	}
	if peak.Load() > 3 {
		t.Fatalf("%d at once, limit 3", peak.Load())
	}
}

func TestForEachStopsAtFirstError(t *testing.T) {
	boom := errors.New("boom")
	var started atomic.Int32
	err := ForEach(context.Background(), 1000, 2, func(i int) error {
		started.Add(1)
		if i == 3 {
			return boom
		}
		time.Sleep(time.Millisecond)
		return nil
	})
	if !errors.Is(err, boom) {
		t.Fatalf("err %v, want boom", err)
	}
	if started.Load() > 10 {
		t.Fatalf("%d calls started after the error", started.Load())
	}
}

func TestForEachCancelled(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	var n atomic.Int32
	err := ForEach(ctx, 10, 2, func(int) error { n.Add(1); return nil })
	if !errors.Is(err, context.Canceled) || n.Load() != 0 {
		t.Fatalf("err %v after %d calls, want context.Canceled and none", err, n.Load())
	}
	if err := ForEach(context.Background(), 0, 0, nil); err != nil {
		t.Fatal(err)
	}
}
