package main

import (
	"fmt"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"
)

func newListCmd() *cobra.Command {
	var ref string
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List every artifact the image can rehydrate, with size, SHA-256 and recipe",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			img, err := openImage(cmd.Context(), ref)
			if err != nil {
				return err
			}
			defer img.src.Close()
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "ARCH\tSELECT\tNAME\tSIZE\tSHA256\tRECIPE")
			for _, a := range img.recipe.Artifacts {
				selector := "--disk " + a.Disk
				switch {
				case a.Format == "iso":
					selector = "--iso"
				case a.Format == "pxe":
					selector = "--pxe"
				case a.Disk == "":
					selector = "--all"
				}
				var steps []string
				for _, s := range a.Steps {
					steps = append(steps, s.String())
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\t%s\n", a.Arch, selector, a.Name, a.Size, a.SHA256, strings.Join(steps, " -> "))
			}
			return tw.Flush()
		},
	}
	imageFlag(cmd, &ref)
	return cmd
}
