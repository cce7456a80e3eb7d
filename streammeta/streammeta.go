// Package streammeta reads Fedora CoreOS stream metadata (stream.json) and turns it into the flat
// list of artifacts that rehydrator builds and rehydrates: one entry per file that a release
// ships, with its identity (architecture, platform, format, kind), its shipped name, and the
// checksums that judge a rehydrated file.
package streammeta

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"path"
	"regexp"
	"sort"
	"strings"

	"github.com/coreos/stream-metadata-go/stream"
)

// Kinds of file inside one stream-metadata format.
const (
	KindDisk      = "disk"
	KindKernel    = "kernel"
	KindInitramfs = "initramfs"
	KindRootfs    = "rootfs"
)

// Artifact is one shipped file of a release.
type Artifact struct {
	Arch     string `json:"arch"`
	Platform string `json:"platform"`
	Format   string `json:"format"` // stream-metadata format key: "qcow2.xz", "4k.raw.xz", "iso", "pxe"...
	Kind     string `json:"kind"`   // disk, kernel, initramfs, rootfs

	Location string `json:"location"`
	// ShippedName is the last element of Location: the file name in a release directory.
	ShippedName string `json:"shippedName"`
	// Name is the rehydrated file's name: ShippedName without its compression suffix.
	Name string `json:"name"`
	// Compression of the shipped file: "xz", "gzip" or "" (shipped as is).
	Compression string `json:"compression,omitempty"`
	// SHA256 of the shipped file; UncompressedSHA256 of the file after decompression (equal to
	// SHA256 for files shipped uncompressed). Both lowercase hex.
	SHA256             string `json:"sha256"`
	UncompressedSHA256 string `json:"uncompressedSha256"`
}

// ID names an artifact uniquely within a release: "x86_64/metal/4k.raw.xz/disk".
func (a Artifact) ID() string {
	return a.Arch + "/" + a.Platform + "/" + a.Format + "/" + a.Kind
}

// DiskName is the name users give with `--disk`: the platform, except that the 4K-sector metal
// disk is "metal4k" (the stream metadata spells it as format "4k.raw.xz" of platform metal).
func (a Artifact) DiskName() string {
	if a.Kind != KindDisk || a.Format == "iso" {
		return ""
	}
	if a.Platform == "metal" && strings.HasPrefix(a.Format, "4k.") {
		return "metal4k"
	}
	return a.Platform
}

// IsISO reports whether the artifact is the live ISO.
func (a Artifact) IsISO() bool { return a.Format == "iso" && a.Kind == KindDisk }

// IsPXE reports whether the artifact is one of the PXE files.
func (a Artifact) IsPXE() bool { return a.Format == "pxe" }

// Release is a parsed stream.json with its artifacts in a stable order.
type Release struct {
	Raw       []byte // the document exactly as shipped
	Stream    stream.Stream
	Artifacts []Artifact
}

// ErrInvalid marks stream metadata that cannot be used.
var ErrInvalid = errors.New("invalid stream metadata")

var hexSHA256 = regexp.MustCompile(`^[0-9a-f]{64}$`)

// Parse reads stream metadata and validates every artifact entry.
func Parse(raw []byte) (*Release, error) {
	var s stream.Stream
	dec := json.NewDecoder(bytes.NewReader(raw))
	if err := dec.Decode(&s); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	if len(s.Architectures) == 0 {
		return nil, fmt.Errorf("%w: no architectures", ErrInvalid)
	}
	r := &Release{Raw: raw, Stream: s}
	seen := map[string]string{}
	for arch, a := range s.Architectures {
		for platform, pa := range a.Artifacts {
			for format, f := range pa.Formats {
				for _, k := range []struct {
					kind string
					art  *stream.Artifact
				}{{KindDisk, f.Disk}, {KindKernel, f.Kernel}, {KindInitramfs, f.Initramfs}, {KindRootfs, f.Rootfs}} {
					if k.art == nil {
						continue
					}
					art, err := newArtifact(arch, platform, format, k.kind, k.art)
					if err != nil {
						return nil, err
					}
					if other, dup := seen[art.Name]; dup {
						return nil, fmt.Errorf("%w: %s and %s both rehydrate to %q", ErrInvalid, other, art.ID(), art.Name)
					}
					seen[art.Name] = art.ID()
					r.Artifacts = append(r.Artifacts, art)
				}
			}
		}
	}
	if len(r.Artifacts) == 0 {
		return nil, fmt.Errorf("%w: no artifacts", ErrInvalid)
	}
	sort.Slice(r.Artifacts, func(i, j int) bool { return r.Artifacts[i].ID() < r.Artifacts[j].ID() })
	return r, nil
}

func newArtifact(arch, platform, format, kind string, s *stream.Artifact) (Artifact, error) {
	a := Artifact{Arch: arch, Platform: platform, Format: format, Kind: kind, Location: s.Location,
		SHA256: strings.ToLower(s.Sha256), UncompressedSHA256: strings.ToLower(s.UncompressedSha256)}
	id := a.ID()
	if s.Location == "" {
		return a, fmt.Errorf("%w: %s: no location", ErrInvalid, id)
	}
	a.ShippedName = path.Base(s.Location)
	if strings.HasSuffix(s.Location, "/") || a.ShippedName == "." || a.ShippedName == "/" || a.ShippedName == ".." || strings.ContainsAny(a.ShippedName, "\\\x00") {
		return a, fmt.Errorf("%w: %s: location %q does not end in a file name", ErrInvalid, id, s.Location)
	}
	a.Name = a.ShippedName
	switch {
	// The output is the uncompressed file: gcp's .tar.gz rehydrates to its .tar, whose checksum is
	// the uncompressed-sha256 the stream metadata gives.
	case strings.HasSuffix(a.ShippedName, ".xz"):
		a.Compression, a.Name = "xz", strings.TrimSuffix(a.ShippedName, ".xz")
	case strings.HasSuffix(a.ShippedName, ".gz"):
		a.Compression, a.Name = "gzip", strings.TrimSuffix(a.ShippedName, ".gz")
	}
	if !hexSHA256.MatchString(a.SHA256) {
		return a, fmt.Errorf("%w: %s: sha256 %q is not 64 hex digits", ErrInvalid, id, s.Sha256)
	}
	if a.Compression == "" {
		if a.UncompressedSHA256 == "" {
			a.UncompressedSHA256 = a.SHA256
		}
		if a.UncompressedSHA256 != a.SHA256 {
			return a, fmt.Errorf("%w: %s: shipped uncompressed but sha256 and uncompressed-sha256 differ", ErrInvalid, id)
		}
	}
	if !hexSHA256.MatchString(a.UncompressedSHA256) {
		return a, fmt.Errorf("%w: %s: uncompressed-sha256 %q is not 64 hex digits", ErrInvalid, id, s.UncompressedSha256)
	}
	return a, nil
}

// Find returns the artifact with the given ID.
func (r *Release) Find(id string) (Artifact, bool) {
	for _, a := range r.Artifacts {
		if a.ID() == id {
			return a, true
		}
	}
	return Artifact{}, false
}

// Arches lists the architectures in the release, sorted.
func (r *Release) Arches() []string {
	var out []string
	for arch := range r.Stream.Architectures {
		out = append(out, arch)
	}
	sort.Strings(out)
	return out
}
