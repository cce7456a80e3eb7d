package main

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/rehydrator/rehydrator/signature"
)

func newKeygenCmd() *cobra.Command {
	var prefix string
	cmd := &cobra.Command{
		Use:   "keygen [--output-prefix P]",
		Short: "Make an ECDSA P-256 key pair for signing images (P.key and P.pub, as cosign does)",
		Long: `Makes a new ECDSA P-256 key pair in cosign's formats, so that cosign, podman, skopeo and
rehydrator all use the same files:

  P.key  the private key, encrypted with a passphrase (scrypt + NaCl secretbox, PEM type
         ENCRYPTED SIGSTORE PRIVATE KEY); keep it secret
  P.pub  the public key (PKIX PEM), for "verify --key", "rehydrate --verify-key" and a
         containers-policy.json sigstoreSigned keyPath

The passphrase comes from $COSIGN_PASSWORD (it may be empty), else it is asked twice on the
terminal; without a terminal and without the variable keygen fails instead of waiting.
Existing files are never overwritten.`,
		Example: `  rehydrator keygen                        # cosign.key, cosign.pub
  COSIGN_PASSWORD= rehydrator keygen --output-prefix ci/fcos-signing`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			keyPath, pubPath := prefix+".key", prefix+".pub"
			for _, p := range []string{keyPath, pubPath} {
				if _, err := os.Lstat(p); !errors.Is(err, fs.ErrNotExist) {
					return fmt.Errorf("keygen: %s already exists: remove it or give another --output-prefix", p)
				}
			}
			pass, err := passphrase(keyPath, true)
			if err != nil {
				return fmt.Errorf("keygen: %w", err)
			}
			key, err := signature.GenerateKey()
			if err != nil {
				return fmt.Errorf("keygen: %w", err)
			}
			priv, err := signature.MarshalPrivateKey(key, pass)
			if err != nil {
				return fmt.Errorf("keygen: %w", err)
			}
			pub, err := signature.MarshalPublicKey(&key.PublicKey)
			if err != nil {
				return fmt.Errorf("keygen: %w", err)
			}
			if err := writeNewFile(keyPath, priv, 0o600); err != nil {
				return fmt.Errorf("keygen: %w", err)
			}
			if err := writeNewFile(pubPath, pub, 0o644); err != nil {
				os.Remove(keyPath)
				return fmt.Errorf("keygen: %w", err)
			}
			fmt.Fprintf(os.Stderr, "Private key written to %s\nPublic key written to %s\n", keyPath, pubPath)
			return nil
		},
	}
	cmd.Flags().StringVar(&prefix, "output-prefix", "cosign", "write the key pair to PREFIX.key and PREFIX.pub")
	return cmd
}

// writeNewFile writes data to a temporary file beside path and links it into place, failing
// if path appeared meanwhile: a half-written key is never left at path.
func writeNewFile(path string, data []byte, mode os.FileMode) error {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*.tmp")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name())
	if err := f.Chmod(mode); err != nil {
		f.Close()
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Link(f.Name(), path); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return fmt.Errorf("%s already exists: remove it or give another --output-prefix", path)
		}
		return err
	}
	return nil
}
