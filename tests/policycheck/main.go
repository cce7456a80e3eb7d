// Command policycheck asks the real containers/image library (the one inside podman, skopeo
// and CRI-O) whether a policy.json admits an image, exactly as "podman pull" would decide. The
// e2e tests use it to prove that rehydrator's signatures are the ones sigstoreSigned policies
// accept: Debian's skopeo is built with sigstore support removed, so it cannot say.
//
//	policycheck -policy policy.json -registries.d DIR docker://HOST/REPO:TAG
//
// It prints "admitted" and exits 0, or prints the library's reason and exits 1. Build it with
//
//	CGO_ENABLED=0 go build -tags containers_image_openpgp,containers_image_storage_stub
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"strings"

	"github.com/containers/image/v5/docker"
	"github.com/containers/image/v5/image"
	"github.com/containers/image/v5/signature"
	"github.com/containers/image/v5/types"
)

func main() {
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
		return fmt.Errorf("not allowed")
	}
	return nil
}
