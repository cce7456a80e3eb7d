package dehydrate

import "math/rand/v2"

// zlibngGuest is the guest of testdata/zlibng.vmdk: 4 MiB, its first 384 KiB words from a
// seeded generator (compressible, so zlib and zlib-ng choose different matches), then a
// stretch of random bytes, the rest zeros. The VMDK was made with qemu-img linked with zlib-ng
// (see TestVMDKGrainsZlibNG).
func zlibngGuest() []byte {
	b := make([]byte, 4<<20)
	r := rand.New(rand.NewPCG(11, 42))
	words := []string{"grain", "deflate", "zlib", "qemu", "image", "sector", "fedora", "coreos", "the", "a", "of", "stream", "\n"}
	var t []byte
	for len(t) < 384<<10 {
		t = append(t, words[r.IntN(len(words))]...)
		t = append(t, ' ')
	}
	copy(b, t[:384<<10])
	for i := 1 << 20; i < 1<<20+8<<10; i++ {
		b[i] = byte(r.Uint32())
	}
	return b
}
