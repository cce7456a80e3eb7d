package ctxio

import (
	"bytes"
	"context"
	"errors"
	"io"
	"strings"
	"testing"
)

func TestStopsWhenCancelled(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	var out bytes.Buffer
	if _, err := io.Copy(Writer(ctx, &out), Reader(ctx, strings.NewReader("abc"))); err != nil || out.String() != "abc" {
		t.Fatalf("before cancel: %q, %v", out.String(), err)
	}
	cancel()
	if _, err := Reader(ctx, strings.NewReader("abc")).Read(make([]byte, 3)); !errors.Is(err, context.Canceled) {
		t.Fatalf("read after cancel: %v", err)
	}
	if _, err := Writer(ctx, &out).Write([]byte("d")); !errors.Is(err, context.Canceled) || out.String() != "abc" {
		t.Fatalf("write after cancel: %q, %v", out.String(), err)
	}
}
