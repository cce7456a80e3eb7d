//go:build cgo

package vmdk

/*
// Link zlib statically so that a -static rehydrator binary stays
// self-contained; on Linux this needs libz.a (Debian: zlib1g-dev).
#cgo linux LDFLAGS: -l:libz.a
#cgo !linux LDFLAGS: -lz
#include <zlib.h>

static int vmdk_compress(unsigned char *dst, unsigned long *dst_len,
		const unsigned char *src, unsigned long src_len, int level) {
	uLongf n = *dst_len;
	int r = compress2(dst, &n, src, src_len, level);
	*dst_len = n;
	return r;
}
*/
import "C"

import (
	"fmt"
	"unsafe"
)

// zlibAvailable reports whether this build can deflate as qemu does.
const zlibAvailable = true

// zlibVersion is the version of the zlib linked in, e.g. "1.2.13".
func zlibVersion() string { return C.GoString(C.zlibVersion()) }

// zlibBound is the largest compress2 output for n input bytes.
func zlibBound(n int) int { return int(C.compressBound(C.uLong(n))) }

// zlibCompress compresses src into dst with zlib's compress2 at level, as
// qemu's compress() does, and returns the output length. dst must hold
// zlibBound(len(src)) bytes.
func zlibCompress(dst, src []byte, level int) (int, error) {
	if len(src) == 0 || len(dst) == 0 {
		return 0, fmt.Errorf("vmdk: zlib: empty buffer")
	}
	n := C.ulong(len(dst))
	r := C.vmdk_compress((*C.uchar)(unsafe.Pointer(&dst[0])), &n,
		(*C.uchar)(unsafe.Pointer(&src[0])), C.ulong(len(src)), C.int(level))
	if r != C.Z_OK {
		return 0, fmt.Errorf("vmdk: zlib compress2: error %d", int(r))
	}
	return int(n), nil
}
