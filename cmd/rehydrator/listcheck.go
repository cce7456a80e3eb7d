package main

import (
	"context"
	"fmt"
	"os"

	"github.com/rehydrator/rehydrator/rehydrate"
)

// checkPlatformID rehydrates a disk artifact into a temporary file in tmpDir (its SHA-256
// checked on the way) and reads the ignition.platform.id from those bytes; "-" for
// artifacts that are not disk images.
func checkPlatformID(ctx context.Context, eng *rehydrate.Engine, a *rehydrate.Artifact, tmpDir string) (string, error) {
	if a.Kind != "disk" || a.Format == "iso" {
		return "-", nil
	}
	f, err := os.CreateTemp(tmpDir, ".rehydrator-check-*")
	if err != nil {
		return "", fmt.Errorf("list --check: %w (set --tmpdir to a directory with room for the largest disk)", err)
	}
	defer os.Remove(f.Name())
	defer f.Close()
	if err := eng.Rehydrate(ctx, a.ID, f, nil); err != nil {
		return "", err
	}
	info, format, err := readPlatformID(f, a.Size)
	if err != nil {
		return "", fmt.Errorf("%s (%s): %w", a.Name, format, err)
	}
	return info.ID, nil
}
