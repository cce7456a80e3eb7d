package ociimage

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// dirSource reads the unpacked data directory, /usr/share/rehydrator inside the container.
type dirSource struct {
	dir                string
	recipe, streamJSON []byte
}

var _ LocalFiler = (*dirSource)(nil)

func openDir(ctx context.Context, r imageRef) (Source, error) {
	dir := r.path
	recipe, err := os.ReadFile(filepath.Join(dir, RecipeFile))
	if errors.Is(err, fs.ErrNotExist) {
		if isSkopeoDir(dir) {
			return openSkopeoDir(ctx, r)
		}
		if dir == DataDir {
			return nil, fmt.Errorf("no %s: not running inside a rehydrator image: give an image reference (%s)", filepath.Join(dir, RecipeFile), refHelp)
		}
		return nil, fmt.Errorf("%s: no %s: not a rehydrator data directory (like %s in the image) nor a skopeo dir: copy", dir, RecipeFile, DataDir)
	}
	if err != nil {
		return nil, fmt.Errorf("%s: %w", r, err)
	}
	streamJSON, err := os.ReadFile(filepath.Join(dir, StreamFile))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", r, err)
	}
	return &dirSource{dir: dir, recipe: recipe, streamJSON: streamJSON}, nil
}

func (s *dirSource) Metadata(ctx context.Context) ([]byte, []byte, error) {
	return s.recipe, s.streamJSON, nil
}

// BlobPath is the blob's file, if it exists. Its content is not checked here.
func (s *dirSource) BlobPath(digest string) (string, bool) {
	if checkBlobDigest(digest) != nil {
		return "", false
	}
	p := filepath.Join(s.dir, "blobs", "sha256", strings.TrimPrefix(digest, "sha256:"))
	st, err := os.Stat(p)
	if err != nil || !st.Mode().IsRegular() {
		return "", false
	}
	return p, true
}

func (s *dirSource) OpenBlob(ctx context.Context, digest string) (io.ReadCloser, error) {
	if err := checkBlobDigest(digest); err != nil {
		return nil, err
	}
	p, ok := s.BlobPath(digest)
	if !ok {
		return nil, fmt.Errorf("blob %s: no file %s: the recipe asks for a blob this image does not carry", digest,
			filepath.Join(s.dir, "blobs", "sha256", strings.TrimPrefix(digest, "sha256:")))
	}
	f, err := os.Open(p)
	if err != nil {
		return nil, fmt.Errorf("blob %s: %w", digest, err)
	}
	return newVerifyingReader(f, f, digest), nil
}

func (s *dirSource) Digest() string { return "" }

func (s *dirSource) Close() error { return nil }

// A skopeo dir: copy holds manifest.json, a version file and every blob as a file named by its
// hex digest.
func isSkopeoDir(dir string) bool {
	for _, n := range []string{"manifest.json", "version"} {
		if _, err := os.Stat(filepath.Join(dir, n)); err != nil {
			return false
		}
	}
	return true
}

func openSkopeoDir(ctx context.Context, r imageRef) (Source, error) {
	blob := func(h v1.Hash) string { return filepath.Join(r.path, h.Hex) }
	raw, err := os.ReadFile(filepath.Join(r.path, "manifest.json"))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", r, err)
	}
	m, err := v1.ParseManifest(strings.NewReader(string(raw)))
	if err != nil {
		return nil, fmt.Errorf("%s: manifest.json: %w", r, err)
	}
	if m.MediaType.IsIndex() {
		return nil, fmt.Errorf("%s holds a multi-platform index: copy one platform (skopeo copy --override-arch) and open that", r)
	}
	cfgRaw, err := os.ReadFile(blob(m.Config.Digest))
	if err != nil {
		return nil, fmt.Errorf("%s: config: %w", r, err)
	}
	var cfg v1.ConfigFile
	if err := json.Unmarshal(cfgRaw, &cfg); err != nil {
		return nil, fmt.Errorf("%s: config: %w", r, err)
	}
	if len(m.Layers) != len(cfg.RootFS.DiffIDs) {
		return nil, fmt.Errorf("%s: manifest has %d layers but config %d diffIDs: the image is damaged", r, len(m.Layers), len(cfg.RootFS.DiffIDs))
	}
	digest, _, err := v1.SHA256(strings.NewReader(string(raw)))
	if err != nil {
		return nil, err
	}
	open := func(ctx context.Context, i int) (io.ReadCloser, error) { return os.Open(blob(m.Layers[i].Digest)) }
	return newImageSource(ctx, r.String(), digest.String(), &cfg, open)
}
