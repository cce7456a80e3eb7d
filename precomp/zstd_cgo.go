//go:build cgo

package precomp

/*
#cgo linux LDFLAGS: -l:libzstd.a
#cgo !linux LDFLAGS: -lzstd
#include <zstd.h>

static size_t rh_compress(ZSTD_CCtx *cctx, void *dst, size_t cap, const void *src, size_t n, int level) {
	return ZSTD_compressCCtx(cctx, dst, cap, src, n, level);
}
*/
import "C"

import (
	"fmt"
	"unsafe"
)

// haveCompressor says whether this build can reproduce zstd frames.
const haveCompressor = true

// compressor is one libzstd compression context; not safe for concurrent use.
type compressor struct {
	cctx *C.ZSTD_CCtx
	dst  []byte
}

func newCompressor() (*compressor, error) {
	cctx := C.ZSTD_createCCtx()
	if cctx == nil {
		return nil, fmt.Errorf("precomp: ZSTD_createCCtx failed")
	}
	return &compressor{cctx: cctx}, nil
}

func (c *compressor) close() {
	if c.cctx != nil {
		C.ZSTD_freeCCtx(c.cctx)
		c.cctx = nil
	}
}

// compress returns src compressed as one frame at level, as ZSTD_compressCCtx makes it (what
// mksquashfs calls for every block). The result is valid until the next call.
func (c *compressor) compress(src []byte, level int) ([]byte, error) {
	bound := int(C.ZSTD_compressBound(C.size_t(len(src))))
	if cap(c.dst) < bound {
		c.dst = make([]byte, bound)
	}
	dst := c.dst[:bound]
	var sp unsafe.Pointer
	if len(src) > 0 {
		sp = unsafe.Pointer(&src[0])
	}
	n := C.rh_compress(c.cctx, unsafe.Pointer(&dst[0]), C.size_t(bound), sp, C.size_t(len(src)), C.int(level))
	if C.ZSTD_isError(n) != 0 {
		return nil, fmt.Errorf("precomp: zstd level %d: %s", level, C.GoString(C.ZSTD_getErrorName(n)))
	}
	return dst[:int(n)], nil
}

// Version is the libzstd this build reproduces frames with ("1.5.4"), or "" without cgo.
func Version() string { return C.GoString(C.ZSTD_versionString()) }
