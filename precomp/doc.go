// Package precomp finds the zstd frames inside a file that this build's libzstd reproduces bit
// for bit, and writes the file again with those frames expanded ("precompressed", as the
// precomp tool does for deflate). The expanded form shows the data the frames compress, so a
// delta against an uncompressed source (a disk holding the same files as a squashfs) finds it;
// Restore compresses the frames again and gives back the original bytes.
//
// A squashfs made by mksquashfs -comp zstd is a sequence of such frames, one per data block,
// fragment block and metadata block, each made by ZSTD_compressCCtx at one level (15 by
// default). Reproducing them needs the same compressor, so this package calls libzstd through
// cgo, linked statically (-l:libzstd.a, Debian: libzstd-dev) like vmdk's zlib. Without cgo,
// Scan finds nothing to expand and Restore fails with an error wrapping errors.ErrUnsupported.
//
// The expanded stream is self-describing:
//
//	"RHPRECMP"  8 bytes
//	version     uvarint (1)
//	level       uvarint: the zstd level of every expanded frame
//	count       uvarint: the number of expanded frames
//	count x     uvarint gap (original bytes since the end of the previous frame),
//	            uvarint compressed length, uvarint expanded length
//	body        the original bytes, each expanded frame replaced by the data it decompresses to
//
// Like archive/tar and compress/*, the package works on io.ReaderAt, io.Reader and io.Writer and
// knows nothing of files or recipes; memory stays bounded by a few frames per CPU.
package precomp
