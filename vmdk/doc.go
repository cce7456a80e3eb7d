// Package vmdk reads sparse VMDK extents (streamOptimized and
// monolithicSparse) as their guest view, describes a streamOptimized image as
// Params, and writes the image again from Params and a guest stream, byte for
// byte as qemu-img convert -O vmdk -o subformat=streamOptimized does. It also
// reads and re-emits OVA archives (a tar holding the .ovf and the VMDK).
//
// Like archive/tar, it works on io.ReaderAt, io.Reader and io.Writer and
// knows nothing of files or recipes. Memory stays bounded: the grain
// directory, a few grain tables and a few decompressed grains are held when
// reading; Params holds about 3 bytes per allocated grain; Encode holds a few
// grains per CPU.
//
// qemu compresses each grain with zlib's compress() (level 6); Go's deflate
// produces other bytes, so Encode and Verify call zlib through cgo. The cgo
// build links zlib statically on Linux (-l:libz.a, Debian: zlib1g-dev), so a
// static binary stays self-contained:
//
//	CGO_ENABLED=1 go build -tags osusergo,netgo -ldflags '-linkmode external -extldflags -static' ./cmd/rehydrator
//
// (osusergo and netgo keep glibc's NSS, which cannot be linked statically, out.)
//
// Without cgo, Encode and Verify fail with an error wrapping ErrUnsupported;
// reading works in every build. Params.Deflate records the deflate, and
// Verify tells which grains a given build does not reproduce (an image made
// with zlib-ng, as Fedora's qemu-img links on recent releases, will not
// reproduce with classic zlib).
package vmdk
