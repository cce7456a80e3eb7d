// Package streammeta reads Fedora CoreOS stream metadata (stream.json) and turns it into the flat
// list of artifacts that rehydrator builds and rehydrates: one entry per file that a release
// ships, with its identity (architecture, platform, format, kind), its shipped name, and the
// checksums that judge a rehydrated file.
package streammeta

import (
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
	// Signature is the URL of the detached OpenPGP signature of the shipped file, as the stream
	// metadata gives it ("" when it gives none).
	Signature string `json:"signature,omitempty"`
	// Name is the rehydrated file's name: ShippedName without its compression suffix when the
	// artifact is rehydrated uncompressed, else ShippedName itself.
	Name string `json:"name"`
	// Compression that rehydration undoes: "xz", "gzip", "zip" (one member) or "" (the
	// rehydrated file is the shipped file, bit for bit).
	Compression string `json:"compression,omitempty"`
	// SHA256 of the shipped file; UncompressedSHA256 of the file rehydrate produces (Name): the
	// stream's uncompressed-sha256 when Compression is set, else SHA256. Both lowercase hex.
	SHA256             string `json:"sha256"`
	UncompressedSHA256 string `json:"uncompressedSha256"`
}

// Checksum rules: which stream-metadata checksum judges the rehydrated file.
const (
	RuleUncompressed = "uncompressed-sha256" // the file inside .xz/.gz/.zip, as uncompressed-sha256 says
	RuleShipped      = "sha256"              // the shipped file itself, as sha256 says
)

// Rule says which checksum of the stream metadata the rehydrated file is held to.
func (a Artifact) Rule() string {
	if a.Compression != "" {
		return RuleUncompressed
	}
	return RuleShipped
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

// document is the part of stream.json that names files. Kinds are read as map keys so that a
// kind this program has never seen (beside disk, kernel, initramfs, rootfs) is kept, not dropped.
type document struct {
	Architectures map[string]struct {
		Artifacts map[string]struct {
			Formats map[string]map[string]*stream.Artifact `json:"formats"`
		} `json:"artifacts"`
	} `json:"architectures"`
}

// Parse reads stream metadata and validates every artifact entry. Only what names files is
// validated: the images section and keys this program does not know are left alone (Raw keeps
// them byte for byte).
func Parse(raw []byte) (*Release, error) {
	var doc document
	if err := json.Unmarshal(raw, &doc); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	if len(doc.Architectures) == 0 {
		return nil, fmt.Errorf("%w: no architectures", ErrInvalid)
	}
	r := &Release{Raw: raw}
	// Stream is a convenience view in the upstream types; a shape they do not expect (a new
	// images entry, say) must not make a release unreadable, so it is filled best effort.
	if err := json.Unmarshal(raw, &r.Stream); err != nil {
		r.Stream = stream.Stream{Architectures: map[string]stream.Arch{}}
		for arch := range doc.Architectures {
			r.Stream.Architectures[arch] = stream.Arch{}
		}
	}
	seen := map[string]string{}
	for arch, a := range doc.Architectures {
		for platform, pa := range a.Artifacts {
			for format, f := range pa.Formats {
				for kind, sa := range f {
					if sa == nil {
						continue
					}
					art, err := newArtifact(arch, platform, format, kind, sa)
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
	a := Artifact{Arch: arch, Platform: platform, Format: format, Kind: kind, Location: s.Location, Signature: s.Signature,
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
	if !hexSHA256.MatchString(a.SHA256) {
		return a, fmt.Errorf("%w: %s: sha256 %q is not 64 hex digits", ErrInvalid, id, s.Sha256)
	}
	// The real stream is the rule book: a file that comes with an uncompressed-sha256 is rehydrated
	// uncompressed and held to it (qcow2.xz, raw.gz, vhdx.zip, the 2024 gcp tar.gz); a file with
	// sha256 only is rehydrated as shipped (ova, nutanix's qcow2, the live files, the 2026 gcp
	// tar.gz: its .tar.gz comes out exactly as Fedora shipped it).
	if a.UncompressedSHA256 == "" || a.UncompressedSHA256 == a.SHA256 {
		a.UncompressedSHA256 = a.SHA256
		return a, nil
	}
	if !hexSHA256.MatchString(a.UncompressedSHA256) {
		return a, fmt.Errorf("%w: %s: uncompressed-sha256 %q is not 64 hex digits", ErrInvalid, id, s.UncompressedSha256)
	}
	for _, c := range compressions {
		if strings.HasSuffix(a.ShippedName, c.suffix) && len(a.ShippedName) > len(c.suffix) {
			a.Compression, a.Name = c.name, strings.TrimSuffix(a.ShippedName, c.suffix)
			return a, nil
		}
	}
	// A wrapper this program cannot undo (.zst, say): the shipped file is still known bit for bit
	// by its sha256, so it is kept and rehydrated as shipped rather than refused.
	a.UncompressedSHA256 = a.SHA256
	return a, nil
}

// compressions are the shipped wrappers that rehydration undoes, by file name suffix.
var compressions = []struct{ suffix, name string }{{".xz", "xz"}, {".gz", "gzip"}, {".zip", "zip"}}

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
