package main

import (
	"github.com/spf13/cobra"
)

func newPrintStreamJSONCmd() *cobra.Command {
	var ref, arch string
	cmd := &cobra.Command{
		Use:   "print-stream-json",
		Short: "Print the stream metadata (stream.json) of the release in the image, as shipped",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			img, err := openImageArch(cmd.Context(), ref, arch)
			if err != nil {
				return err
			}
			defer img.src.Close()
			_, err = cmd.OutOrStdout().Write(img.stream)
			return err
		},
	}
	cmd.Flags().StringVar(&arch, "arch", "", "architecture whose image to read where the image is an index (default: this machine's)")
	imageFlag(cmd, &ref)
	return cmd
}
