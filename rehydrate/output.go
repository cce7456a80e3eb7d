package rehydrate

import (
	"archive/tar"
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/rehydrator/rehydrator/internal/arch"
)

// Selection says which artifacts a user asked for.
type Selection struct {
	Arch  string   // "" = the machine's architecture, or the only one in the recipe
	Disks []string // disk names: platforms, and "metal4k"
	ISO   bool
	PXE   bool
	All   bool
}

// MachineArch maps GOARCH to the architecture names of stream metadata.
func MachineArch() string { return arch.Machine() }

// Arches lists the architectures of the recipe, sorted.
func (r *Recipe) Arches() []string {
	set := map[string]bool{}
	for _, a := range r.Artifacts {
		set[a.Arch] = true
	}
	var out []string
	for a := range set {
		out = append(out, a)
	}
	sort.Strings(out)
	return out
}

// Select resolves a selection into artifacts, in a stable order, or explains what is available.
func (r *Recipe) Select(sel Selection) ([]*Artifact, error) {
	arch := sel.Arch
	arches := r.Arches()
	if arch == "" {
		arch = MachineArch()
		if len(arches) == 1 {
			arch = arches[0]
		}
	}
	if !contains(arches, arch) {
		return nil, fmt.Errorf("this image has no artifacts for architecture %s; it has: %s (use --arch)", arch, strings.Join(arches, ", "))
	}
	if !sel.All && !sel.ISO && !sel.PXE && len(sel.Disks) == 0 {
		return nil, fmt.Errorf("nothing selected: name at least one of --disk PLATFORM, --iso, --pxe or --all (see `list`)")
	}
	var out []*Artifact
	seen := map[string]bool{}
	add := func(a *Artifact) {
		if !seen[a.ID] {
			seen[a.ID] = true
			out = append(out, a)
		}
	}
	var disks []string
	for i := range r.Artifacts {
		a := &r.Artifacts[i]
		if a.Arch != arch {
			continue
		}
		if a.Disk != "" {
			disks = append(disks, a.Disk)
		}
		switch {
		case sel.All:
			add(a)
		case sel.ISO && a.Format == "iso":
			add(a)
		case sel.PXE && a.Format == "pxe":
			add(a)
		}
	}
	for _, d := range sel.Disks {
		found := false
		for i := range r.Artifacts {
			a := &r.Artifacts[i]
			if a.Arch == arch && a.Disk == d {
				add(a)
				found = true
			}
		}
		if !found {
			return nil, fmt.Errorf("no disk %q for %s in this image; disks: %s", d, arch, strings.Join(disks, ", "))
		}
	}
	if sel.ISO && !anyFormat(out, "iso") {
		return nil, fmt.Errorf("this image has no live ISO for %s", arch)
	}
	if sel.PXE && !anyFormat(out, "pxe") {
		return nil, fmt.Errorf("this image has no PXE files for %s", arch)
	}
	return out, nil
}

func anyFormat(as []*Artifact, format string) bool {
	for _, a := range as {
		if a.Format == format {
			return true
		}
	}
	return false
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// Progress receives how far the current artifact has come.
type Progress func(a *Artifact, written int64)

// WriteDir rehydrates the artifacts into dir. Each is written under a temporary name and renamed
// to its final name only after its SHA-256 matched; a failure leaves no file at the final path.
func (e *Engine) WriteDir(ctx context.Context, dir string, arts []*Artifact, progress Progress) error {
	st, err := os.Stat(dir)
	if err != nil {
		return fmt.Errorf("output directory: %w", err)
	}
	if !st.IsDir() {
		return fmt.Errorf("output %s is not a directory (give a directory, or - for standard output)", dir)
	}
	e.Expect(arts)
	for _, a := range arts {
		if err := e.writeFile(ctx, dir, a, progress); err != nil {
			return err
		}
	}
	return nil
}

func (e *Engine) writeFile(ctx context.Context, dir string, a *Artifact, progress Progress) error {
	f, err := os.CreateTemp(dir, "."+a.Name+".partial-*")
	if err != nil {
		return fmt.Errorf("rehydrate %s: %w", a.Name, err)
	}
	tmp := f.Name()
	ok := false
	defer func() {
		if !ok {
			f.Close()
			os.Remove(tmp)
		}
	}()
	bw := bufio.NewWriterSize(f, 1<<20)
	if err := e.Rehydrate(ctx, a.ID, bw, progressFor(a, progress)); err != nil {
		return err
	}
	if err := bw.Flush(); err != nil {
		return fmt.Errorf("rehydrate %s: write: %w", a.Name, err)
	}
	if err := f.Chmod(0o644); err != nil {
		return err
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("rehydrate %s: write: %w", a.Name, err)
	}
	if err := os.Rename(tmp, filepath.Join(dir, a.Name)); err != nil {
		return fmt.Errorf("rehydrate %s: %w", a.Name, err)
	}
	ok = true
	return nil
}

// WriteStream writes one artifact as itself, or several as a tar stream of them. On a failure
// the stream is cut short: the last chunk of a bad file is never written, and a tar stream gets
// no end-of-archive marker, so readers notice.
func (e *Engine) WriteStream(ctx context.Context, w io.Writer, arts []*Artifact, progress Progress) error {
	e.Expect(arts)
	bw := bufio.NewWriterSize(w, 1<<20)
	if len(arts) == 1 {
		if err := e.Rehydrate(ctx, arts[0].ID, bw, progressFor(arts[0], progress)); err != nil {
			return err
		}
		return bw.Flush()
	}
	tw := tar.NewWriter(bw)
	now := time.Now().Truncate(time.Second)
	for _, a := range arts {
		hdr := &tar.Header{Typeflag: tar.TypeReg, Name: a.Name, Size: a.Size, Mode: 0o644, ModTime: now, Format: tar.FormatPAX}
		if err := tw.WriteHeader(hdr); err != nil {
			return fmt.Errorf("tar %s: %w", a.Name, err)
		}
		if err := e.Rehydrate(ctx, a.ID, tw, progressFor(a, progress)); err != nil {
			bw.Flush()
			return err
		}
	}
	if err := tw.Close(); err != nil {
		return err
	}
	return bw.Flush()
}

func progressFor(a *Artifact, p Progress) func(int64) {
	if p == nil {
		return nil
	}
	return func(n int64) { p(a, n) }
}
