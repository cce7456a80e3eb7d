package main

import (
	"context"
	"crypto/ecdsa"
	"fmt"
	"os"
	"time"

	"github.com/spf13/cobra"

	"github.com/rehydrator/rehydrator/ociimage"
	"github.com/rehydrator/rehydrator/signature"
)

func newVerifyCmd() *cobra.Command {
	var keyPath string
	cmd := &cobra.Command{
		Use:   "verify REF --key PUB",
		Short: "Check that an image carries a valid signature by the public key PUB",
		Long: `Checks that the image at REF (docker://HOST/REPO:TAG or oci:PATH[:TAG]) has, at its
sha256-<digest>.sig tag, a cosign signature made by PUB over the image's manifest digest. The
manifest in turn fixes the config, the recipe and stream metadata, and through their SHA-256
every byte rehydrate writes.

PUB is a public key (cosign.pub, PKIX PEM) or a certificate holding one, which must be valid
now. Fails, naming the reason, when the image has no signature, when no signature is by PUB
(another key, or altered), or when the signature is for another image. The repository the
signature names is printed, not compared: a mirror holds the same digest under another name.`,
		Example: `  rehydrator verify docker://registry.example/fcos-images:stable --key cosign.pub
  rehydrator verify oci:./mirror:stable --key cosign.pub`,
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) != 1 {
				return usagef("verify takes exactly one image REF, got %d arguments", len(args))
			}
			if keyPath == "" {
				return usagef("verify needs --key PUB (a public key such as cosign.pub)")
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			pub, err := loadPublicKey(keyPath)
			if err != nil {
				return err
			}
			if err := ociimage.CheckSignable(args[0]); err != nil {
				return err
			}
			src, err := ociimage.Open(ctx, args[0])
			if err != nil {
				return err
			}
			defer src.Close()
			p, digest, err := verifySource(ctx, args[0], src, pub)
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s %s: signature by %s verified (identity %s%s)\n", args[0], digest, keyPath, p.Identity, signedBy(p))
			return nil
		},
	}
	cmd.Flags().StringVar(&keyPath, "key", "", "public key to check the signature with (required)")
	return cmd
}

func signedBy(p *signature.Payload) string {
	s := ""
	if p.Creator != "" {
		s += ", by " + p.Creator
	}
	if p.Timestamp != 0 {
		s += ", at " + time.Unix(p.Timestamp, 0).UTC().Format(time.RFC3339)
	}
	return s
}

func loadPublicKey(path string) (*ecdsa.PublicKey, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("verification key: %w", err)
	}
	pub, err := signature.ParsePublicKey(data, time.Now())
	if err != nil {
		return nil, fmt.Errorf("verification key %s: %w", path, err)
	}
	return pub, nil
}

func verifySource(ctx context.Context, ref string, src ociimage.Source, pub *ecdsa.PublicKey) (*signature.Payload, string, error) {
	digest, err := sourceDigest(ref, src)
	if err != nil {
		return nil, "", err
	}
	p, err := ociimage.Verify(ctx, ref, digest, pub)
	if err != nil {
		return nil, "", err
	}
	return p, digest, nil
}

// verifyImage is rehydrate --verify-key: the image src was opened from (ref, or
// $REHYDRATOR_IMAGE) must carry a valid signature by the key before anything is written.
func verifyImage(ctx context.Context, ref string, src ociimage.Source, keyPath string) error {
	if ref == "" {
		ref = os.Getenv("REHYDRATOR_IMAGE")
	}
	pub, err := loadPublicKey(keyPath)
	if err != nil {
		return err
	}
	if err := ociimage.CheckSignable(ref); err != nil {
		return fmt.Errorf("--verify-key: %w", err)
	}
	p, digest, err := verifySource(ctx, ref, src, pub)
	if err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "%s %s: signature by %s verified (identity %s)\n", describeRef(ref), digest, keyPath, p.Identity)
	return nil
}
