package main

import (
	"context"
	"fmt"
	"os"

	"github.com/spf13/cobra"

	"github.com/rehydrator/rehydrator/ociimage"
	"github.com/rehydrator/rehydrator/rehydrate"
)

// imageFlag adds --image to a command that reads an image.
func imageFlag(cmd *cobra.Command, ref *string) {
	cmd.Flags().StringVar(ref, "image", "", `where to read the image: oci:PATH[:TAG], docker-archive:PATH, docker://HOST/REPO:TAG or dir:PATH
(default: $REHYDRATOR_IMAGE, else the image this runs in: dir:/usr/share/rehydrator)`)
}

// openedImage is an image whose recipe has been read and accepted.
type openedImage struct {
	src    ociimage.Source
	recipe *rehydrate.Recipe
	stream []byte
}

func openImage(ctx context.Context, ref string) (*openedImage, error) {
	return openImageArch(ctx, ref, "")
}

// openImageArch opens the image for arch ("" for this machine's) where ref is an index.
func openImageArch(ctx context.Context, ref, arch string) (*openedImage, error) {
	if ref == "" {
		ref = os.Getenv("REHYDRATOR_IMAGE")
	}
	src, err := ociimage.OpenArch(ctx, ref, arch)
	if err != nil {
		return nil, err
	}
	recipeJSON, stream, err := src.Metadata(ctx)
	if err != nil {
		src.Close()
		return nil, err
	}
	recipe, err := rehydrate.ParseRecipe(recipeJSON)
	if err != nil {
		src.Close()
		return nil, fmt.Errorf("image %s: %w", describeRef(ref), err)
	}
	return &openedImage{src: src, recipe: recipe, stream: stream}, nil
}

func describeRef(ref string) string {
	if ref == "" {
		return "dir:/usr/share/rehydrator"
	}
	return ref
}
