// Package lzmarepro compresses again, bit for bit, data that liblzma compressed: MicroLZMA
// clusters as mkfs.erofs writes them (lzma_microlzma_encoder with a preset, a dictionary size
// and a limit on the output, which decides how much input a cluster takes), and .xz streams as
// `xz -9` and coreos-installer's osmet writer make them (lzma_easy_encoder, or the
// multi-threaded stream encoder's independent blocks).
//
// Reproducing needs the very compressor that made the data, so the package calls liblzma through
// cgo, linked statically (-l:liblzma.a, Debian: liblzma-dev), like precomp does libzstd. Without
// cgo every encoder returns an error wrapping errors.ErrUnsupported, and callers keep such data
// compressed.
//
// It knows no file format: callers hand it the compressed bytes and the data they hold.
package lzmarepro
