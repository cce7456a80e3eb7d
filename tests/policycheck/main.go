// Command policycheck runs the real client code of the container tools against rehydrator's
// signatures and keys, for the e2e tests. Debian's skopeo is built with sigstore support
// removed and cosign is not packaged, so the libraries themselves are called:
//
//	policycheck -policy policy.json -registries.d DIR docker://HOST/REPO:TAG
//	    asks containers/image (the library inside podman, skopeo and CRI-O) whether the policy
//	    admits the image, exactly as "podman pull" decides; prints "admitted" or "refused: why"
//	policycheck sigstore-read KEY PUB
//	    reads the private KEY with sigstore's cryptoutils (the key code cosign uses), the
//	    passphrase from $COSIGN_PASSWORD, and checks its public half is PUB
//	policycheck sigstore-generate PREFIX
//	    writes PREFIX.key and PREFIX.pub with sigstore's cryptoutils, encrypted with
//	    $COSIGN_PASSWORD, as cosign generate-key-pair does
//
// It lives in its own module so that the main module does not depend on containers/image.
// Build it with
//
//	CGO_ENABLED=0 go build -tags containers_image_openpgp,containers_image_storage_stub
package main

import (
	"context"
	"crypto"
	"crypto/elliptic"
	"errors"
	"flag"
	"fmt"
	"os"
	"strings"

	"github.com/containers/image/v5/docker"
	"github.com/containers/image/v5/image"
	"github.com/containers/image/v5/signature"
	"github.com/containers/image/v5/types"
	"github.com/sigstore/sigstore/pkg/cryptoutils"
)

func main() {
	if len(os.Args) > 1 && strings.HasPrefix(os.Args[1], "sigstore-") {
		if err := keys(os.Args[1], os.Args[2:]); err != nil {
			fmt.Fprintln(os.Stderr, "policycheck: "+err.Error())
			os.Exit(1)
		}
		return
	}
	policyPath := flag.String("policy", "", "policy.json to evaluate")
	registriesDir := flag.String("registries.d", "", "registries.d directory (use-sigstore-attachments)")
	flag.Parse()
	if *policyPath == "" || flag.NArg() != 1 || !strings.HasPrefix(flag.Arg(0), "docker://") {
		fmt.Fprintln(os.Stderr, "usage: policycheck -policy FILE [-registries.d DIR] docker://HOST/REPO:TAG")
		os.Exit(2)
	}
	if err := check(context.Background(), *policyPath, *registriesDir, flag.Arg(0)); err != nil {
		fmt.Println("refused: " + strings.ReplaceAll(err.Error(), "\n", " "))
		os.Exit(1)
	}
	fmt.Println("admitted")
}

func check(ctx context.Context, policyPath, registriesDir, ref string) error {
	sys := &types.SystemContext{
		SignaturePolicyPath:         policyPath,
		RegistriesDirPath:           registriesDir,
		DockerInsecureSkipTLSVerify: types.OptionalBoolTrue, // the test registry speaks plain http
	}
	policy, err := signature.DefaultPolicy(sys)
	if err != nil {
		return fmt.Errorf("policy %s: %w", policyPath, err)
	}
	pc, err := signature.NewPolicyContext(policy)
	if err != nil {
		return err
	}
	defer pc.Destroy()
	r, err := docker.ParseReference(strings.TrimPrefix(ref, "docker:"))
	if err != nil {
		return err
	}
	src, err := r.NewImageSource(ctx, sys)
	if err != nil {
		return err
	}
	defer src.Close()
	allowed, err := pc.IsRunningImageAllowed(ctx, image.UnparsedInstance(src, nil))
	if err != nil {
		return err
	}
	if !allowed {
		return errors.New("not allowed")
	}
	return nil
}

func keys(cmd string, args []string) error {
	// append: an empty COSIGN_PASSWORD must stay a (non-nil) empty passphrase.
	pass := cryptoutils.StaticPasswordFunc(append([]byte{}, os.Getenv("COSIGN_PASSWORD")...))
	switch {
	case cmd == "sigstore-read" && len(args) == 2:
		keyPEM, err := os.ReadFile(args[0])
		if err != nil {
			return err
		}
		pubPEM, err := os.ReadFile(args[1])
		if err != nil {
			return err
		}
		priv, err := cryptoutils.UnmarshalPEMToPrivateKey(keyPEM, pass)
		if err != nil {
			return fmt.Errorf("%s: %w", args[0], err)
		}
		pub, err := cryptoutils.UnmarshalPEMToPublicKey(pubPEM)
		if err != nil {
			return fmt.Errorf("%s: %w", args[1], err)
		}
		signer, ok := priv.(crypto.Signer)
		if !ok {
			return fmt.Errorf("%s: %T is not a signing key", args[0], priv)
		}
		if err := cryptoutils.EqualKeys(signer.Public(), pub); err != nil {
			return err
		}
		fmt.Println("key ok")
		return nil
	case cmd == "sigstore-generate" && len(args) == 1:
		privPEM, pubPEM, err := cryptoutils.GeneratePEMEncodedECDSAKeyPair(elliptic.P256(), pass)
		if err != nil {
			return err
		}
		if err := os.WriteFile(args[0]+".key", privPEM, 0o600); err != nil {
			return err
		}
		return os.WriteFile(args[0]+".pub", pubPEM, 0o644)
	}
	return errors.New("usage: policycheck sigstore-read KEY PUB | sigstore-generate PREFIX")
}
