// Command erofslzma times erofsprecomp on one image for tests/bench/erofs-lzma.sh: "expand"
// scans and expands an image and prints the figures, "restore" rebuilds it from the expanded
// form. Run each under /usr/bin/time -v for its peak memory.
package main

import (
	"bufio"
	"flag"
	"fmt"
	"os"
	"time"

	"github.com/rehydrator/rehydrator/erofsprecomp"
)

func main() {
	mode := flag.String("mode", "expand", "expand or restore")
	in := flag.String("in", "", "input: the image (expand) or the expanded form (restore)")
	out := flag.String("out", "", "output file")
	jobs := flag.Int("j", 2, "workers")
	flag.Parse()
	if err := run(*mode, *in, *out, *jobs); err != nil {
		fmt.Fprintln(os.Stderr, "erofslzma:", err)
		os.Exit(1)
	}
}

func run(mode, in, out string, jobs int) error {
	f, err := os.Open(in)
	if err != nil {
		return err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	o, err := os.Create(out)
	if err != nil {
		return err
	}
	defer o.Close()
	w := bufio.NewWriterSize(o, 1<<20)
	start := time.Now()
	switch mode {
	case "expand":
		plan, err := erofsprecomp.Scan(f, fi.Size(), jobs)
		if err != nil {
			return err
		}
		scan := time.Since(start)
		if err := erofsprecomp.Expand(w, f, fi.Size(), plan); err != nil {
			return err
		}
		var explicit int
		for _, c := range plan.Clusters {
			if c.Explicit {
				explicit++
			}
		}
		fmt.Printf("scan %.1f s, expand %.1f s; %d of %d clusters reproduce (%.1f%%, %d explicit lookaheads) with %v; image %d bytes, expanded %d (%.2fx)\n",
			scan.Seconds(), (time.Since(start) - scan).Seconds(), len(plan.Clusters), plan.Seen,
			100*float64(len(plan.Clusters))/float64(max(plan.Seen, 1)), explicit, plan.Params,
			fi.Size(), plan.ExpandedSize(fi.Size()), float64(plan.ExpandedSize(fi.Size()))/float64(fi.Size()))
	case "restore":
		if err := erofsprecomp.Restore(w, bufio.NewReaderSize(f, 1<<20), jobs); err != nil {
			return err
		}
		fmt.Printf("restore %.1f s on %d workers\n", time.Since(start).Seconds(), jobs)
	default:
		return fmt.Errorf("mode %q: want expand or restore", mode)
	}
	return w.Flush()
}
