package main

import (
	"fmt"
	"os"

	"github.com/spf13/cobra"

	"github.com/rehydrator/rehydrator/internal/diskview"
	"github.com/rehydrator/rehydrator/platformid"
)

func newPlatformIDCmd() *cobra.Command {
	var verbose bool
	cmd := &cobra.Command{
		Use:   "platformid DISK",
		Short: "Print the ignition.platform.id stamped into a disk image",
		Long: `Reads DISK (qcow2, streamOptimized VMDK, an OVA, fixed VHD, dynamic VHDX, GCP's tar of
disk.raw, or raw; a rehydrated file or a shipped one, uncompressed), finds the boot partition in its GPT, reads
the BLS entry (loader/entries/*.conf) from its ext4 filesystem and prints the value of the
ignition.platform.id= kernel argument, e.g. "aws". --verbose adds the format, the partition
and the entry it came from.`,
		Example: `  rehydrator platformid fedora-coreos-41.20250105.3.0-aws.x86_64.vmdk
  rehydrator platformid -v fedora-coreos-41.20250105.3.0-vmware.x86_64.ova
  rehydrator list --check --image oci:./fcos-images:stable   # every disk in an image`,
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) != 1 {
				return usagef("platformid takes exactly one DISK, got %d arguments", len(args))
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			f, err := os.Open(args[0])
			if err != nil {
				return err
			}
			defer f.Close()
			st, err := f.Stat()
			if err != nil {
				return err
			}
			if !st.Mode().IsRegular() {
				return fmt.Errorf("platformid %s: not a regular file (the disk is read at random offsets; save it to a file first)", args[0])
			}
			info, format, err := readPlatformID(f, st.Size())
			if err != nil {
				return fmt.Errorf("platformid %s: %w", args[0], err)
			}
			if verbose {
				fmt.Fprintf(cmd.OutOrStdout(), "%s\t%s\tpartition %d\t%s\n", info.ID, format, info.Partition, info.Entry)
			} else {
				fmt.Fprintln(cmd.OutOrStdout(), info.ID)
			}
			return nil
		},
	}
	cmd.Flags().BoolVarP(&verbose, "verbose", "v", false, "also print the disk format, partition and BLS entry")
	return cmd
}

// readPlatformID opens a disk image of any shipped format and reads its platform id.
func readPlatformID(f *os.File, size int64) (*platformid.Info, string, error) {
	v, err := diskview.Open(f, size)
	if err != nil {
		return nil, "", err
	}
	info, err := platformid.Read(v, v.Size)
	if err != nil {
		return nil, v.Format, fmt.Errorf("%s disk: %w", v.Format, err)
	}
	return info, v.Format, nil
}
