package diskview

import (
	"archive/tar"
	"bytes"
	"testing"

	"github.com/rehydrator/rehydrator/vhd"
	"github.com/rehydrator/rehydrator/vhdx"
)

// FuzzOpen: any bytes are claimed by at most one format and give a view or an error, never a
// panic; a view reads within its size.
func FuzzOpen(f *testing.F) {
	f.Add([]byte("QFI\xfb\x00\x00\x00\x03"))
	f.Add(append([]byte("KDMV\x01\x00\x00\x00"), make([]byte, 600)...))
	var ova bytes.Buffer
	tw := tar.NewWriter(&ova)
	tw.WriteHeader(&tar.Header{Name: "coreos.ovf", Size: 4, Mode: 0o644})
	tw.Write([]byte("<x/>"))
	tw.WriteHeader(&tar.Header{Name: "disk.vmdk", Size: 4, Mode: 0o644})
	tw.Write([]byte("KDMV"))
	tw.Close()
	f.Add(ova.Bytes())
	gnu := bytes.Clone(ova.Bytes())
	copy(gnu[257:], "ustar  \x00")
	f.Add(gnu)
	var fixed bytes.Buffer
	footer := make([]byte, vhd.FooterSize)
	copy(footer, vhd.Cookie)
	fixed.Write(make([]byte, 1024))
	fixed.Write(footer)
	f.Add(fixed.Bytes())
	f.Add(append([]byte(vhdx.Magic), make([]byte, 2<<20)...))
	f.Fuzz(func(t *testing.T, b []byte) {
		claims := 0
		for _, ft := range Formats {
			if ft.Sniff(bytes.NewReader(b), int64(len(b))) {
				claims++
			}
		}
		v, err := Open(bytes.NewReader(b), int64(len(b)))
		if err != nil {
			return
		}
		if (v.Format == "raw") != (claims == 0) {
			t.Fatalf("opened as %s with %d formats claiming it", v.Format, claims)
		}
		if v.Size < 0 || v.Size > 1<<40 {
			return // a header may promise a large guest: do not read it
		}
		p := make([]byte, min(v.Size, 4096))
		v.ReadAt(p, 0)
		if v.Steps != nil {
			v.Steps()
		}
	})
}
