// Package ociimage owns the rehydrator OCI image: building it deterministically from a recipe
// and its blobs, writing it to a registry, an OCI layout or a docker-archive, and reading blobs
// back from any of those or from the unpacked directory inside the running container.
//
// The image, from bottom to top:
//
//	layer 1      /usr/bin/rehydrator                        the static tool (absent with BuildSpec.Base)
//	layer 2..n   /usr/share/rehydrator/blobs/sha256/<hex>   one blob per layer, hex = sha256 of the blob
//	layer n+1    /usr/share/rehydrator/rehydrator.json      the recipe (opaque here)
//	             /usr/share/rehydrator/stream.json          the stream metadata (opaque here)
//	             /usr/share/rehydrator/layers.json          {"sha256:<blob>": "sha256:<layer diffID>"}
//
// The config carries the label dev.rehydrator.metadata = diffID of the metadata layer. Readers
// find everything through diffIDs because they survive every transport (skopeo recompressing
// layers, docker-archive dropping the manifest), while manifest digests and annotations do not.
// So a reader fetches the config, then the small metadata layer, then only the blob layers it
// is asked for.
package ociimage

import "path"

const (
	// DataDir is where the data lives inside the image (and the default dir: source).
	DataDir = "/usr/share/rehydrator"
	// BinaryPath is the tool inside the image and its entrypoint.
	BinaryPath = "/usr/bin/rehydrator"

	// MetadataLabel is the config label naming the diffID of the metadata layer.
	MetadataLabel = "dev.rehydrator.metadata"
	// BlobAnnotation on a layer descriptor names the blob the layer carries (for humans).
	BlobAnnotation = "dev.rehydrator.blob"
	// LayerKindAnnotation on a layer descriptor says "tool", "blob" or "metadata" (for humans).
	LayerKindAnnotation = "dev.rehydrator.layer"

	// RecipeFile, StreamFile and LayersFile are the metadata files, relative to DataDir.
	RecipeFile = "rehydrator.json"
	StreamFile = "stream.json"
	LayersFile = "layers.json"

	annotationTitle    = "org.opencontainers.image.title"
	annotationCreated  = "org.opencontainers.image.created"
	annotationRefName  = "org.opencontainers.image.ref.name"
	annotationBaseName = "org.opencontainers.image.base.name"
	annotationBaseDgst = "org.opencontainers.image.base.digest"
)

// blobRelPath is the blob's path inside a layer tar (no leading slash), e.g.
// usr/share/rehydrator/blobs/sha256/<hex>.
func blobRelPath(hex string) string {
	return path.Join(DataDir[1:], "blobs", "sha256", hex)
}
