package main

import (
	"errors"
	"fmt"
	"syscall"
)

// explainWriteErr adds what to do to the errors of writing the output that a user can fix.
func explainWriteErr(err error, dest string) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, syscall.ENOSPC):
		return fmt.Errorf("%w: free space on that filesystem or write elsewhere (another DEST than %s, --tmpdir for intermediate files); no file was left at the final path, \"list\" shows the sizes", err, dest)
	case errors.Is(err, syscall.EDQUOT):
		return fmt.Errorf("%w: the disk quota at %s is used up: free space or give another directory", err, dest)
	}
	return err
}
