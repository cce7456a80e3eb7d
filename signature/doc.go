// Package signature owns rehydrator's image signatures, in cosign's formats so that cosign,
// podman and every containers/image client read them: ECDSA P-256 key pairs (the private key
// encrypted with scrypt and NaCl secretbox as cosign stores it, the public key as PKIX PEM),
// the sigstore simple-signing payload that names an image by its manifest digest, and the
// base64 ASN.1 ECDSA signature over that payload.
//
// It knows nothing of registries or image layouts: bytes in, bytes out. Where a signature is
// stored (the sha256-<hex>.sig tag beside the image) is the ociimage package's business.
package signature
