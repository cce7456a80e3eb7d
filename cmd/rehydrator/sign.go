package main

import (
	"context"
	"crypto/ecdsa"
	"errors"
	"fmt"
	"os"

	"github.com/spf13/cobra"

	"github.com/rehydrator/rehydrator/ociimage"
	"github.com/rehydrator/rehydrator/signature"
)

func newSignCmd() *cobra.Command {
	var keyPath, identity string
	cmd := &cobra.Command{
		Use:   "sign REF --key KEY",
		Short: "Sign an image with a cosign key; the signature goes to the sha256-<digest>.sig tag beside it",
		Long: `Signs the image at REF (docker://HOST/REPO:TAG or oci:PATH[:TAG]) with the private key KEY
(from "rehydrator keygen" or "cosign generate-key-pair"; plain PEM ECDSA P-256 keys work too).

The signature is cosign's: a sigstore simple-signing payload naming the image's manifest digest
and IDENTITY, signed with ECDSA P-256, stored as an OCI image at the tag sha256-<hex>.sig in the
same repository or OCI layout. "cosign verify --key", a containers-policy.json sigstoreSigned
rule (with use-sigstore-attachments in registries.d), "rehydrator verify" and
"rehydrate --verify-key" accept it. Signatures already there are kept (a re-sign with the same
key replaces its own). Prints the signature's reference on standard output; mirror it along with
the image: skopeo copy does not copy it by itself.

IDENTITY is the repository the signature names (default: REPO of docker://HOST/REPO, and
localhost/<directory> for an OCI layout). Policies with signedIdentity matchRepository compare it
with the repository a client pulls, so sign with --identity of that one.

An encrypted key's passphrase comes from $COSIGN_PASSWORD, else from a prompt on the terminal.
A docker-archive cannot hold a signature: sign the image in a registry or an OCI layout.`,
		Example: `  rehydrator sign docker://registry.example/fcos-images:stable --key cosign.key
  COSIGN_PASSWORD=... rehydrator sign oci:./fcos-images:stable --key cosign.key --identity quay.io/fedora/fcos-images`,
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) != 1 {
				return usagef("sign takes exactly one image REF, got %d arguments", len(args))
			}
			if keyPath == "" {
				return usagef("sign needs --key KEY (a private key from rehydrator keygen or cosign generate-key-pair)")
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			s, err := loadSigner(keyPath, identity, args[0])
			if err != nil {
				return err
			}
			digest, err := imageDigest(ctx, args[0])
			if err != nil {
				return err
			}
			sigRef, err := s.sign(ctx, args[0], digest)
			if err != nil {
				return err
			}
			fmt.Fprintln(cmd.OutOrStdout(), sigRef)
			return nil
		},
	}
	cmd.Flags().StringVar(&keyPath, "key", "", "private key to sign with (required)")
	identityFlag(cmd, &identity)
	return cmd
}

func identityFlag(cmd *cobra.Command, identity *string) {
	cmd.Flags().StringVar(identity, "identity", "", "repository the signature names (default: the image's repository; localhost/<dir> for oci:)")
}

// signer is a loaded private key, ready to sign images written to one reference.
type signer struct {
	keyPath, identity string
	key               *ecdsa.PrivateKey
}

// loadSigner reads the key (asking for its passphrase) and checks that ref can hold a
// signature, so that build fails before its long work, not after it.
func loadSigner(keyPath, identity, ref string) (*signer, error) {
	if err := ociimage.CheckSignable(ref); err != nil {
		return nil, err
	}
	if identity != "" {
		if err := ociimage.CheckIdentity(identity); err != nil {
			return nil, usageError{fmt.Errorf("--identity: %w", err)}
		}
	}
	data, err := os.ReadFile(keyPath)
	if err != nil {
		return nil, fmt.Errorf("signing key: %w", err)
	}
	key, err := signature.ParsePrivateKey(data, func() ([]byte, error) { return passphrase(keyPath, false) })
	if errors.Is(err, signature.ErrWrongPassphrase) {
		return nil, fmt.Errorf("signing key %s: %w: give the passphrase it was made with in %s", keyPath, err, passwordEnv)
	}
	if err != nil {
		return nil, fmt.Errorf("signing key %s: %w", keyPath, err)
	}
	if identity == "" {
		if identity, err = ociimage.DefaultIdentity(ref); err != nil {
			return nil, err
		}
	}
	return &signer{keyPath: keyPath, identity: identity, key: key}, nil
}

func (s *signer) sign(ctx context.Context, ref, digest string) (string, error) {
	sigRef, err := ociimage.Sign(ctx, ref, digest, s.key, s.identity, "rehydrator "+version)
	if err != nil {
		return "", err
	}
	fmt.Fprintf(os.Stderr, "signed %s (%s) as %s with %s: %s\n", ref, digest, s.identity, s.keyPath, sigRef)
	return sigRef, nil
}

// imageDigest is the manifest digest of the rehydrator image at ref, the name it is signed by.
func imageDigest(ctx context.Context, ref string) (string, error) {
	if err := ociimage.CheckSignable(ref); err != nil {
		return "", err
	}
	src, err := ociimage.Open(ctx, ref)
	if err != nil {
		return "", err
	}
	defer src.Close()
	return sourceDigest(ref, src)
}

func sourceDigest(ref string, src ociimage.Source) (string, error) {
	d, ok := src.(ociimage.Digester)
	if !ok || d.Digest() == "" {
		return "", fmt.Errorf("%s: the image has no manifest digest to sign or verify: use docker:// or oci:", describeRef(ref))
	}
	return d.Digest(), nil
}
