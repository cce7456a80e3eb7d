package main

import (
	"fmt"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/rehydrator/rehydrator/rehydrate"
)

func newListCmd() *cobra.Command {
	var ref, tmpDir string
	var check bool
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List every artifact the image can rehydrate, with size, SHA-256 and recipe",
		Long: `Lists every artifact the image can rehydrate: architecture, how to select it, file name,
size, SHA-256 and recipe. --check also rehydrates every disk image (into --tmpdir, one at a
time, its SHA-256 checked) and shows the ignition.platform.id read from those bytes (GPT ->
boot partition -> BLS entry), so a wrong stamp shows even where the SHA-256 is not known.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			img, err := openImage(cmd.Context(), ref)
			if err != nil {
				return err
			}
			defer img.src.Close()
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			var eng *rehydrate.Engine
			if check {
				eng = rehydrate.NewEngine(img.recipe, img.src, tmpDir)
				defer eng.Close()
				fmt.Fprint(tw, "PLATFORM-ID\t")
			}
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
				if check {
					id, err := checkPlatformID(cmd.Context(), eng, &a, tmpDir)
					if err != nil {
						tw.Flush()
						return fmt.Errorf("list --check: %w", err)
					}
					fmt.Fprintf(tw, "%s\t", id)
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\t%s\n", a.Arch, selector, a.Name, a.Size, a.SHA256, strings.Join(steps, " -> "))
			}
			return tw.Flush()
		},
	}
	cmd.Flags().BoolVar(&check, "check", false, "rehydrate every disk and show the platform id read from it")
	cmd.Flags().StringVar(&tmpDir, "tmpdir", "", "with --check: where to rehydrate each disk (default $TMPDIR)")
	imageFlag(cmd, &ref)
	return cmd
}
