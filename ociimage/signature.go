package ociimage

import (
	"context"
	"crypto/ecdsa"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/match"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/rehydrator/rehydrator/signature"
)

// Signatures are stored as cosign stores them: an OCI image tagged sha256-<hex>.sig next to
// the image (same repository, or same OCI layout), one layer per signature whose content is
// the simple-signing payload and whose descriptor carries the base64 signature.
const (
	// SignatureMediaType is the media type of a signature layer (the payload).
	SignatureMediaType types.MediaType = "application/vnd.dev.cosign.simplesigning.v1+json"
	// SignatureAnnotation on a signature layer holds the base64 ECDSA signature.
	SignatureAnnotation = "dev.cosignproject.cosign/signature"

	// maxPayload bounds what we read of one signature layer; a real payload is ~300 bytes.
	maxPayload = 1 << 20
	// maxSignatures bounds the layers of a .sig image we read.
	maxSignatures = 256
)

// ErrNoSignatureStore: the transport has no place for a signature (docker-archive, dir:).
var ErrNoSignatureStore = errors.New("cannot hold a signature")

// SignatureTag is the tag cosign gives the signatures of the image with manifest digest
// "sha256:<hex>": "sha256-<hex>.sig".
func SignatureTag(digest string) (string, error) {
	if err := checkBlobDigest(digest); err != nil {
		return "", fmt.Errorf("image digest: %w", err)
	}
	return strings.Replace(digest, ":", "-", 1) + ".sig", nil
}

// signatureHome parses ref and refuses transports that cannot store a signature.
func signatureHome(ref string) (imageRef, error) {
	if ref == "" {
		ref = transportDir + ":" + DataDir
	}
	r, err := parseRef(ref)
	if err != nil {
		return imageRef{}, err
	}
	switch r.transport {
	case transportDocker, transportOCI:
		return r, nil
	case transportArchive:
		return imageRef{}, fmt.Errorf("%s: a docker-archive %w (it keeps no manifest, so there is no digest to sign and no tag to store it under): use oci:PATH[:TAG] or docker://HOST/REPO:TAG", ref, ErrNoSignatureStore)
	}
	return imageRef{}, fmt.Errorf("%s: a %s: image %w (inside a container, let podman check the signature with policy.json before it runs the image): use oci:PATH[:TAG] or docker://HOST/REPO:TAG", ref, r.transport, ErrNoSignatureStore)
}

// CheckSignable returns an error saying why ref cannot carry a signature, or nil.
func CheckSignable(ref string) error {
	_, err := signatureHome(ref)
	return err
}

// SignatureRef is where the signatures of the image (digest) at ref are stored, as a
// reference in ref's transport (for messages and for skopeo copy).
func SignatureRef(ref, digest string) (string, error) {
	r, err := signatureHome(ref)
	if err != nil {
		return "", err
	}
	tag, err := SignatureTag(digest)
	if err != nil {
		return "", err
	}
	if r.transport == transportDocker {
		return "docker://" + r.docker.Context().Tag(tag).Name(), nil
	}
	return "oci:" + r.path + ":" + tag, nil
}

var notRepoChars = regexp.MustCompile(`[^a-z0-9._-]+`)

// DefaultIdentity is the docker reference a signature names when none is given: the
// repository for docker://HOST/REPO, and localhost/<directory name> for an OCI layout (the
// name podman gives local images). containers-policy.json's matchRepository compares it
// with the repository an image is pulled from, so sign with --identity of the repository
// clients pull when the layout is pushed elsewhere.
func DefaultIdentity(ref string) (string, error) {
	r, err := signatureHome(ref)
	if err != nil {
		return "", err
	}
	if r.transport == transportDocker {
		return r.docker.Context().Name(), nil
	}
	base := notRepoChars.ReplaceAllString(strings.ToLower(filepath.Base(filepath.Clean(r.path))), "-")
	base = strings.Trim(base, "._-")
	if base == "" {
		base = "rehydrator"
	}
	return "localhost/" + base, nil
}

// CheckIdentity returns an error unless identity is a repository name (HOST/PATH, lowercase)
// that containers-policy.json's identity rules can parse.
func CheckIdentity(identity string) error {
	if _, err := name.NewRepository(identity); err != nil {
		return fmt.Errorf("identity %q is not a repository name such as quay.io/fedora/fcos-images (no tag, no digest)", identity)
	}
	return nil
}

// Sign signs the image with manifest digest at ref as identity and stores the signature at
// its sha256-<hex>.sig tag, keeping the signatures already there except an earlier one by
// the same key for the same payload identity. It returns where the signature went.
func Sign(ctx context.Context, ref, digest string, key *ecdsa.PrivateKey, identity, creator string) (string, error) {
	sigRef, err := SignatureRef(ref, digest)
	if err != nil {
		return "", err
	}
	if err := CheckIdentity(identity); err != nil {
		return "", fmt.Errorf("sign %s: %w", ref, err)
	}
	signed, err := signature.Sign(key, signature.Payload{Identity: identity, Digest: digest, Creator: creator, Timestamp: time.Now().Unix()})
	if err != nil {
		return "", fmt.Errorf("sign %s: %w", ref, err)
	}
	old, err := readSignatureLayers(ctx, ref, digest)
	if err != nil {
		return "", fmt.Errorf("sign %s: reading %s: %w", ref, sigRef, err)
	}
	var layers []sigLayer
	for _, l := range old {
		if s, ok := l.signed(); ok && s.VerifiedBy(&key.PublicKey) == nil {
			if p, err := signature.ParsePayload(s.Payload); err == nil && p.Digest == digest && p.Identity == identity {
				continue // re-signing replaces our own signature instead of piling up
			}
		}
		layers = append(layers, l) // other signers' layers stay as they were, annotations and all
	}
	img, err := signatureImage(append(layers, signedLayer(signed)))
	if err != nil {
		return "", fmt.Errorf("sign %s: %w", ref, err)
	}
	if err := writeSignatureImage(ctx, ref, digest, img); err != nil {
		return "", fmt.Errorf("sign %s: writing %s: %w", ref, sigRef, err)
	}
	return sigRef, nil
}

// Verify checks that among the signatures stored beside the image (manifest digest) at ref
// one was made by pub for that digest, and returns its payload. The errors say which of the
// ways it failed: no signature at all, none by this key, or one for another image.
func Verify(ctx context.Context, ref, digest string, pub *ecdsa.PublicKey) (*signature.Payload, error) {
	sigRef, err := SignatureRef(ref, digest)
	if err != nil {
		return nil, fmt.Errorf("verify: %w", err)
	}
	sigs, err := readSignatures(ctx, ref, digest)
	if err != nil {
		return nil, fmt.Errorf("verify %s: reading %s: %w", ref, sigRef, err)
	}
	p, err := signature.Check(pub, digest, sigs)
	switch {
	case errors.Is(err, signature.ErrNoSignature):
		return nil, fmt.Errorf("verify %s: %w: no %s; sign it with \"rehydrator sign\", and copy the .sig tag along when mirroring", ref, err, sigRef)
	case err != nil:
		return nil, fmt.Errorf("verify %s: %s: %w", ref, sigRef, err)
	}
	return p, nil
}

// sigLayer is one layer of a signature image as stored, so that re-signing keeps whatever
// other signers attached (certificates, bundles, attachments we do not know).
type sigLayer struct {
	mediaType   types.MediaType
	content     []byte
	annotations map[string]string
}

func signedLayer(s signature.Signed) sigLayer {
	return sigLayer{mediaType: SignatureMediaType, content: s.Payload, annotations: map[string]string{SignatureAnnotation: s.Signature}}
}

// signed returns the layer as a signature, if it is one.
func (l sigLayer) signed() (signature.Signed, bool) {
	sig, ok := l.annotations[SignatureAnnotation]
	if l.mediaType != SignatureMediaType || !ok {
		return signature.Signed{}, false
	}
	return signature.Signed{Payload: l.content, Signature: sig}, true
}

// signatureImage makes the cosign signature image: empty config, one layer per signature.
func signatureImage(layers []sigLayer) (v1.Image, error) {
	var adds []mutate.Addendum
	for _, l := range layers {
		adds = append(adds, mutate.Addendum{Layer: static.NewLayer(l.content, l.mediaType), Annotations: l.annotations})
	}
	img, err := mutate.Append(empty.Image, adds...)
	if err != nil {
		return nil, err
	}
	img = mutate.MediaType(img, types.OCIManifestSchema1)
	return mutate.ConfigMediaType(img, types.OCIConfigJSON), nil
}

func writeSignatureImage(ctx context.Context, ref, digest string, img v1.Image) error {
	r, err := signatureHome(ref)
	if err != nil {
		return err
	}
	tag, err := SignatureTag(digest)
	if err != nil {
		return err
	}
	if r.transport == transportDocker {
		t := r.docker.Context().Tag(tag)
		if err := remote.Write(t, img, remoteOptions(ctx)...); err != nil {
			return explainRemote(err, t)
		}
		return nil
	}
	p, err := layout.FromPath(r.path)
	if err != nil {
		return fmt.Errorf("not an OCI layout (%v): give the directory that holds index.json", err)
	}
	return p.ReplaceImage(img, match.Annotation(annotationRefName, tag),
		layout.WithAnnotations(map[string]string{annotationRefName: tag}))
}

// readSignatures returns the signatures stored for digest beside ref; none (and no error)
// when there is no .sig tag.
func readSignatures(ctx context.Context, ref, digest string) ([]signature.Signed, error) {
	layers, err := readSignatureLayers(ctx, ref, digest)
	if err != nil {
		return nil, err
	}
	var out []signature.Signed
	for _, l := range layers {
		if s, ok := l.signed(); ok {
			out = append(out, s)
		}
	}
	return out, nil
}

// readSignatureLayers reads every layer of the signature image for digest beside ref.
func readSignatureLayers(ctx context.Context, ref, digest string) ([]sigLayer, error) {
	r, err := signatureHome(ref)
	if err != nil {
		return nil, err
	}
	tag, err := SignatureTag(digest)
	if err != nil {
		return nil, err
	}
	var img v1.Image
	if r.transport == transportDocker {
		t := r.docker.Context().Tag(tag)
		img, err = remote.Image(t, remoteOptions(ctx)...)
		if isNotFound(err) {
			return nil, nil
		}
		if err != nil {
			return nil, explainRemote(err, t)
		}
	} else {
		idx, err := layout.ImageIndexFromPath(r.path)
		if err != nil {
			return nil, fmt.Errorf("not an OCI layout (%v): give the directory that holds index.json", err)
		}
		im, err := idx.IndexManifest()
		if err != nil {
			return nil, fmt.Errorf("index.json: %w", err)
		}
		for _, d := range im.Manifests {
			if d.Annotations[annotationRefName] == tag && !d.MediaType.IsIndex() {
				if img, err = idx.Image(d.Digest); err != nil {
					return nil, err
				}
			}
		}
		if img == nil {
			return nil, nil
		}
	}
	m, err := img.Manifest()
	if err != nil {
		return nil, fmt.Errorf("signature manifest: %w", err)
	}
	if len(m.Layers) > maxSignatures {
		return nil, fmt.Errorf("signature image has %d layers, more than the %d a signature image may have", len(m.Layers), maxSignatures)
	}
	var out []sigLayer
	for _, l := range m.Layers {
		content, err := readPayload(img, l)
		if err != nil {
			return nil, fmt.Errorf("signature layer %s: %w", l.Digest, err)
		}
		out = append(out, sigLayer{mediaType: l.MediaType, content: content, annotations: l.Annotations})
	}
	return out, nil
}

// readPayload reads a signature layer and checks it against its digest (an OCI layout does
// not check what it reads).
func readPayload(img v1.Image, d v1.Descriptor) ([]byte, error) {
	if d.Size > maxPayload || d.Size < 0 {
		return nil, fmt.Errorf("payload of %d bytes: too large for a signature payload", d.Size)
	}
	l, err := img.LayerByDigest(d.Digest)
	if err != nil {
		return nil, err
	}
	rc, err := l.Compressed()
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	b, err := io.ReadAll(io.LimitReader(rc, maxPayload+1))
	if err != nil {
		return nil, err
	}
	sum := sha256.Sum256(b)
	if got := "sha256:" + hex.EncodeToString(sum[:]); got != d.Digest.String() || int64(len(b)) != d.Size {
		return nil, fmt.Errorf("payload hashes to %s (%d bytes): the signature image is damaged", got, len(b))
	}
	return b, nil
}

func isNotFound(err error) bool {
	var terr *transport.Error
	if !errors.As(err, &terr) {
		return false
	}
	if terr.StatusCode == 404 {
		return true
	}
	for _, e := range terr.Errors {
		if e.Code == transport.ManifestUnknownErrorCode {
			return true
		}
	}
	return false
}
