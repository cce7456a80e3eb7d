package main

import (
	"github.com/spf13/cobra"
)

func newPrintStreamJSONCmd() *cobra.Command {
	var ref string
	cmd := &cobra.Command{
		Use:   "print-stream-json",
		Short: "Print the stream metadata (stream.json) of the release in the image, as shipped",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			img, err := openImage(cmd.Context(), ref)
			if err != nil {
				return err
			}
			defer img.src.Close()
			_, err = cmd.OutOrStdout().Write(img.stream)
			return err
		},
	}
	imageFlag(cmd, &ref)
	return cmd
}
