package ociimage

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"strconv"
	"strings"
	"sync"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/partial"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/rehydrator/rehydrator/internal/ctxio"
	"github.com/rehydrator/rehydrator/internal/units"
	"github.com/rehydrator/rehydrator/internal/workpool"
)

// BuildSpec is everything an image is made of. The same spec (same file contents) gives the
// same image digest.
type BuildSpec struct {
	// Binary is the static rehydrator binary for the tool layer; ignored with Base.
	Binary string
	// Base, when set, is an image reference (docker://, oci:, docker-archive:) whose layers
	// come first, in place of the tool layer (build --from). Its entrypoint is kept if it has
	// one. The result is only as reproducible as the reference: prefer a digest.
	Base string
	// Blobs are the blob files, one layer each, in this order (duplicates are dropped).
	Blobs []string
	// Recipe and StreamJSON are stored as rehydrator.json and stream.json, byte for byte.
	Recipe, StreamJSON []byte
	// Compression of the layers we make (zstd by default).
	Compression Compression
	// Platform is "os/arch[/variant]", "linux/amd64" when empty.
	Platform string
	// Created is the time stamped on files, history and config. When zero it is
	// $SOURCE_DATE_EPOCH if set, else the Unix epoch.
	Created time.Time
	// Progress, if set, hears about long steps (from several goroutines, one call at a time).
	Progress func(msg string)
}

// layerJobs is how many layers are compressed at once. Each zstd encoder already uses every
// core on big layers; two keeps small layers from waiting behind a big one.
const layerJobs = 2

// Build makes the image. Layers are compressed into files under workDir, which must stay
// until the image has been written.
func Build(ctx context.Context, spec BuildSpec, workDir string) (_ v1.Image, err error) {
	if spec.Recipe == nil {
		return nil, errors.New("build image: no recipe")
	}
	if spec.Binary == "" && spec.Base == "" {
		return nil, errors.New("build image: no tool binary and no base image: give one of them")
	}
	if err := spec.Compression.validate(); err != nil {
		return nil, fmt.Errorf("build image: %w", err)
	}
	platform, err := parsePlatform(spec.Platform)
	if err != nil {
		return nil, fmt.Errorf("build image: %w", err)
	}
	created, err := spec.created()
	if err != nil {
		return nil, fmt.Errorf("build image: %w", err)
	}
	b := &builder{spec: spec, created: created, platform: platform, progress: spec.Progress}
	var tool os.FileInfo
	if spec.Base == "" {
		if tool, err = os.Stat(spec.Binary); err != nil {
			return nil, fmt.Errorf("build image: tool binary: %w", err)
		}
		if !tool.Mode().IsRegular() {
			return nil, fmt.Errorf("build image: tool binary %s is not a regular file", spec.Binary)
		}
	}

	var base v1.Image
	var baseDigest v1.Hash
	if spec.Base != "" {
		b.report("reading base image %s", spec.Base)
		base, err = readBaseImage(ctx, spec.Base, platform)
		if err != nil {
			return nil, fmt.Errorf("build image: base %s: %w", spec.Base, err)
		}
		if err := checkBasePlatform(base, platform); err != nil {
			return nil, fmt.Errorf("build image: base %s: %w", spec.Base, err)
		}
		b.baseTypesGuessed = strings.HasPrefix(spec.Base, transportArchive+":")
		if baseDigest, err = base.Digest(); err != nil {
			return nil, fmt.Errorf("build image: base %s: %w", spec.Base, err)
		}
	}

	dir, err := os.MkdirTemp(workDir, "ociimage-")
	if err != nil {
		return nil, fmt.Errorf("build image: %w", err)
	}
	defer func() {
		if err != nil {
			os.RemoveAll(dir)
		}
	}()
	b.dir = dir

	blobs, err := b.hashBlobs(ctx)
	if err != nil {
		return nil, fmt.Errorf("build image: %w", err)
	}

	// Compress the tool and blob layers, then the metadata layer that names their diffIDs.
	var jobs []layerJob
	if tool != nil {
		jobs = append(jobs, layerJob{
			kind:      "tool",
			title:     BinaryPath,
			createdBy: "rehydrator build: tool " + BinaryPath,
			entries:   []tarEntry{fileEntry(BinaryPath[1:], spec.Binary, 0o755, tool.Size(), "")},
			size:      tool.Size(),
		})
	}
	for _, bl := range blobs {
		jobs = append(jobs, layerJob{
			kind:      "blob",
			title:     "/" + blobRelPath(bl.hex),
			blob:      "sha256:" + bl.hex,
			createdBy: "rehydrator build: blob sha256:" + bl.hex,
			entries:   []tarEntry{fileEntry(blobRelPath(bl.hex), bl.path, 0o644, bl.size, bl.hex)},
			size:      bl.size,
		})
	}
	if err := b.compressAll(ctx, jobs); err != nil {
		return nil, fmt.Errorf("build image: %w", err)
	}

	layersJSON := map[string]string{}
	for _, j := range jobs {
		if j.blob != "" {
			layersJSON[j.blob] = j.layer.diffID.String()
		}
	}
	lj, err := json.MarshalIndent(layersJSON, "", "  ")
	if err != nil {
		return nil, err
	}
	meta := []layerJob{{
		kind:      "metadata",
		title:     path.Join(DataDir, RecipeFile),
		createdBy: "rehydrator build: metadata " + DataDir,
		entries: []tarEntry{
			bytesEntry(path.Join(DataDir[1:], RecipeFile), spec.Recipe),
			bytesEntry(path.Join(DataDir[1:], StreamFile), spec.StreamJSON),
			bytesEntry(path.Join(DataDir[1:], LayersFile), append(lj, '\n')),
		},
	}}
	if err := b.compressAll(ctx, meta); err != nil {
		return nil, fmt.Errorf("build image: %w", err)
	}
	jobs = append(jobs, meta...)

	img, err := b.assemble(base, baseDigest, jobs)
	if err != nil {
		return nil, fmt.Errorf("build image: %w", err)
	}
	return img, nil
}

type builder struct {
	spec     BuildSpec
	created  time.Time
	platform v1.Platform
	dir      string
	// baseTypesGuessed: a docker-archive stores no media types, and go-containerregistry
	// calls every compressed layer in one gzip, zstd included.
	baseTypesGuessed bool

	mu       sync.Mutex
	progress func(string)
}

func (b *builder) report(format string, args ...any) {
	if b.progress == nil {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	b.progress(fmt.Sprintf(format, args...))
}

func (s BuildSpec) created() (time.Time, error) {
	if !s.Created.IsZero() {
		return s.Created.UTC().Truncate(time.Second), nil
	}
	if v := os.Getenv("SOURCE_DATE_EPOCH"); v != "" {
		sec, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			return time.Time{}, fmt.Errorf("SOURCE_DATE_EPOCH=%q is not a number of seconds", v)
		}
		return time.Unix(sec, 0).UTC(), nil
	}
	return time.Unix(0, 0).UTC(), nil
}

func parsePlatform(s string) (v1.Platform, error) {
	if s == "" {
		return v1.Platform{OS: "linux", Architecture: "amd64"}, nil
	}
	p, err := v1.ParsePlatform(s)
	if err != nil || p.OS == "" || p.Architecture == "" {
		return v1.Platform{}, fmt.Errorf("platform %q: want OS/ARCH[/VARIANT], e.g. linux/arm64", s)
	}
	return *p, nil
}

type blobFile struct {
	path string
	hex  string
	size int64
}

// hashBlobs computes each blob's sha256, which names its file in the layer and so must be
// known before the layer's tar starts.
func (b *builder) hashBlobs(ctx context.Context) ([]blobFile, error) {
	out := make([]blobFile, len(b.spec.Blobs))
	err := workpool.ForEach(ctx, len(out), layerJobs, func(i int) error {
		p := b.spec.Blobs[i]
		f, err := os.Open(p)
		if err != nil {
			return fmt.Errorf("blob: %w", err)
		}
		defer f.Close()
		st, err := f.Stat()
		if err != nil {
			return fmt.Errorf("blob: %w", err)
		}
		if !st.Mode().IsRegular() {
			return fmt.Errorf("blob %s is not a regular file", p)
		}
		b.report("hashing blob %s (%s)", p, units.Bytes(st.Size()))
		h := sha256.New()
		n, err := io.CopyBuffer(h, ctxio.Reader(ctx, f), make([]byte, 1<<20))
		if err != nil {
			return fmt.Errorf("blob %s: %w", p, err)
		}
		out[i] = blobFile{path: p, hex: hex.EncodeToString(h.Sum(nil)), size: n}
		return nil
	})
	if err != nil {
		return nil, err
	}
	seen := map[string]bool{}
	var uniq []blobFile
	for _, bl := range out {
		if !seen[bl.hex] {
			seen[bl.hex] = true
			uniq = append(uniq, bl)
		}
	}
	return uniq, nil
}

type layerJob struct {
	kind, title, blob, createdBy string
	entries                      []tarEntry
	size                         int64 // uncompressed payload, for progress
	layer                        *fileLayer
}

func (b *builder) compressAll(ctx context.Context, jobs []layerJob) error {
	return workpool.ForEach(ctx, len(jobs), layerJobs, func(i int) error {
		j := &jobs[i]
		start := time.Now()
		what := j.kind + " layer " + j.title
		if j.size > 0 {
			b.report("compressing %s (%s)", what, units.Bytes(j.size))
		}
		l, err := b.spec.Compression.compressLayer(ctx, b.dir, func(w io.Writer) error {
			return writeLayerTar(ctx, w, b.created, j.entries)
		})
		if err != nil {
			return fmt.Errorf("%s: %w", what, err)
		}
		j.layer = l
		if j.size > 0 {
			b.report("compressed %s: %s -> %s in %s", what, units.Bytes(j.size), units.Bytes(l.size), time.Since(start).Round(time.Millisecond))
		}
		return nil
	})
}

// assemble writes the config and manifest around the layers.
func (b *builder) assemble(base v1.Image, baseDigest v1.Hash, jobs []layerJob) (v1.Image, error) {
	cfg := &v1.ConfigFile{}
	var manifestLayers []v1.Descriptor
	layers := map[v1.Hash]partial.CompressedLayer{}
	if base != nil {
		bc, err := base.ConfigFile()
		if err != nil {
			return nil, fmt.Errorf("base config: %w", err)
		}
		cfg = bc.DeepCopy()
		bm, err := base.Manifest()
		if err != nil {
			return nil, fmt.Errorf("base manifest: %w", err)
		}
		for _, d := range bm.Layers {
			l, err := base.LayerByDigest(d.Digest)
			if err != nil {
				return nil, fmt.Errorf("base layer %s: %w", d.Digest, err)
			}
			// Our layers are OCI types, and OCI and Docker types must not mix in one manifest.
			d.MediaType = ociLayerType(d.MediaType)
			if b.baseTypesGuessed {
				if d.MediaType, err = sniffLayerType(l, d.MediaType); err != nil {
					return nil, fmt.Errorf("base layer %s: %w", d.Digest, err)
				}
			}
			manifestLayers = append(manifestLayers, d)
			layers[d.Digest] = typedLayer{l, d.MediaType}
		}
	}
	cfg.OS, cfg.Architecture, cfg.Variant, cfg.OSVersion = b.platform.OS, b.platform.Architecture, b.platform.Variant, b.platform.OSVersion
	cfg.Created = v1.Time{Time: b.created}
	if cfg.RootFS.Type == "" {
		cfg.RootFS.Type = "layers"
	}
	if len(cfg.Config.Entrypoint) == 0 {
		cfg.Config.Entrypoint = []string{BinaryPath}
		cfg.Config.Cmd = []string{"--help"}
	}
	if len(cfg.Config.Env) == 0 {
		cfg.Config.Env = []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}
	}
	if cfg.Config.Labels == nil {
		cfg.Config.Labels = map[string]string{}
	}
	meta := jobs[len(jobs)-1].layer
	cfg.Config.Labels[MetadataLabel] = meta.diffID.String()

	for _, j := range jobs {
		cfg.RootFS.DiffIDs = append(cfg.RootFS.DiffIDs, j.layer.diffID)
		cfg.History = append(cfg.History, v1.History{Created: v1.Time{Time: b.created}, CreatedBy: j.createdBy})
		ann := map[string]string{annotationTitle: j.title, LayerKindAnnotation: j.kind}
		if j.blob != "" {
			ann[BlobAnnotation] = j.blob
		}
		manifestLayers = append(manifestLayers, v1.Descriptor{
			MediaType:   j.layer.mediaType,
			Size:        j.layer.size,
			Digest:      j.layer.digest,
			Annotations: ann,
		})
		layers[j.layer.digest] = j.layer
	}

	rawConfig, err := json.Marshal(cfg)
	if err != nil {
		return nil, err
	}
	cfgDigest, cfgSize, err := v1.SHA256(bytes.NewReader(rawConfig))
	if err != nil {
		return nil, err
	}
	m := v1.Manifest{
		SchemaVersion: 2,
		MediaType:     types.OCIManifestSchema1,
		Config:        v1.Descriptor{MediaType: types.OCIConfigJSON, Size: cfgSize, Digest: cfgDigest},
		Layers:        manifestLayers,
		Annotations: map[string]string{
			annotationCreated: b.created.Format(time.RFC3339),
			MetadataLabel:     meta.diffID.String(),
		},
	}
	if base != nil {
		m.Annotations[annotationBaseName] = b.spec.Base
		// A docker-archive has no manifest: its digest would be one go-containerregistry made up.
		if !b.baseTypesGuessed {
			m.Annotations[annotationBaseDgst] = baseDigest.String()
		}
	}
	rawManifest, err := json.Marshal(m)
	if err != nil {
		return nil, err
	}
	img, err := partial.CompressedToImage(&imageCore{rawConfig: rawConfig, rawManifest: rawManifest, layers: layers})
	if err != nil {
		return nil, err
	}
	bi := &builtImage{Image: img}
	for _, j := range jobs {
		bi.files = append(bi.files, j.layer)
	}
	return bi, nil
}

// builtImage is what Build returns: Write recognises it to link layer files instead of
// copying them.
type builtImage struct {
	v1.Image
	files []*fileLayer
}

// imageCore is the image as Build made it: fixed config and manifest bytes, layers by digest.
type imageCore struct {
	rawConfig, rawManifest []byte
	layers                 map[v1.Hash]partial.CompressedLayer
}

func (i *imageCore) RawConfigFile() ([]byte, error)      { return i.rawConfig, nil }
func (i *imageCore) RawManifest() ([]byte, error)        { return i.rawManifest, nil }
func (i *imageCore) MediaType() (types.MediaType, error) { return types.OCIManifestSchema1, nil }
func (i *imageCore) LayerByDigest(h v1.Hash) (partial.CompressedLayer, error) {
	if l, ok := i.layers[h]; ok {
		return l, nil
	}
	return nil, fmt.Errorf("layer %s: not in this image", h)
}

// typedLayer is a base layer under the OCI name of its media type (same bytes).
type typedLayer struct {
	v1.Layer
	mt types.MediaType
}

func (l typedLayer) MediaType() (types.MediaType, error) { return l.mt, nil }

func ociLayerType(mt types.MediaType) types.MediaType {
	switch mt {
	case types.DockerLayer:
		return types.OCILayer
	case types.DockerUncompressedLayer:
		return types.OCIUncompressedLayer
	case types.DockerForeignLayer:
		return types.OCIRestrictedLayer
	}
	return mt
}

// sniffLayerType corrects a layer's compressed media type from its first bytes.
func sniffLayerType(l v1.Layer, mt types.MediaType) (types.MediaType, error) {
	if mt != types.OCILayer && mt != types.OCILayerZStd {
		return mt, nil
	}
	rc, err := l.Compressed()
	if err != nil {
		return "", err
	}
	defer rc.Close()
	magic := make([]byte, 4)
	n, err := io.ReadFull(rc, magic)
	if err != nil && err != io.ErrUnexpectedEOF {
		return "", err
	}
	switch sniff(magic[:n]) {
	case algoZstd:
		return types.OCILayerZStd, nil
	case algoGzip:
		return types.OCILayer, nil
	}
	return types.OCIUncompressedLayer, nil
}
