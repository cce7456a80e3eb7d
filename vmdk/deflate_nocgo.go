//go:build !cgo

package vmdk

// zlibAvailable reports whether this build can deflate as qemu does: not
// without cgo, since Go's deflate produces different bytes than zlib's.
const zlibAvailable = false

func zlibVersion() string { return "" }

func zlibBound(n int) int { return n + n>>12 + n>>14 + n>>25 + 13 }

func zlibCompress(dst, src []byte, level int) (int, error) { return 0, errNoZlib }
