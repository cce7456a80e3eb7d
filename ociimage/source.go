package ociimage

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"path"
	"regexp"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/rehydrator/rehydrator/internal/ctxio"
)

// Source gives the metadata and blobs of one rehydrator image, wherever it is.
// It is safe for concurrent use.
type Source interface {
	// Metadata returns rehydrator.json and stream.json as stored; callers must not modify them.
	Metadata(ctx context.Context) (recipe, streamJSON []byte, err error)
	// OpenBlob streams the uncompressed content of blob "sha256:<hex>", fetching only the layer
	// that holds it. The reader fails at the end, instead of returning io.EOF, if the content
	// does not hash to the digest.
	OpenBlob(ctx context.Context, digest string) (io.ReadCloser, error)
	Close() error
}

// LocalFiler is implemented by sources whose blobs are plain files (the in-container
// directory), which give random access for free.
type LocalFiler interface {
	BlobPath(digest string) (string, bool)
}

// Digester is implemented by every source returned by Open. Digest is the image's manifest
// digest ("sha256:<hex>"), the name a signature is made for, or "" where the transport keeps no
// manifest (docker-archive, dir:).
type Digester interface {
	Digest() string
}

// Open opens a rehydrator image:
//
//	"" or dir:PATH                 a directory laid out like /usr/share/rehydrator (the default,
//	                               inside the container); also a skopeo dir: copy of the image
//	oci:PATH[:TAG]                 an OCI layout; TAG may be left out if it holds one image
//	docker-archive:PATH[:NAME:TAG] a docker-archive (docker save, skopeo copy); NAME:TAG or @N
//	                               may be left out if it holds one image
//	docker://HOST/REPO:TAG         a registry, also docker://HOST/REPO@sha256:<hex>
//
// Open reads the config and the small metadata layer; blobs are fetched by OpenBlob.
func Open(ctx context.Context, ref string) (Source, error) {
	return OpenArch(ctx, ref, "")
}

// OpenArch is Open for the image of one architecture ("x86_64", "aarch64", ... as stream
// metadata names them) where ref is an image index; "" means this machine's.
func OpenArch(ctx context.Context, ref, arch string) (Source, error) {
	platform := hostPlatform()
	if arch != "" {
		platform = ArchPlatform(arch)
	}
	if ref == "" {
		ref = transportDir + ":" + DataDir
	}
	r, err := parseRef(ref)
	if err != nil {
		return nil, err
	}
	switch r.transport {
	case transportDir:
		return openDir(ctx, r)
	case transportOCI:
		return openLayout(ctx, r, platform)
	case transportArchive:
		return openArchive(ctx, r)
	case transportDocker:
		return openRemote(ctx, r, platform)
	}
	return nil, fmt.Errorf("image reference %q: cannot read transport %s: %s", ref, r.transport, refHelp)
}

var blobDigestRE = regexp.MustCompile(`^sha256:[0-9a-f]{64}$`)

func checkBlobDigest(digest string) error {
	if !blobDigestRE.MatchString(digest) {
		return fmt.Errorf("blob %q: not a digest of the form sha256:<64 lowercase hex>", digest)
	}
	return nil
}

// imageSource reads any transport that stores the image as config + layers.
type imageSource struct {
	ref    string
	digest string
	// openLayer returns layer i (by position in the config's diffIDs), compressed or not.
	openLayer func(ctx context.Context, i int) (io.ReadCloser, error)
	close     func() error

	diffIDs            map[v1.Hash]int
	recipe, streamJSON []byte
	blobLayers         map[string]v1.Hash
}

// newImageSource checks that the config is a rehydrator image's and reads its metadata layer.
func newImageSource(ctx context.Context, ref, digest string, cfg *v1.ConfigFile, openLayer func(context.Context, int) (io.ReadCloser, error)) (*imageSource, error) {
	s := &imageSource{ref: ref, digest: digest, openLayer: openLayer, diffIDs: map[v1.Hash]int{}}
	for i, d := range cfg.RootFS.DiffIDs {
		s.diffIDs[d] = i
	}
	label := cfg.Config.Labels[MetadataLabel]
	if label == "" {
		return nil, fmt.Errorf("%s is not a rehydrator image (its config has no %s label): give an image made by \"rehydrator build\"", ref, MetadataLabel)
	}
	metaID, err := v1.NewHash(label)
	if err != nil {
		return nil, fmt.Errorf("%s: label %s=%q is not a digest: the image is damaged, rebuild it", ref, MetadataLabel, label)
	}
	files, err := s.readLayerFiles(ctx, metaID, RecipeFile, StreamFile, LayersFile)
	if err != nil {
		return nil, fmt.Errorf("%s: metadata layer %s: %w", ref, metaID, err)
	}
	s.recipe, s.streamJSON = files[RecipeFile], files[StreamFile]
	var layers map[string]string
	if err := json.Unmarshal(files[LayersFile], &layers); err != nil {
		return nil, fmt.Errorf("%s: %s: %w", ref, LayersFile, err)
	}
	s.blobLayers = map[string]v1.Hash{}
	for blob, diffID := range layers {
		h, err := v1.NewHash(diffID)
		if err != nil {
			return nil, fmt.Errorf("%s: %s: blob %s: %w", ref, LayersFile, blob, err)
		}
		s.blobLayers[blob] = h
	}
	return s, nil
}

// readLayerFiles reads small files (by name relative to DataDir) from the layer with diffID.
func (s *imageSource) readLayerFiles(ctx context.Context, diffID v1.Hash, names ...string) (map[string][]byte, error) {
	i, ok := s.diffIDs[diffID]
	if !ok {
		return nil, errors.New("not among the image's layers: the image is damaged, rebuild it")
	}
	raw, err := s.openLayer(ctx, i)
	if err != nil {
		return nil, err
	}
	rc, err := decompress(raw)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	want := map[string]string{}
	for _, n := range names {
		want[path.Join(DataDir[1:], n)] = n
	}
	out := map[string][]byte{}
	// The whole layer is hashed and compared with its diffID: the config that names the
	// diffID is checked against the manifest, so a signed manifest vouches for these files.
	h := sha256.New()
	layer := io.TeeReader(ctxio.Reader(ctx, rc), h)
	tr := tar.NewReader(layer)
	for len(out) < len(names) {
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, err
		}
		n, ok := want[cleanTarName(hdr.Name)]
		if !ok || hdr.Typeflag != tar.TypeReg {
			continue
		}
		// The files are JSON written by build; 1 GiB is far beyond any real release.
		if hdr.Size > 1<<30 {
			return nil, fmt.Errorf("%s: %d bytes is too large", hdr.Name, hdr.Size)
		}
		var b bytes.Buffer
		if _, err := io.Copy(&b, tr); err != nil {
			return nil, fmt.Errorf("%s: %w", hdr.Name, err)
		}
		out[n] = b.Bytes()
	}
	if _, err := io.Copy(io.Discard, layer); err != nil {
		return nil, err
	}
	if got := "sha256:" + hex.EncodeToString(h.Sum(nil)); got != diffID.String() {
		return nil, fmt.Errorf("content hashes to %s: the image is damaged or was altered, rebuild it", got)
	}
	for _, n := range names {
		if _, ok := out[n]; !ok {
			return nil, fmt.Errorf("no %s in it: the image is damaged, rebuild it", path.Join(DataDir, n))
		}
	}
	return out, nil
}

func (s *imageSource) Metadata(ctx context.Context) ([]byte, []byte, error) {
	return s.recipe, s.streamJSON, nil
}

func (s *imageSource) Digest() string { return s.digest }

func (s *imageSource) OpenBlob(ctx context.Context, digest string) (io.ReadCloser, error) {
	if err := checkBlobDigest(digest); err != nil {
		return nil, err
	}
	diffID, ok := s.blobLayers[digest]
	if !ok {
		return nil, fmt.Errorf("blob %s: not in %s's %s: the recipe asks for a blob this image does not carry (use the image the recipe came from)", digest, s.ref, LayersFile)
	}
	i, ok := s.diffIDs[diffID]
	if !ok {
		return nil, fmt.Errorf("blob %s: its layer %s is not in %s: the image is damaged, rebuild it", digest, diffID, s.ref)
	}
	raw, err := s.openLayer(ctx, i)
	if err != nil {
		return nil, fmt.Errorf("blob %s: layer %s: %w", digest, diffID, err)
	}
	rc, err := decompress(raw)
	if err != nil {
		return nil, fmt.Errorf("blob %s: layer %s: %w", digest, diffID, err)
	}
	want := blobRelPath(strings.TrimPrefix(digest, "sha256:"))
	tr := tar.NewReader(rc)
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			rc.Close()
			return nil, fmt.Errorf("blob %s: layer %s has no %s: the image is damaged, rebuild it", digest, diffID, "/"+want)
		}
		if err != nil {
			rc.Close()
			return nil, fmt.Errorf("blob %s: layer %s: %w", digest, diffID, err)
		}
		if cleanTarName(hdr.Name) == want && hdr.Typeflag == tar.TypeReg {
			return newVerifyingReader(tr, rc, digest), nil
		}
	}
}

func (s *imageSource) Close() error {
	if s.close != nil {
		return s.close()
	}
	return nil
}

func cleanTarName(n string) string {
	return strings.TrimPrefix(path.Clean("/"+n), "/")
}

// verifyingReader hashes a blob as it is read and turns io.EOF into an error when the content
// does not match its digest.
type verifyingReader struct {
	r      io.Reader
	closer io.Closer
	h      hash.Hash
	digest string
}

func newVerifyingReader(r io.Reader, closer io.Closer, digest string) *verifyingReader {
	return &verifyingReader{r: r, closer: closer, h: sha256.New(), digest: digest}
}

func (v *verifyingReader) Read(p []byte) (int, error) {
	n, err := v.r.Read(p)
	v.h.Write(p[:n])
	if err == io.EOF {
		if got := "sha256:" + hex.EncodeToString(v.h.Sum(nil)); got != v.digest {
			return n, fmt.Errorf("blob %s: content hashes to %s: the image is corrupt", v.digest, got)
		}
	}
	return n, err
}

func (v *verifyingReader) Close() error { return v.closer.Close() }
