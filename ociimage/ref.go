package ociimage

import (
	"fmt"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
)

// Transport names, spelled as skopeo spells them.
const (
	transportDir     = "dir"
	transportOCI     = "oci"
	transportArchive = "docker-archive"
	transportDocker  = "docker"
)

const refHelp = "use docker://HOST/REPO:TAG, oci:PATH[:TAG], docker-archive:PATH[:NAME:TAG] or dir:PATH"

// imageRef is a parsed skopeo-style reference: TRANSPORT:DETAILS.
type imageRef struct {
	raw       string
	transport string
	path      string         // dir, oci, docker-archive
	tag       string         // oci: the ref.name; docker-archive: NAME:TAG or @INDEX
	docker    name.Reference // docker
}

func (r imageRef) String() string { return r.raw }

// parseRef parses skopeo's transport syntax. Like skopeo, the path of oci: and docker-archive:
// ends at the first colon.
func parseRef(s string) (imageRef, error) {
	transport, rest, ok := strings.Cut(s, ":")
	if !ok {
		return imageRef{}, fmt.Errorf("image reference %q has no transport: %s", s, refHelp)
	}
	r := imageRef{raw: s, transport: transport}
	switch transport {
	case transportDir:
		if rest == "" {
			return imageRef{}, fmt.Errorf("image reference %q: dir: needs a path: %s", s, refHelp)
		}
		r.path = rest
	case transportOCI, transportArchive:
		r.path, r.tag, _ = strings.Cut(rest, ":")
		if r.path == "" {
			return imageRef{}, fmt.Errorf("image reference %q: %s: needs a path: %s", s, transport, refHelp)
		}
		if transport == transportArchive && r.tag != "" && !strings.HasPrefix(r.tag, "@") {
			if _, err := name.NewTag(r.tag); err != nil {
				return imageRef{}, fmt.Errorf("image reference %q: %q is not a NAME:TAG: %v", s, r.tag, err)
			}
		}
	case transportDocker:
		if !strings.HasPrefix(rest, "//") {
			return imageRef{}, fmt.Errorf("image reference %q: write docker://%s", s, strings.TrimLeft(rest, "/"))
		}
		ref, err := name.ParseReference(rest[2:])
		if err != nil {
			return imageRef{}, fmt.Errorf("image reference %q: %v: %s", s, err, refHelp)
		}
		r.docker = ref
	default:
		if _, err := name.ParseReference(s); err == nil && strings.Contains(s, "/") {
			return imageRef{}, fmt.Errorf("image reference %q has no transport: did you mean docker://%s?", s, s)
		}
		return imageRef{}, fmt.Errorf("image reference %q: unknown transport %q: %s", s, transport, refHelp)
	}
	return r, nil
}
