package rehydrate

import (
	"errors"
	"io"

	"github.com/rehydrator/rehydrator/reflate"
)

// GzipSplit splits a whole gzip file (every member, headers and trailing bytes kept) into the
// plain data it holds, written to plain, and the reconstruction blob the gzip op rebuilds it
// from (reflate's wrapped-stream data); n is the number of bytes of the file.
func GzipSplit(r io.Reader, plain io.Writer) (blob []byte, n int64, err error) {
	return reflate.SplitGzip(r, plain)
}

// GzipRebuild writes the exact gzip file that blob and the plain data describe. Plain data
// longer than the file holds is an error too: the step before made something else.
func GzipRebuild(w io.Writer, plain io.Reader, blob []byte) error {
	if err := reflate.RebuildGzip(w, plain, blob); err != nil {
		return err
	}
	if n, _ := io.ReadFull(plain, make([]byte, 1)); n != 0 {
		return errors.New("the plain data is longer than the gzip file holds (damaged input)")
	}
	return nil
}
