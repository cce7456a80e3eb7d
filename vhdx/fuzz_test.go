package vhdx

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"io"
	"testing"
)

// FuzzOpen opens arbitrary bytes and reads the guest view: never a panic or
// a huge allocation. When Layout accepts the image, Write must give back
// the very same bytes from the guest view.
func FuzzOpen(f *testing.F) {
	vx, _ := smallVHDX(f)
	f.Add(vx)
	// A seed whose BAT sends a block past the end of the file, one with a
	// bad sector size, and a fixed one.
	b := bytes.Clone(vx)
	binary.LittleEndian.PutUint64(b[2*mib:], 0x7ff00006)
	f.Add(b)
	f.Add(vx[:2*mib])
	f.Fuzz(func(t *testing.T, data []byte) {
		img, err := Open(bytes.NewReader(data), int64(len(data)))
		if err != nil {
			return
		}
		if img.VirtualSize > 64*mib {
			return // keep each run quick; the checks above ran
		}
		guest, err := io.ReadAll(img.Guest())
		if err != nil {
			return
		}
		l, err := img.Layout()
		if err != nil {
			return
		}
		if err := l.Validate(); err != nil {
			t.Fatalf("Layout made a layout Validate refuses: %v", err)
		}
		var out bytes.Buffer
		if err := WriteFrom(&out, bytes.NewReader(guest), l); err != nil {
			t.Fatalf("WriteFrom: %v", err)
		}
		if !bytes.Equal(out.Bytes(), data) {
			t.Fatal("WriteFrom did not give back the file")
		}
		if l.InOrder() {
			out.Reset()
			if err := Write(&out, bytes.NewReader(guest), l); err != nil {
				t.Fatalf("Write: %v", err)
			}
			if !bytes.Equal(out.Bytes(), data) {
				t.Fatal("Write did not give back the file")
			}
		}
	})
}

// FuzzLayout mutates a layout (as JSON, a few KiB: whole VHDX files are too
// large for the fuzzer to mutate quickly), so the header, region table,
// metadata and BAT parsers see small inputs. A layout that validates must
// write a file that opens and writes itself back again.
func FuzzLayout(f *testing.F) {
	vx, _ := smallVHDX(f)
	img, err := Open(bytes.NewReader(vx), int64(len(vx)))
	if err != nil {
		f.Fatal(err)
	}
	l, err := img.Layout()
	if err != nil {
		f.Fatal(err)
	}
	js, _ := json.Marshal(l)
	f.Add(js)
	f.Add([]byte(`{"fileSize":4194304,"chunks":[{"off":0,"data":"dmhkeGZpbGU="}]}`))
	f.Fuzz(func(t *testing.T, js []byte) {
		var l Layout
		if json.Unmarshal(js, &l) != nil || l.FileSize > 64*mib {
			return
		}
		img, err := l.Image()
		if err != nil || img.VirtualSize > 64*mib {
			return
		}
		guest := make([]byte, img.VirtualSize)
		for i := range guest {
			guest[i] = byte(i>>9) | 1
		}
		var file bytes.Buffer
		if err := WriteFrom(&file, bytes.NewReader(guest), &l); err != nil {
			t.Fatalf("WriteFrom of a valid layout: %v", err)
		}
		if int64(file.Len()) != l.FileSize {
			t.Fatalf("wrote %d bytes, layout says %d", file.Len(), l.FileSize)
		}
		back, err := Open(bytes.NewReader(file.Bytes()), int64(file.Len()))
		if err != nil {
			t.Fatalf("the written file does not open: %v", err)
		}
		l2, err := back.Layout()
		if err != nil {
			t.Fatalf("Layout of the written file: %v", err)
		}
		g2, err := io.ReadAll(back.Guest())
		if err != nil {
			t.Fatal(err)
		}
		var again bytes.Buffer
		if err := WriteFrom(&again, bytes.NewReader(g2), l2); err != nil || !bytes.Equal(again.Bytes(), file.Bytes()) {
			t.Fatalf("written file does not write itself back: %v", err)
		}
	})
}
