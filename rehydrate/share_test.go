package rehydrate

import (
	"archive/tar"
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// liveCase is erofsCase made once for this file's tests (mkfs.erofs runs twice for it).
var liveCase struct {
	sync.Mutex
	file, expanded []byte
	step           Step
}

// liveRecipe is a live ISO made as the EROFS route makes it (a blob of the expanded stream ->
// erofs-restore) and three PXE files cut out of it (ref -> extract), with the blobs logged.
func liveRecipe(t *testing.T) (*Recipe, *loggedBlobs, map[string][]byte) {
	t.Helper()
	liveCase.Lock()
	if liveCase.file == nil {
		liveCase.file, liveCase.expanded, liveCase.step, _ = erofsCase(t)
	}
	file, expanded, step := liveCase.file, liveCase.expanded, liveCase.step
	liveCase.Unlock()
	r, blobs := recipeFor(formatCase{"live", file, expanded, step}, expanded)
	iso := &r.Artifacts[0]
	iso.ID, iso.Arch, iso.Format, iso.Kind, iso.Name = "x86_64/metal/iso/disk", "x86_64", "iso", "disk", "live.iso"
	want := map[string][]byte{iso.Name: file}
	third := int64(len(file)) / 3
	for i, kind := range []string{"kernel", "initramfs", "rootfs"} {
		off, n := int64(i)*third+int64(i)*7, third-int64(i)*11
		name := "live-" + kind
		r.Artifacts = append(r.Artifacts, Artifact{ID: "x86_64/metal/pxe/" + kind, Arch: "x86_64", Format: "pxe", Kind: kind,
			Name: name, Size: n, SHA256: hexOf(file[off : off+n]),
			Steps: []Step{{Op: OpRef, Ref: iso.ID}, {Op: OpExtract, Offset: off, Length: n}}})
		want[name] = file[off : off+n]
	}
	r.DeclareFeatures()
	if err := r.Validate(); err != nil {
		t.Fatal(err)
	}
	return r, &loggedBlobs{memBlobs: blobs}, want
}

// opens counts how often the blobs were opened: each run of the ISO's pipeline opens its blob.
func (l *loggedBlobs) opens() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, s := range l.log {
		if strings.HasPrefix(s, "open ") {
			n++
		}
	}
	return n
}

func pick(r *Recipe, iso, pxe, pxeFirst bool) []*Artifact {
	var isoA, pxeA []*Artifact
	for i := range r.Artifacts {
		a := &r.Artifacts[i]
		switch {
		case iso && a.Format == "iso":
			isoA = append(isoA, a)
		case pxe && a.Format == "pxe":
			pxeA = append(pxeA, a)
		}
	}
	if pxeFirst {
		return append(pxeA, isoA...)
	}
	return append(isoA, pxeA...)
}

// The live ISO is restored once however it is asked for: alone, as the source of the three PXE
// files, or both at once in either order, to a directory or a tar stream. Before, `--iso --pxe`
// ran its pipeline (erofs-restore, LZMA on every cluster) for the ISO and again for the PXE
// spool, and each further PXE file opened it a third and fourth time before finding the spool.
// Only a request that reads the ISO more than once leaves a spool file.
func TestLiveISORestoredOnce(t *testing.T) {
	for _, tc := range []struct {
		name                 string
		iso, pxe, pxeFirst   bool
		stream               bool
		wantFiles, wantSpool int
	}{
		{name: "iso", iso: true, wantFiles: 1},
		{name: "pxe", pxe: true, wantFiles: 3, wantSpool: 1},
		{name: "iso+pxe", iso: true, pxe: true, wantFiles: 4, wantSpool: 1},
		{name: "pxe+iso", iso: true, pxe: true, pxeFirst: true, wantFiles: 4, wantSpool: 1},
		{name: "iso+pxe tar", iso: true, pxe: true, stream: true, wantFiles: 4, wantSpool: 1},
		{name: "pxe+iso tar", iso: true, pxe: true, pxeFirst: true, stream: true, wantFiles: 4, wantSpool: 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r, src, want := liveRecipe(t)
			tmp, out := t.TempDir(), t.TempDir()
			e := NewEngine(r, src, tmp)
			arts := pick(r, tc.iso, tc.pxe, tc.pxeFirst)
			got := map[string][]byte{}
			if tc.stream {
				var b bytes.Buffer
				if err := e.WriteStream(context.Background(), &b, arts, nil); err != nil {
					t.Fatal(err)
				}
				tr := tar.NewReader(&b)
				for {
					h, err := tr.Next()
					if err == io.EOF {
						break
					}
					if err != nil {
						t.Fatal(err)
					}
					got[h.Name], _ = io.ReadAll(tr)
				}
			} else {
				if err := e.WriteDir(context.Background(), out, arts, nil); err != nil {
					t.Fatal(err)
				}
				for _, a := range arts {
					got[a.Name], _ = os.ReadFile(filepath.Join(out, a.Name))
				}
			}
			if len(got) != tc.wantFiles {
				t.Fatalf("%d files, want %d", len(got), tc.wantFiles)
			}
			for name, b := range got {
				if !bytes.Equal(b, want[name]) {
					t.Fatalf("%s: wrong bytes", name)
				}
			}
			if n := src.opens(); n != 1 {
				t.Errorf("the ISO's pipeline ran %d times, want once", n)
			}
			if files, _ := os.ReadDir(tmp); len(files) != tc.wantSpool {
				t.Errorf("%d spool files, want %d", len(files), tc.wantSpool)
			}
			if err := e.Close(); err != nil {
				t.Fatal(err)
			}
			if files, _ := os.ReadDir(tmp); len(files) != 0 {
				t.Errorf("Close left %d spool files", len(files))
			}
		})
	}
}

// build's self-check rehydrates every artifact at once from one engine: the ISO and its PXE
// pieces, whichever starts first, share one run of its pipeline.
func TestSelfCheckStyleConcurrentSharesISO(t *testing.T) {
	r, src, _ := liveRecipe(t)
	e := NewEngine(r, src, t.TempDir())
	defer e.Close()
	e.Expect(pick(r, true, true, false))
	var wg sync.WaitGroup
	errs := make(chan error, len(r.Artifacts))
	for i := range r.Artifacts {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs <- e.Rehydrate(context.Background(), r.Artifacts[i].ID, io.Discard, nil)
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if n := src.opens(); n != 1 {
		t.Fatalf("the ISO's pipeline ran %d times, want once", n)
	}
}

// A failed rehydration of a shared artifact publishes no spool: what reads it next runs the
// pipeline again, and fails the same way rather than reading a bad spool.
func TestFailedTeeLeavesNoSpool(t *testing.T) {
	r, src, _ := liveRecipe(t)
	r.Artifacts[0].SHA256 = strings.Repeat("0", 64)
	tmp := t.TempDir()
	e := NewEngine(r, src, tmp)
	defer e.Close()
	err := e.WriteDir(context.Background(), t.TempDir(), pick(r, true, true, false), nil)
	if err == nil || !strings.Contains(err.Error(), "sha256") {
		t.Fatalf("got %v, want a sha256 mismatch", err)
	}
	if files, _ := os.ReadDir(tmp); len(files) != 0 {
		t.Fatalf("%d spool files after the failure, want none", len(files))
	}
	e.Expect(pick(r, false, true, false))
	var b bytes.Buffer
	if err := e.Rehydrate(context.Background(), r.Artifacts[1].ID, &b, nil); err != nil {
		t.Fatal(err) // the PXE piece is checked on its own and still right
	}
	if n := src.opens(); n != 2 {
		t.Fatalf("%d runs of the ISO's pipeline, want 2 (the failed one, then the piece's)", n)
	}
}

// runs counts how often each artifact's pipeline is read for a selection, a shared reader
// counting once (it is spooled): a chain ISO <- a <- {b, c}.
func TestRunsCount(t *testing.T) {
	r := &Recipe{Artifacts: []Artifact{{ID: "iso"}, {ID: "a", Steps: []Step{{Op: OpRef, Ref: "iso"}}},
		{ID: "b", Steps: []Step{{Op: OpRef, Ref: "a"}}}, {ID: "c", Steps: []Step{{Op: OpRef, Ref: "a"}}}}}
	by := func(ids ...string) []*Artifact {
		var out []*Artifact
		for _, id := range ids {
			a, _ := r.Artifact(id)
			out = append(out, a)
		}
		return out
	}
	for _, tc := range []struct {
		sel  []string
		want string
	}{
		{[]string{"iso"}, "map[iso:1]"},
		{[]string{"b"}, "map[a:1 b:1 iso:1]"},
		{[]string{"b", "c"}, "map[a:2 b:1 c:1 iso:1]"},
		{[]string{"iso", "b", "c"}, "map[a:2 b:1 c:1 iso:2]"},
		{[]string{"a", "b"}, "map[a:2 b:1 iso:1]"},
	} {
		if got := fmt.Sprint(r.runs(by(tc.sel...))); got != tc.want {
			t.Errorf("%v: %s, want %s", tc.sel, got, tc.want)
		}
	}
}
