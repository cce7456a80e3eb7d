//go:build !cgo

package lzmarepro

import (
	"errors"
	"strings"
	"testing"
)

func TestNoCgo(t *testing.T) {
	_, err := NewEncoder()
	if !errors.Is(err, errors.ErrUnsupported) || !strings.Contains(err.Error(), "rebuild with CGO_ENABLED=1") {
		t.Errorf("NewEncoder without cgo: %v", err)
	}
	if _, err := XZEncode(nil, nil, XZOptions{Preset: 9}); !errors.Is(err, errors.ErrUnsupported) {
		t.Errorf("XZEncode without cgo: %v", err)
	}
}
