package ociimage

import (
	"archive/tar"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path"
	"strconv"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// archiveEntry is where a file's bytes sit inside the archive.
type archiveEntry struct {
	offset, size int64
	link         string // symlink or hard link target, resolved on lookup
}

// archiveIndex maps the entries of a docker-archive to their offsets, read once by skipping
// from header to header, so that a layer is then read in place with no unpacking.
type archiveIndex struct {
	f       *os.File
	entries map[string]archiveEntry
}

func indexArchive(f *os.File) (*archiveIndex, error) {
	pr := &posReader{f: f}
	tr := tar.NewReader(pr)
	ix := &archiveIndex{f: f, entries: map[string]archiveEntry{}}
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			return ix, nil
		}
		if err != nil {
			return nil, err
		}
		n := cleanTarName(hdr.Name)
		switch hdr.Typeflag {
		case tar.TypeReg:
			ix.entries[n] = archiveEntry{offset: pr.pos, size: hdr.Size}
		case tar.TypeSymlink:
			ix.entries[n] = archiveEntry{link: cleanTarName(path.Join(path.Dir(n), hdr.Linkname))}
		case tar.TypeLink:
			ix.entries[n] = archiveEntry{link: cleanTarName(hdr.Linkname)}
		}
	}
}

func (ix *archiveIndex) open(name string) (*io.SectionReader, error) {
	n := cleanTarName(name)
	for hops := 0; hops < 8; hops++ {
		e, ok := ix.entries[n]
		if !ok {
			return nil, fmt.Errorf("no %s in the archive", name)
		}
		if e.link == "" {
			return io.NewSectionReader(ix.f, e.offset, e.size), nil
		}
		n = e.link
	}
	return nil, fmt.Errorf("%s: too many links", name)
}

func (ix *archiveIndex) readAll(name string) ([]byte, error) {
	sr, err := ix.open(name)
	if err != nil {
		return nil, err
	}
	if sr.Size() > 64<<20 {
		return nil, fmt.Errorf("%s: %d bytes is too large", name, sr.Size())
	}
	return io.ReadAll(sr)
}

// posReader knows its offset in the file; tar.Reader seeks over file data through it.
type posReader struct {
	f   *os.File
	pos int64
}

func (r *posReader) Read(p []byte) (int, error) {
	n, err := r.f.Read(p)
	r.pos += int64(n)
	return n, err
}

func (r *posReader) Seek(offset int64, whence int) (int64, error) {
	p, err := r.f.Seek(offset, whence)
	if err == nil {
		r.pos = p
	}
	return p, err
}

type archiveManifest struct {
	Config   string
	RepoTags []string
	Layers   []string
}

func openArchive(ctx context.Context, r imageRef) (_ Source, err error) {
	f, err := os.Open(r.path)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", r, err)
	}
	defer func() {
		if err != nil {
			f.Close()
		}
	}()
	ix, err := indexArchive(f)
	if err != nil {
		return nil, fmt.Errorf("%s: not a docker-archive (%v)", r, err)
	}
	raw, err := ix.readAll("manifest.json")
	if err != nil {
		return nil, fmt.Errorf("%s: not a docker-archive (%v)", r, err)
	}
	var ms []archiveManifest
	if err := json.Unmarshal(raw, &ms); err != nil {
		return nil, fmt.Errorf("%s: manifest.json: %w", r, err)
	}
	m, err := chooseArchiveImage(r, ms)
	if err != nil {
		return nil, err
	}
	cfgRaw, err := ix.readAll(m.Config)
	if err != nil {
		return nil, fmt.Errorf("%s: config: %w", r, err)
	}
	var cfg v1.ConfigFile
	if err := json.Unmarshal(cfgRaw, &cfg); err != nil {
		return nil, fmt.Errorf("%s: config: %w", r, err)
	}
	if len(m.Layers) != len(cfg.RootFS.DiffIDs) {
		return nil, fmt.Errorf("%s: manifest.json lists %d layers but the config %d diffIDs: the archive is damaged", r, len(m.Layers), len(cfg.RootFS.DiffIDs))
	}
	open := func(ctx context.Context, i int) (io.ReadCloser, error) {
		sr, err := ix.open(m.Layers[i])
		if err != nil {
			return nil, err
		}
		return io.NopCloser(sr), nil
	}
	s, err := newImageSource(ctx, r.String(), "", &cfg, open)
	if err != nil {
		return nil, err
	}
	s.close = f.Close
	return s, nil
}

func chooseArchiveImage(r imageRef, ms []archiveManifest) (archiveManifest, error) {
	var tags []string
	for _, m := range ms {
		tags = append(tags, m.RepoTags...)
	}
	switch {
	case len(ms) == 0:
		return archiveManifest{}, fmt.Errorf("%s: the archive holds no image", r)
	case r.tag == "" && len(ms) == 1:
		return ms[0], nil
	case r.tag == "":
		return archiveManifest{}, fmt.Errorf("%s: the archive holds %d images: add :NAME:TAG or :@INDEX (tags: %s)", r, len(ms), listOrNone(tags))
	case strings.HasPrefix(r.tag, "@"):
		i, err := strconv.Atoi(r.tag[1:])
		if err != nil || i < 0 || i >= len(ms) {
			return archiveManifest{}, fmt.Errorf("%s: no image %s: the archive holds images @0 to @%d", r, r.tag, len(ms)-1)
		}
		return ms[i], nil
	}
	want, err := name.NewTag(r.tag)
	if err != nil {
		return archiveManifest{}, fmt.Errorf("%s: %w", r, err)
	}
	for _, m := range ms {
		for _, t := range m.RepoTags {
			if got, err := name.NewTag(t); err == nil && got.Name() == want.Name() {
				return m, nil
			}
		}
	}
	return archiveManifest{}, fmt.Errorf("%s: no image tagged %s in the archive (tags: %s)", r, r.tag, listOrNone(tags))
}
