package iso

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"path"
	"slices"
	"strings"
)

// maxPathBytes bounds the memory of one listing: the sum of all path lengths.
const maxPathBytes = 64 << 20

// detectRockRidge reads the "." record of the primary root directory: a SUSP
// "SP" entry there (or, for images that omit SP, Rock Ridge entries) means
// the primary tree carries Rock Ridge names.
func (im *Image) detectRockRidge() error {
	im.rootMode = fs.ModeDir | 0o555
	root := im.primary
	n := min(root.Size, sectorSize-root.Offset%sectorSize)
	if n < 34 {
		return corrupt(root.Offset, "root directory of %d bytes cannot hold its \".\" record", root.Size)
	}
	buf := make([]byte, n)
	if err := im.readAt(buf, root.Offset); err != nil {
		return err
	}
	l := int64(buf[0])
	if l < 34 || l > n {
		return corrupt(root.Offset, "root directory \".\" record has length %d (%d bytes left in its sector)", l, n)
	}
	rec, err := im.parseRecord(buf[:l], root.Offset)
	if err != nil {
		return err
	}
	if len(rec.ident) != 1 || rec.ident[0] != 0 {
		return corrupt(root.Offset+33, "root directory does not start with a \".\" record")
	}
	info, err := im.susp(rec.su, rec.suOff, 0, newBudget(maxSUSP))
	if err != nil {
		return err
	}
	if info.sp || info.rrip {
		im.rockRidge, im.suspSkip = info.rrip, info.skip
	}
	if im.rockRidge && info.hasMode {
		im.rootMode = posixMode(info.mode)&^fs.ModeType | fs.ModeDir
	}
	return nil
}

// tree returns the root and naming of the tree whose names File.Path uses.
func (im *Image) tree() (root Extent, recOff int64, names naming) {
	switch {
	case im.rockRidge:
		return im.primary, im.primaryRec, namesRockRidge
	case im.joliet != nil:
		return *im.joliet, im.jolietRec, namesJoliet
	}
	return im.primary, im.primaryRec, namesISO
}

// Files walks the whole directory tree and returns every file and directory
// except the root, sorted by Path. Directory cycles, shared directory extents,
// nesting deeper than 256 and more than 262144 entries are errors.
func (im *Image) Files() ([]File, error) {
	im.once.Do(func() { im.files, im.filesErr = im.walk() })
	if im.filesErr != nil {
		return nil, im.filesErr
	}
	out := make([]File, len(im.files))
	for i, f := range im.files {
		f.Extents = slices.Clone(f.Extents)
		out[i] = f
	}
	return out, nil
}

func (im *Image) walk() ([]File, error) {
	root, rootRec, names := im.tree()
	w := im.newWalker(names)
	type dir struct {
		path   string
		ext    Extent
		recOff int64
		depth  int
	}
	visited := map[int64]string{root.Offset: "/"} // directory extent -> its path
	stack := []dir{{"/", root, rootRec, 0}}
	var files []File
	pathBytes := 0
	for len(stack) > 0 {
		d := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		entries, err := w.readDir(d.ext, d.recOff)
		if err != nil {
			return nil, err
		}
		for _, e := range entries {
			p := join(d.path, e.name)
			if pathBytes += len(p); len(p) > maxPathLen || pathBytes > maxPathBytes {
				return nil, corrupt(e.recOff, "path of %d bytes (%d bytes of paths so far) exceeds the limits of %d and %d", len(p), pathBytes, maxPathLen, maxPathBytes)
			}
			files = append(files, File{Path: p, Offset: e.extents[0].Offset, Size: e.size, IsDir: e.isDir, Mode: e.mode, Extents: e.extents})
			if !e.isDir || e.size == 0 {
				continue
			}
			if d.depth+1 > maxDepth {
				return nil, corrupt(e.recOff, "directory %q is nested deeper than %d levels", e.name, maxDepth)
			}
			off := e.extents[0].Offset
			if prev, ok := visited[off]; ok {
				if prev == "/" || strings.HasPrefix(p, prev+"/") {
					return nil, corrupt(e.recOff, "directory %s points back to the extent at byte %d of its ancestor %s (a cycle)", p, off, prev)
				}
				return nil, corrupt(e.recOff, "directory %s shares its extent at byte %d with directory %s", p, off, prev)
			}
			visited[off] = p
			stack = append(stack, dir{p, e.extents[0], e.recOff, d.depth + 1})
		}
	}
	slices.SortStableFunc(files, func(a, b File) int { return strings.Compare(a.Path, b.Path) })
	return files, nil
}

func join(dir, name string) string {
	if dir == "/" {
		return "/" + name
	}
	return dir + "/" + name
}

// Lookup finds a file or directory by absolute path ("/images/pxeboot/vmlinuz";
// a missing leading slash is added). Each component matches a Rock Ridge or
// Joliet name exactly (case-sensitive), or failing that an ISO 9660 name
// without its version, ignoring case ("/IMAGES/PXEBOOT/VMLINUZ"). On images
// with Joliet but no Rock Ridge, the ISO 9660 fallback walks the primary tree
// and the returned Path is then made of ISO 9660 names.
func (im *Image) Lookup(name string) (File, error) {
	p := path.Clean("/" + name)
	root, rootRec, names := im.tree()
	f, err := im.lookup(p, root, rootRec, names)
	if err == nil || !errors.Is(err, ErrNotFound) {
		return f, err
	}
	if names == namesJoliet {
		f, err = im.lookup(p, im.primary, im.primaryRec, namesISO)
		if err == nil || !errors.Is(err, ErrNotFound) {
			return f, err
		}
	}
	return File{}, fmt.Errorf("iso: lookup %s: %w", p, ErrNotFound)
}

func (im *Image) lookup(p string, root Extent, rootRec int64, names naming) (File, error) {
	cur := File{Path: "/", Offset: root.Offset, Size: root.Size, IsDir: true, Mode: im.rootMode, Extents: []Extent{root}}
	if p == "/" {
		return cur, nil
	}
	comps := strings.Split(p[1:], "/")
	if len(comps) > maxDepth+1 {
		return File{}, ErrNotFound
	}
	w := im.newWalker(names)
	seen := map[int64]bool{root.Offset: true}
	recOff := rootRec
	for _, c := range comps {
		if !cur.IsDir {
			return File{}, ErrNotFound
		}
		entries, err := w.readDir(cur.Extents[0], recOff)
		if err != nil {
			return File{}, err
		}
		i := slices.IndexFunc(entries, func(e entry) bool { return e.name == c })
		if i < 0 && names != namesJoliet {
			i = slices.IndexFunc(entries, func(e entry) bool { return strings.EqualFold(e.isoName, c) })
		}
		if i < 0 {
			return File{}, ErrNotFound
		}
		e := entries[i]
		cur = File{Path: join(cur.Path, e.name), Offset: e.extents[0].Offset, Size: e.size, IsDir: e.isDir, Mode: e.mode, Extents: e.extents}
		recOff = e.recOff
		if e.isDir && e.size > 0 { // as in walk: an empty directory is never read
			if seen[cur.Offset] {
				return File{}, corrupt(e.recOff, "directory %s points back to the extent at byte %d of an ancestor (a cycle)", cur.Path, cur.Offset)
			}
			seen[cur.Offset] = true
		}
	}
	return cur, nil
}

// FindContent finds a file whose content has the given size and SHA-256 (hex)
// and returns where that content lies in the image, as one contiguous extent.
// Candidates are the files of that size in path order; multi-extent files
// whose sections are not adjacent cannot be one extent and are passed over.
// It returns an error wrapping ErrNotFound if no file matches.
func (im *Image) FindContent(size int64, sha256hex string) (Extent, error) {
	want, err := hex.DecodeString(sha256hex)
	if err != nil || len(want) != sha256.Size {
		return Extent{}, fmt.Errorf("iso: find content: %q is not a hex SHA-256", sha256hex)
	}
	if size < 0 {
		return Extent{}, fmt.Errorf("iso: find content: negative size %d", size)
	}
	files, err := im.Files()
	if err != nil {
		return Extent{}, err
	}
	hashed := map[int64]bool{} // the same data can be named more than once
	buf := make([]byte, 256<<10)
	for _, f := range files {
		if f.IsDir || f.Size != size || !f.Contiguous() || hashed[f.Offset] {
			continue
		}
		hashed[f.Offset] = true
		h := sha256.New()
		if _, err := io.CopyBuffer(h, io.NewSectionReader(im.r, f.Offset, f.Size), buf); err != nil {
			return Extent{}, fmt.Errorf("iso: find content: read %s at byte offset %d: %w", f.Path, f.Offset, err)
		}
		if string(h.Sum(nil)) == string(want) {
			return Extent{Offset: f.Offset, Size: f.Size}, nil
		}
	}
	return Extent{}, fmt.Errorf("iso: no file of %d bytes with sha256 %s: %w", size, strings.ToLower(sha256hex), ErrNotFound)
}
