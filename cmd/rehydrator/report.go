package main

import (
	"encoding/json"
	"fmt"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/rehydrator/rehydrator/dehydrate"
	"github.com/rehydrator/rehydrator/internal/units"
	"github.com/rehydrator/rehydrator/ociimage"
	"io"
	"os"
	"text/tabwriter"
)

// buildReport says what each artifact costs in the image: what `build --report` writes and what
// the build prints at the end.
type buildReport struct {
	Image        string           `json:"image"`
	Digest       string           `json:"digest"`
	ImageBytes   int64            `json:"imageBytes"` // config + every layer, compressed
	ToolBytes    int64            `json:"toolBytes"`  // the tool layer (or the --from base's layers)
	MetaBytes    int64            `json:"metadataBytes"`
	DeltaSeconds float64          `json:"deltaSeconds"` // time spent computing deltas
	Artifacts    []artifactReport `json:"artifacts"`
}

type artifactReport struct {
	Name         string  `json:"name"`
	Method       string  `json:"method"`
	Size         int64   `json:"size"`        // uncompressed artifact
	StoredBytes  int64   `json:"storedBytes"` // blob bytes it adds, before layer compression
	LayerBytes   int64   `json:"layerBytes"`  // compressed layer bytes it adds to the image
	RecipeBytes  int64   `json:"recipeBytes"` // step parameters it adds to the recipe (uncompressed)
	DeltaSeconds float64 `json:"deltaSeconds"`
}

func makeReport(ref, digest string, img v1.Image, res *dehydrate.Result) (*buildReport, error) {
	m, err := img.Manifest()
	if err != nil {
		return nil, err
	}
	r := &buildReport{Image: ref, Digest: digest, ImageBytes: m.Config.Size, DeltaSeconds: res.DeltaTime.Seconds()}
	layerOf := map[string]int64{}
	for _, l := range m.Layers {
		r.ImageBytes += l.Size
		switch {
		case l.Annotations[ociimage.BlobAnnotation] != "":
			layerOf[l.Annotations[ociimage.BlobAnnotation]] = l.Size
		case l.Annotations[ociimage.LayerKindAnnotation] == "metadata":
			r.MetaBytes += l.Size
		default:
			r.ToolBytes += l.Size
		}
	}
	for i, p := range res.Plans {
		a := res.Recipe.Artifacts[i]
		ar := artifactReport{Name: p.Name, Method: p.Method, Size: p.Size, StoredBytes: p.StoredBytes, DeltaSeconds: p.DeltaTime.Seconds()}
		// The blobs it adds (its deltas, or the file it is), not the baseline's that its
		// steps may start from.
		for _, d := range p.Blobs {
			ar.LayerBytes += layerOf[d]
		}
		for _, s := range a.Steps {
			ar.RecipeBytes += int64(len(s.Params))
		}
		r.Artifacts = append(r.Artifacts, ar)
	}
	return r, nil
}

func (r *buildReport) print(w io.Writer) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "artifact\troute\tsize\tstored\tin layers\tin recipe\tcost\t% of size\t")
	for _, a := range r.Artifacts {
		cost := a.LayerBytes + a.RecipeBytes
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t\n", a.Name, a.Method, units.Bytes(a.Size), units.Bytes(a.StoredBytes),
			units.Bytes(a.LayerBytes), units.Bytes(a.RecipeBytes), units.Bytes(cost), percent(cost, a.Size))
	}
	fmt.Fprintf(tw, "tool layer\t\t\t\t%s\t\n", units.Bytes(r.ToolBytes))
	fmt.Fprintf(tw, "metadata layer\t\t\t\t%s\t\n", units.Bytes(r.MetaBytes))
	fmt.Fprintf(tw, "whole image\t\t\t\t%s\t\n", units.Bytes(r.ImageBytes))
	tw.Flush()
}

func (r *buildReport) write(path string) error {
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(b, '\n'), 0o644)
}

// percent renders part/whole as a percentage for the report ("-" for an empty artifact).
func percent(part, whole int64) string {
	if whole <= 0 {
		return "-"
	}
	return fmt.Sprintf("%.3f%%", 100*float64(part)/float64(whole))
}
